using System.Diagnostics.CodeAnalysis;
using Dapper;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Npgsql;
using TxCoord.Contracts;

namespace TxCoord.Coordinator.Monitoring;

/// <summary>One participant's database, as configured for the coordinator's tools (dashboard, recovery).</summary>
internal sealed record ParticipantDatabase(ParticipantId Participant, string ConnectionString);

/// <summary>
/// Reads the optional section <c>TxCoord:Participants:&lt;participant id&gt;:ConnectionString</c>:
/// where each participant's PostgreSQL database is, so the coordinator's tools can look at its
/// prepared transactions. A participant without an entry is simply "not configured".
/// </summary>
internal static class ParticipantDatabaseSettings
{
    public const string Section = "TxCoord:Participants";

    public const string ConnectionStringKey = "ConnectionString";

    /// <summary>Reads and checks the section; on failure <paramref name="error"/> names each key to fix.</summary>
    public static bool TryRead(
        IConfiguration configuration,
        [NotNullWhen(true)] out IReadOnlyList<ParticipantDatabase>? databases,
        [NotNullWhen(false)] out string? error)
    {
        var errors = new List<string>();
        var found = new List<ParticipantDatabase>();
        foreach (var participant in configuration.GetSection(Section).GetChildren())
        {
            var key = $"{Section}:{participant.Key}:{ConnectionStringKey}";
            if (!BranchGid.IsValidName(participant.Key))
            {
                errors.Add($"{Section}:{participant.Key}: '{participant.Key}' is not a valid participant id (1 to {BranchGid.MaxNameLength} characters of letters, digits, '_', '.' or '-')");
                continue;
            }

            var connectionString = participant[ConnectionStringKey];
            if (CoordinatorOptionsValidator.CheckConnectionString(connectionString) is { } problem)
            {
                errors.Add($"{key} {problem}");
                continue;
            }

            found.Add(new ParticipantDatabase(new ParticipantId(participant.Key), connectionString!));
        }

        if (errors.Count > 0)
        {
            databases = null;
            error = string.Join("; ", errors);
            return false;
        }

        databases = [.. found.OrderBy(d => d.Participant.Value, StringComparer.Ordinal)];
        error = null;
        return true;
    }
}

/// <summary>One prepared transaction found in a participant's database.</summary>
/// <param name="Gid">The GID as PostgreSQL holds it (anything, not only TxCoord's).</param>
/// <param name="Branch">The parsed GID when TxCoord made it; null for a foreign one.</param>
/// <param name="XidAge">How many transactions the server has started since this one: how far it holds the xmin horizon back.</param>
internal sealed record PreparedBranch(string Gid, BranchGid? Branch, DateTimeOffset PreparedAt, string Owner, long XidAge, long Locks);

/// <summary>What prepared transactions cost one participant's database, read at <see cref="ReadAt"/>.</summary>
/// <param name="PreparedHere">Prepared transactions in this database (anyone's).</param>
/// <param name="PreparedServerWide">Prepared transactions on the whole server: they share <paramref name="MaxPreparedTransactions"/>.</param>
/// <param name="BlockedSessions">Sessions of this database waiting for a lock that a prepared transaction holds.</param>
/// <param name="OldestXidAge">The xmin horizon held back by the oldest prepared transaction, in transactions.</param>
/// <param name="DatabaseFrozenXidAge"><c>age(datfrozenxid)</c>: how close the database is to a forced anti-wraparound vacuum.</param>
/// <param name="Branches">The oldest prepared transactions of this database (at most <see cref="ParticipantDatabaseMonitor.MaxBranches"/>).</param>
internal sealed record ParticipantDatabaseImpact(
    ParticipantId Participant,
    DateTimeOffset ReadAt,
    string? Database,
    string? Error,
    int PreparedHere,
    int PreparedOurs,
    int PreparedServerWide,
    int MaxPreparedTransactions,
    TimeSpan? OldestPreparedAge,
    long LocksHeld,
    int BlockedSessions,
    long? OldestXidAge,
    long? DatabaseFrozenXidAge,
    IReadOnlyList<PreparedBranch> Branches)
{
    public bool Reachable => Error is null;

    /// <summary>Free slots of <c>max_prepared_transactions</c> on the server.</summary>
    public int Headroom => Math.Max(0, MaxPreparedTransactions - PreparedServerWide);

    public static ParticipantDatabaseImpact Unreachable(ParticipantId participant, DateTimeOffset at, string error) =>
        new(participant, at, null, error, 0, 0, 0, 0, null, 0, 0, null, null, []);
}

