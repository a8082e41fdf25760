using System.Runtime.CompilerServices;
using Dapper;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Coordinator.Monitoring;
using TxCoord.Coordinator.Ownership;

namespace TxCoord.Coordinator.Recovery;

/// <summary>How a COMMIT PREPARED or ROLLBACK PREPARED by recovery ended.</summary>
internal enum FinishOutcome
{
    /// <summary>This call finished it.</summary>
    Done,

    /// <summary>It was no longer prepared: someone else (the coordinator, the participant, another recovery) finished it first.</summary>
    AlreadyFinished,

    /// <summary>Another session was finishing it at that very moment (PostgreSQL: "prepared transaction ... is busy"); the final count tells whether it is gone.</summary>
    Busy,
}

/// <summary>
/// Recovery's access to one participant's database: its prepared transactions (streamed in GID
/// order, a page at a time, so any number of them never sits in memory), and finishing them.
/// Every statement is one round trip outside any transaction; a failure leaves the database as it
/// was, except that a COMMIT/ROLLBACK PREPARED whose reply was lost may have happened: running
/// recovery again finds it finished (<see cref="FinishOutcome.AlreadyFinished"/>).
/// </summary>
internal sealed class RecoveryParticipantDatabase : IAsyncDisposable
{
    /// <summary>Prepared transactions per page.</summary>
    public const int PageSize = 500;

    internal const string PageSql = """
        SELECT p.gid AS Gid, p.prepared AS PreparedAt, p.owner AS Owner
        FROM pg_prepared_xacts p
        WHERE p.database = current_database() AND p.gid > @After
        ORDER BY p.gid
        LIMIT @PageSize
        """;

    /// <summary>
    /// A page with what each one blocks. A prepared transaction's locks have no pid and share the
    /// virtual transaction of its transactionid lock; pg_locks is read once per page (it is a
    /// function over the whole lock table), then joined.
    /// </summary>
    internal const string PageWithLocksSql = """
        WITH page AS MATERIALIZED (
            SELECT p.gid, p.prepared, p.owner, p.transaction::text AS xid
            FROM pg_prepared_xacts p
            WHERE p.database = current_database() AND p.gid > @After
            ORDER BY p.gid
            LIMIT @PageSize),
        locks AS MATERIALIZED (
            SELECT l.locktype, l.database, l.relation, l.mode, l.granted, l.pid, l.virtualtransaction, l.transactionid::text AS xid
            FROM pg_locks l),
        owners AS (
            SELECT xid, virtualtransaction FROM locks WHERE locktype = 'transactionid' AND pid IS NULL AND granted),
        held AS (
            SELECT o.xid, count(*) AS locks,
                   string_agg(DISTINCT l.relation::regclass::text || ' ' || l.mode, ', ')
                       FILTER (WHERE l.locktype = 'relation' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                               AND (SELECT c.relkind FROM pg_class c WHERE c.oid = l.relation) IN ('r', 'p', 'm')) AS relations
            FROM locks l JOIN owners o ON o.virtualtransaction = l.virtualtransaction
            WHERE l.pid IS NULL
            GROUP BY o.xid),
        waiting AS (
            SELECT xid, count(*) AS waiters FROM locks WHERE locktype = 'transactionid' AND NOT granted GROUP BY xid)
        SELECT p.gid AS Gid, p.prepared AS PreparedAt, p.owner AS Owner,
               coalesce(h.locks, 0)::bigint AS Locks, h.relations AS Relations, coalesce(w.waiters, 0)::int AS Waiters
        FROM page p
        LEFT JOIN held h ON h.xid = p.xid
        LEFT JOIN waiting w ON w.xid = p.xid
        ORDER BY p.gid
        """;

    internal const string CountSql = """
        SELECT count(*) FILTER (WHERE left(gid, length(@Prefix)) = @Prefix)::int AS Ours, count(*)::int AS AllPrepared
        FROM pg_prepared_xacts WHERE database = current_database()
        """;

    internal const string WhichPreparedSql = "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND gid = ANY (@Gids)";

    internal const string IdentitySql = "SELECT current_database() AS Database, current_user AS UserName";

    private readonly NpgsqlDataSource _dataSource;

    public RecoveryParticipantDatabase(ParticipantDatabase database)
    {
        Participant = database.Participant;
        ConnectionString = database.ConnectionString;
        var builder = new NpgsqlConnectionStringBuilder(database.ConnectionString)
        {
            ApplicationName = CoordinatorOwnership.RecoveryApplicationName,
            Timeout = 10,
            CommandTimeout = 60,
        };
        _dataSource = NpgsqlDataSource.Create(builder.ConnectionString);
    }

    public ParticipantId Participant { get; }

    public string ConnectionString { get; }

