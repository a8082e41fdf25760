using Dapper;
using Npgsql;
using TxCoord.Contracts;

namespace TxCoord.Coordinator.Ownership;

/// <summary>Who holds a coordinator id's ownership lock right now.</summary>
/// <param name="Pid">The PostgreSQL backend holding it.</param>
/// <param name="ApplicationName">Its application name: <c>txcoord-coordinator:&lt;id&gt;</c> for a coordinator, <c>txcoord-recover</c> for the recovery tool.</param>
/// <param name="ClientAddress">The holder's address as the server sees it (null over a Unix socket).</param>
internal sealed record OwnershipHolder(int Pid, string ApplicationName, string? ClientAddress, DateTimeOffset Since)
{
    /// <summary>True when the holder is a running coordinator service (not the recovery tool).</summary>
    public bool IsCoordinator => ApplicationName.StartsWith(CoordinatorOwnership.CoordinatorApplicationPrefix, StringComparison.Ordinal);

    public override string ToString() =>
        $"{ApplicationName} (server pid {Pid}{(ClientAddress is null ? "" : $", from {ClientAddress}")}, since {Since:u})";
}

/// <summary>
/// The ownership of a coordinator id on a journal: a PostgreSQL session-level advisory lock on
/// the journal's database, keyed by the id. A coordinator service holds it on a connection of its
/// own for as long as it runs; a second process started with the same id waits for it instead of
/// handling the same transactions (no double ownership), and takes over the moment the first one
/// dies, because PostgreSQL drops a session's locks when its connection closes (a SIGKILL closes
/// it at once). The recovery tool takes the same lock before it presumes anything aborted, so it
/// never does so beside a live coordinator, and two tools never work at once.
/// </summary>
/// <remarks>
/// What a failure leaves behind: nothing durable. A lost connection loses the lock; the holder
/// notices (<see cref="OwnershipLock.IsHeldAsync"/>) and takes it again or stops.
/// </remarks>
internal static class CoordinatorOwnership
{
    /// <summary>The application name of a coordinator's ownership connection is this prefix plus its id.</summary>
    public const string CoordinatorApplicationPrefix = "txcoord-coordinator:";

    /// <summary>The application name of the recovery tool's connections.</summary>
    public const string RecoveryApplicationName = "txcoord-recover";

    /// <summary>The 64-bit lock key of a coordinator id (PostgreSQL's own hash, so every client computes the same).</summary>
    internal const string KeySql = "hashtextextended('txcoord-owner:' || @CoordinatorId, 0)";

    internal const string TryLockSql = "SELECT pg_try_advisory_lock(" + KeySql + ")";

    internal const string UnlockSql = "SELECT pg_advisory_unlock(" + KeySql + ")";

    /// <summary>Advisory locks on a 64-bit key show in pg_locks as classid (high half), objid (low half), objsubid 1.</summary>
    internal const string HolderSql = """
        SELECT a.pid AS Pid, coalesce(a.application_name, '') AS ApplicationName, host(a.client_addr) AS ClientAddress,
               a.backend_start AS Since
        FROM pg_locks l
        JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND ((l.classid::bigint << 32) | l.objid::bigint) =
        """ + " " + KeySql + " LIMIT 1";

    internal const string PingSql = "SELECT 1";

    /// <summary>
    /// A connection string for an ownership connection: never pooled (closing it must end the
    /// session, and the lock with it), TCP keepalives on, named for <c>pg_stat_activity</c>.
    /// </summary>
    public static string ConnectionString(string journalConnectionString, string applicationName)
    {
        var builder = new NpgsqlConnectionStringBuilder(journalConnectionString)
        {
            Pooling = false,
            ApplicationName = applicationName,
            KeepAlive = 5,
        };
        return builder.ConnectionString;
    }

    /// <summary>Who holds <paramref name="coordinator"/>'s lock, or null when nobody does.</summary>
    public static async Task<OwnershipHolder?> FindHolderAsync(NpgsqlConnection connection, CoordinatorId coordinator, CancellationToken cancellationToken)
    {
        var row = await connection.QuerySingleOrDefaultAsync<HolderRow>(new CommandDefinition(
            HolderSql, new { CoordinatorId = coordinator.Value }, cancellationToken: cancellationToken));
        return row is null
            ? null
            : new OwnershipHolder(row.Pid, row.ApplicationName, row.ClientAddress, new DateTimeOffset(DateTime.SpecifyKind(row.Since, DateTimeKind.Utc)));
    }

    private sealed class HolderRow
    {
        public int Pid { get; init; }
        public string ApplicationName { get; init; } = "";
        public string? ClientAddress { get; init; }
        public DateTime Since { get; init; }
    }
}

/// <summary>A held ownership lock: disposing it closes its connection, which releases the lock.</summary>
internal sealed class OwnershipLock : IAsyncDisposable
{
    private readonly NpgsqlConnection _connection;

    private OwnershipLock(NpgsqlConnection connection, CoordinatorId coordinator)
    {
        _connection = connection;
        Coordinator = coordinator;
    }

    public CoordinatorId Coordinator { get; }

    /// <summary>
    /// Takes the lock without waiting. Returns the lock, or the current holder when someone else
    /// has it (the holder may be null if it let go meanwhile: try again).
    /// </summary>
    /// <exception cref="NpgsqlException">The journal's database cannot be reached.</exception>
    public static async Task<(OwnershipLock? Lock, OwnershipHolder? Holder)> TryAcquireAsync(
        string journalConnectionString, CoordinatorId coordinator, string applicationName, CancellationToken cancellationToken)
    {
        var connection = new NpgsqlConnection(CoordinatorOwnership.ConnectionString(journalConnectionString, applicationName));
        try
        {
            await connection.OpenAsync(cancellationToken);
            var acquired = await connection.ExecuteScalarAsync<bool>(new CommandDefinition(
                CoordinatorOwnership.TryLockSql, new { CoordinatorId = coordinator.Value }, cancellationToken: cancellationToken));
            if (acquired)
            {
                return (new OwnershipLock(connection, coordinator), null);
            }

            var holder = await CoordinatorOwnership.FindHolderAsync(connection, coordinator, cancellationToken);
            await connection.DisposeAsync();
            return (null, holder);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>True while the lock's connection still answers (and so the lock is still held).</summary>
    public async Task<bool> IsHeldAsync(CancellationToken cancellationToken)
    {
        try
        {
            await _connection.ExecuteScalarAsync<int>(new CommandDefinition(CoordinatorOwnership.PingSql, cancellationToken: cancellationToken));
            return true;
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException or TimeoutException)
        {
            return false;
        }
    }

    public ValueTask DisposeAsync() => _connection.DisposeAsync();
}