/// <summary>
/// Reads the prepared-transaction impact on every configured participant database: counts,
/// oldest age, locks held, blocked sessions, <c>max_prepared_transactions</c> headroom and the
/// xmin horizon held back. Read-only (catalog views only), through one small pool per database
/// with short timeouts, and cached for <see cref="CacheFor"/> so many viewers cost one query
/// round. A database that cannot be reached is reported with the error, never thrown.
/// </summary>
internal sealed partial class ParticipantDatabaseMonitor : IAsyncDisposable
{
    /// <summary>How long a reading is served before the databases are asked again.</summary>
    public static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(2);

    /// <summary>How many prepared transactions are listed per database (the oldest).</summary>
    public const int MaxBranches = 200;

    /// <summary>How long one database gets to answer.</summary>
    public static readonly TimeSpan QueryTimeout = TimeSpan.FromSeconds(5);

    internal const string SummarySql = """
        SELECT current_database() AS Database,
               (SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database())::int AS PreparedHere,
               (SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()
                   AND left(gid, length(@OurPrefix)) = @OurPrefix)::int AS PreparedOurs,
               (SELECT count(*) FROM pg_prepared_xacts)::int AS PreparedServerWide,
               current_setting('max_prepared_transactions')::int AS MaxPreparedTransactions,
               (SELECT extract(epoch FROM now() - min(prepared)) FROM pg_prepared_xacts WHERE database = current_database())::float8 AS OldestPreparedAgeSeconds,
               (SELECT max(age(transaction)) FROM pg_prepared_xacts WHERE database = current_database())::bigint AS OldestXidAge,
               (SELECT age(datfrozenxid) FROM pg_database WHERE datname = current_database())::bigint AS DatabaseFrozenXidAge,
               (SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND 0 = ANY (pg_blocking_pids(pid)))::int AS BlockedSessions,
               (SELECT count(*) FROM pg_locks l
                 WHERE l.pid IS NULL AND l.virtualtransaction IN (
                       SELECT x.virtualtransaction FROM pg_locks x
                       JOIN pg_prepared_xacts p ON x.locktype = 'transactionid' AND x.transactionid = p.transaction
                       WHERE x.pid IS NULL AND p.database = current_database()))::bigint AS LocksHeld
        """;

    /// <summary>
    /// A prepared transaction's locks have no pid; they share the virtual transaction of its
    /// transactionid lock. (The counts above and this list are two statements: with traffic,
    /// they may differ by the transactions that prepared or finished in between.)
    /// </summary>
    internal const string BranchesSql = """
        SELECT p.gid AS Gid, p.prepared AS PreparedAt, p.owner AS Owner, age(p.transaction)::bigint AS XidAge,
               (SELECT count(*) FROM pg_locks l
                 WHERE l.pid IS NULL AND l.virtualtransaction = (
                       SELECT x.virtualtransaction FROM pg_locks x
                        WHERE x.locktype = 'transactionid' AND x.transactionid = p.transaction AND x.pid IS NULL
                        LIMIT 1))::bigint AS Locks
        FROM pg_prepared_xacts p
        WHERE p.database = current_database()
        ORDER BY p.prepared
        LIMIT @Limit
        """;

    private readonly IReadOnlyList<(ParticipantDatabase Database, NpgsqlDataSource DataSource)> _databases;
    private readonly string _ourPrefix;
    private readonly TimeProvider _time;
    private readonly ILogger<ParticipantDatabaseMonitor> _logger;
    private readonly SharedReading<IReadOnlyList<ParticipantDatabaseImpact>> _reading;

    public ParticipantDatabaseMonitor(
        IReadOnlyList<ParticipantDatabase> databases,
        CoordinatorId coordinator,
        TimeProvider time,
        ILogger<ParticipantDatabaseMonitor> logger)
    {
        _databases = [.. databases.Select(d => (d, CreateDataSource(d.ConnectionString)))];
        _ourPrefix = $"{BranchGid.Prefix}:{coordinator.Value}:";
        _time = time;
        _logger = logger;
        _reading = new SharedReading<IReadOnlyList<ParticipantDatabaseImpact>>(ReadAllAsync, CacheFor, time);
    }