    /// <summary>The configuration key this database came from, for error messages.</summary>
    public string Setting => $"{ParticipantDatabaseSettings.Section}:{Participant}:{ParticipantDatabaseSettings.ConnectionStringKey}";

    /// <summary>The database's name, once <see cref="CheckAsync"/> ran.</summary>
    public string DatabaseName { get; private set; } = "";

    /// <summary>The role recovery connects as, once <see cref="CheckAsync"/> ran.</summary>
    public string UserName { get; private set; } = "";

    /// <summary>Connects once, so that an unreachable server or bad credentials are reported before any work.</summary>
    /// <exception cref="RecoveryException">With what to fix.</exception>
    public async Task CheckAsync(CancellationToken cancellationToken)
    {
        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
            var identity = await connection.QuerySingleAsync<(string Database, string UserName)>(
                new CommandDefinition(IdentitySql, cancellationToken: cancellationToken));
            DatabaseName = identity.Database;
            UserName = identity.UserName;
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            throw RecoveryException.From(e, $"participant {Participant}'s database", ConnectionString, Setting);
        }
    }

    /// <summary>How many transactions are prepared here: of GIDs starting with <paramref name="prefix"/>, and in all.</summary>
    public async Task<(int Ours, int All)> CountAsync(string prefix, CancellationToken cancellationToken)
    {
        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
            return await connection.QuerySingleAsync<(int Ours, int All)>(new CommandDefinition(CountSql, new { Prefix = prefix }, cancellationToken: cancellationToken));
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            throw RecoveryException.From(e, $"participant {Participant}'s database", ConnectionString, Setting);
        }
    }

    /// <summary>
    /// The prepared transactions of this database, in GID order, a page at a time. Ones finished
    /// while the caller works on a page simply do not come back; ones prepared meanwhile with a
    /// higher GID do.
    /// </summary>
    public async IAsyncEnumerable<IReadOnlyList<PreparedTransaction>> ReadPagesAsync(
        bool withLocks, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var after = "";
        while (true)
        {
            List<Row> rows;
            try
            {
                await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
                rows = (await connection.QueryAsync<Row>(new CommandDefinition(
                    withLocks ? PageWithLocksSql : PageSql, new { After = after, PageSize }, cancellationToken: cancellationToken))).AsList();
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException)
            {
                throw RecoveryException.From(e, $"participant {Participant}'s database", ConnectionString, Setting);
            }

            if (rows.Count > 0)
            {
                yield return [.. rows.Select(r => r.ToPrepared(Participant, DatabaseName))];
                after = rows[^1].Gid;
            }

            if (rows.Count < PageSize)
            {
                yield break;
            }
        }
    }

    /// <summary>Which of <paramref name="gids"/> are prepared here right now.</summary>
    public async Task<HashSet<string>> WhichPreparedAsync(IReadOnlyCollection<string> gids, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        return [.. await connection.QueryAsync<string>(new CommandDefinition(WhichPreparedSql, new { Gids = gids.ToArray() }, cancellationToken: cancellationToken))];
    }

    /// <summary>COMMIT PREPARED or ROLLBACK PREPARED of a TxCoord GID (validated before it reaches SQL).</summary>
    /// <exception cref="RecoveryException">Any failure other than "no longer prepared", with what to fix.</exception>
    public async Task<FinishOutcome> FinishAsync(BranchGid gid, bool commit, CancellationToken cancellationToken)
    {
        var sql = $"{(commit ? "COMMIT" : "ROLLBACK")} PREPARED '{BranchGid.EnsureSafe(gid.Value)}'";
        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
            await using var command = new NpgsqlCommand(sql, connection);
            await command.ExecuteNonQueryAsync(cancellationToken);
            return FinishOutcome.Done;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UndefinedObject)
        {
            return FinishOutcome.AlreadyFinished;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.ObjectNotInPrerequisiteState && e.MessageText.Contains("is busy", StringComparison.Ordinal))
        {
            return FinishOutcome.Busy;
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            throw RecoveryException.From(e, $"{(commit ? "COMMIT" : "ROLLBACK")} PREPARED '{gid}' in participant {Participant}'s database", ConnectionString, Setting);
        }
    }

    public ValueTask DisposeAsync() => _dataSource.DisposeAsync();

    private sealed class Row
    {
        public string Gid { get; init; } = "";
        public DateTime PreparedAt { get; init; }
        public string Owner { get; init; } = "";
        public long Locks { get; init; }
        public string? Relations { get; init; }
        public int Waiters { get; init; }

        public PreparedTransaction ToPrepared(ParticipantId participant, string database) => new(
            participant,
            database,
            Gid,
            BranchGid.TryParse(Gid, out var branch) ? branch : null,
            new DateTimeOffset(DateTime.SpecifyKind(PreparedAt, DateTimeKind.Utc)),
            Owner,
            Locks,
            Relations,
            Waiters);
    }
}