    /// <summary>The participants whose database is configured.</summary>
    public IEnumerable<ParticipantId> Configured => _databases.Select(d => d.Database.Participant);

    /// <summary>
    /// The latest reading of every configured database, at most <see cref="CacheFor"/> old.
    /// Concurrent callers share one round of queries; a caller's cancellation only stops its wait.
    /// </summary>
    public Task<IReadOnlyList<ParticipantDatabaseImpact>> ReadAsync(CancellationToken cancellationToken) =>
        _reading.GetAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        foreach (var (_, dataSource) in _databases)
        {
            await dataSource.DisposeAsync();
        }
    }

    private async Task<IReadOnlyList<ParticipantDatabaseImpact>> ReadAllAsync()
    {
        var readings = await Task.WhenAll(_databases.Select(d => ReadOneAsync(d.Database.Participant, d.DataSource)));
        return readings;
    }

    private async Task<ParticipantDatabaseImpact> ReadOneAsync(ParticipantId participant, NpgsqlDataSource dataSource)
    {
        var at = _time.GetUtcNow();
        using var timeout = new CancellationTokenSource(QueryTimeout, _time);
        try
        {
            await using var connection = await dataSource.OpenConnectionAsync(timeout.Token);
            var summary = await connection.QuerySingleAsync<SummaryRow>(new CommandDefinition(
                SummarySql, new { OurPrefix = _ourPrefix }, cancellationToken: timeout.Token));
            var branches = (await connection.QueryAsync<BranchRow>(new CommandDefinition(
                BranchesSql, new { Limit = MaxBranches }, cancellationToken: timeout.Token))).ToList();
            return new ParticipantDatabaseImpact(
                participant,
                at,
                summary.Database,
                null,
                summary.PreparedHere,
                summary.PreparedOurs,
                summary.PreparedServerWide,
                summary.MaxPreparedTransactions,
                summary.OldestPreparedAgeSeconds is { } age ? TimeSpan.FromSeconds(age) : null,
                summary.LocksHeld,
                summary.BlockedSessions,
                summary.OldestXidAge,
                summary.DatabaseFrozenXidAge,
                [.. branches.Select(b => b.ToBranch())]);
        }
        catch (Exception ex) when (ex is NpgsqlException or OperationCanceledException or TimeoutException or InvalidOperationException)
        {
            var error = ex is OperationCanceledException ? $"no answer within {QueryTimeout.TotalSeconds:0} s" : ex.Message;
            LogUnreachable(_logger, ex, participant.Value, error);
            return ParticipantDatabaseImpact.Unreachable(participant, at, error);
        }
    }

    private static NpgsqlDataSource CreateDataSource(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString)
        {
            ApplicationName = "txcoord-dashboard",
            Timeout = (int)QueryTimeout.TotalSeconds,
            CommandTimeout = (int)QueryTimeout.TotalSeconds,
            MaxPoolSize = 2,
        };
        return NpgsqlDataSource.Create(builder.ConnectionString);
    }

    [LoggerMessage(1230, LogLevel.Warning, "Participant {Participant}: its database could not be read for the dashboard: {Error}")]
    private static partial void LogUnreachable(ILogger logger, Exception exception, string participant, string error);

    private sealed class SummaryRow
    {
        public string Database { get; init; } = "";
        public int PreparedHere { get; init; }
        public int PreparedOurs { get; init; }
        public int PreparedServerWide { get; init; }
        public int MaxPreparedTransactions { get; init; }
        public double? OldestPreparedAgeSeconds { get; init; }
        public long? OldestXidAge { get; init; }
        public long? DatabaseFrozenXidAge { get; init; }
        public int BlockedSessions { get; init; }
        public long LocksHeld { get; init; }
    }

    private sealed class BranchRow
    {
        public string Gid { get; init; } = "";
        public DateTime PreparedAt { get; init; }
        public string Owner { get; init; } = "";
        public long XidAge { get; init; }
        public long Locks { get; init; }

        public PreparedBranch ToBranch() => new(
            Gid,
            BranchGid.TryParse(Gid, out var branch) ? branch : null,
            new DateTimeOffset(DateTime.SpecifyKind(PreparedAt, DateTimeKind.Utc)),
            Owner,
            XidAge,
            Locks);
    }
}
