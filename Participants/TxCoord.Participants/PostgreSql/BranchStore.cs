using Dapper;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Faults;

namespace TxCoord.Participants.PostgreSql;

/// <summary>What a participant's database says about one branch.</summary>
internal enum BranchStatus
{
    /// <summary>Never seen: no outcome row, not prepared.</summary>
    Unknown,

    /// <summary>In <c>pg_prepared_xacts</c>: waiting for the decision.</summary>
    Prepared,

    /// <summary>The branch's own marker row is visible: it committed.</summary>
    Committed,

    /// <summary>An abort marker: it rolled back, or was fenced before it started.</summary>
    Aborted,

    /// <summary>
    /// A read-only marker: the branch wrote nothing, voted ReadOnly and finished without preparing.
    /// It knows no outcome: to a peer's termination question it is a voter that cannot tell.
    /// </summary>
    ReadOnly,
}

/// <summary>A prepared transaction of this participant, read from <c>pg_prepared_xacts</c>.</summary>
internal sealed record PreparedBranch(BranchGid Gid, TimeSpan Age);

/// <summary>
/// The participant's SQL against its own database. Each branch writes a marker row
/// (<c>txcoord.branch_outcomes</c>, outcome 'committed') inside its own transaction just before
/// <c>PREPARE TRANSACTION</c>: the row becomes visible exactly when the branch commits, so the
/// participant can tell long afterwards whether a GID committed. Aborts write an 'aborted' row
/// outside any branch; the primary key then stops a late branch of the same GID from preparing.
/// A branch that wrote nothing and voted ReadOnly writes a row in <c>txcoord.branch_readonly</c>
/// instead, in its own transaction, and commits without preparing.
/// <para>
/// The store runs on the participant's own data source (<c>NoResetOnClose</c>: its statements leave
/// no session state, so a pooled checkout costs no <c>DISCARD ALL</c>); the statements that belong
/// to a branch (<see cref="GetStatusAsync(NpgsqlConnection, BranchGid, CancellationToken)"/> before
/// the work, <see cref="PrepareAsync"/>) run on the branch's own connection.
/// </para>
/// Failure semantics: every method is one statement or one short transaction; a failure leaves
/// the database as it was, except <see cref="CommitPreparedAsync"/> and <see cref="RollbackPreparedAsync"/>,
/// whose effect may have happened when the reply was lost: callers re-read <see cref="GetStatusAsync"/>.
/// </summary>
internal sealed class BranchStore(NpgsqlDataSource dataSource)
{
    private const string CreateSchemaSql = """
        SELECT pg_advisory_xact_lock(7411002);
        -- Only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
        -- schema exists, and a least-privilege role owns only its schema (docs/least-privilege.md).
        DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'txcoord') THEN CREATE SCHEMA txcoord; END IF; END $$;
        CREATE TABLE IF NOT EXISTS txcoord.branch_outcomes (
            gid            text PRIMARY KEY,
            transaction_id uuid NOT NULL,
            outcome        text NOT NULL CHECK (outcome IN ('committed', 'aborted')),
            recorded_at    timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS txcoord.branch_readonly (
            gid            text PRIMARY KEY,
            transaction_id uuid NOT NULL,
            recorded_at    timestamptz NOT NULL DEFAULT now()
        );
        """;

    // The status read is two statements, pg_prepared_xacts first, then the markers: at READ
    // COMMITTED each statement takes its own snapshot, so the markers are read with a snapshot
    // taken after the GID was looked for. COMMIT PREPARED makes the branch visible before it drops
    // the GID, so a branch gone from pg_prepared_xacts shows its marker to the second statement.
    // In one statement (one snapshot taken before the live pg_prepared_xacts read) a COMMIT
    // PREPARED in between hid both, and the branch read Unknown: termination fenced it and
    // answered Aborted while it had committed. Both statements go in one batch: one round trip.
    private const string StatusPreparedSql =
        "SELECT EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE gid = @Gid AND database = current_database())";

    private const string StatusMarkersSql = """
        SELECT (SELECT outcome FROM txcoord.branch_outcomes WHERE gid = @Gid) AS outcome,
               EXISTS (SELECT 1 FROM txcoord.branch_readonly WHERE gid = @Gid) AS read_only
        """;

    /// <summary>Test seam: when set in the caller's flow, the status read's two statements run as two round trips with this between them.</summary>
    internal static readonly AsyncLocal<Func<Task>?> BetweenStatusReads = new();

    // One round trip: BEGIN, the settings, the insert and COMMIT go out as one batch. The lock
    // timeout guards against a prepared branch of the same GID holding the key.
    private const string InsertAbortedSql = """
        BEGIN;
        SET LOCAL synchronous_commit TO off;
        SET LOCAL lock_timeout TO '5s';
        INSERT INTO txcoord.branch_outcomes (gid, transaction_id, outcome) VALUES (@Gid, @TransactionId, 'aborted')
        ON CONFLICT (gid) DO NOTHING;
        COMMIT;
        """;

    // The fence a peer is told about ("Aborted" to a termination question): forced before the
    // answer leaves, or a crash of this server could lose it and, under early prepare, the late
    // work could still prepare and vote Yes after its peer was told this branch aborted.
    private const string InsertAbortedForcedSql = """
        BEGIN;
        SET LOCAL synchronous_commit TO on;
        SET LOCAL lock_timeout TO '5s';
        INSERT INTO txcoord.branch_outcomes (gid, transaction_id, outcome) VALUES (@Gid, @TransactionId, 'aborted')
        ON CONFLICT (gid) DO NOTHING;
        COMMIT;
        """;

    private const string InsertCommittedMarkerSql =
        "INSERT INTO txcoord.branch_outcomes (gid, transaction_id, outcome) VALUES (@Gid, @TransactionId, 'committed')";

    private const string InsertReadOnlyMarkerSql =
        "INSERT INTO txcoord.branch_readonly (gid, transaction_id) VALUES (@Gid, @TransactionId)";

    private const string ListPreparedSql = """
        SELECT gid AS Gid, extract(epoch FROM now() - prepared)::float8 AS AgeSeconds
        FROM pg_prepared_xacts
        WHERE database = current_database() AND gid LIKE 'txc:%'
        ORDER BY prepared
        """;

    public NpgsqlDataSource DataSource => dataSource;

    /// <summary>Creates the schema if missing and checks that the server can prepare transactions.</summary>
    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var maxPrepared = await connection.ExecuteScalarAsync<string>(
            new CommandDefinition("SHOW max_prepared_transactions", cancellationToken: cancellationToken));
        if (maxPrepared == "0")
        {
            throw new PreparedTransactionsDisabledException(Describe(connection));
        }

        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(CreateSchemaSql, transaction: transaction, cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);
    }

    public async Task<BranchStatus> GetStatusAsync(BranchGid gid, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await GetStatusAsync(connection, gid, cancellationToken);
    }

    /// <summary>
    /// The branch's status read on <paramref name="connection"/>, outside any transaction (a branch
    /// reads it on its own connection before its work begins, so the work's transaction starts with
    /// the handler's first statement, at the isolation level the handler expects).
    /// </summary>
    public static async Task<BranchStatus> GetStatusAsync(NpgsqlConnection connection, BranchGid gid, CancellationToken cancellationToken)
    {
        (string? Outcome, bool Prepared, bool ReadOnly) row;
        if (BetweenStatusReads.Value is { } between)
        {
            var prepared = await connection.ExecuteScalarAsync<bool>(
                new CommandDefinition(StatusPreparedSql, new { Gid = gid.Value }, cancellationToken: cancellationToken));
            await between();
            var markers = await connection.QuerySingleAsync<(string? Outcome, bool ReadOnly)>(
                new CommandDefinition(StatusMarkersSql, new { Gid = gid.Value }, cancellationToken: cancellationToken));
            row = (markers.Outcome, prepared, markers.ReadOnly);
        }
        else
        {
            await using var batch = new NpgsqlBatch(connection)
            {
                BatchCommands =
                {
                    new NpgsqlBatchCommand(StatusPreparedSql) { Parameters = { new NpgsqlParameter("Gid", gid.Value) } },
                    new NpgsqlBatchCommand(StatusMarkersSql) { Parameters = { new NpgsqlParameter("Gid", gid.Value) } },
                },
            };
            await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
            await reader.ReadAsync(cancellationToken);
            var prepared = reader.GetBoolean(0);
            await reader.NextResultAsync(cancellationToken);
            await reader.ReadAsync(cancellationToken);
            row = (reader.IsDBNull(0) ? null : reader.GetString(0), prepared, reader.GetBoolean(1));
        }

        return row switch
        {
            { Prepared: true } => BranchStatus.Prepared,
            { Outcome: "committed" } => BranchStatus.Committed,
            { Outcome: "aborted" } => BranchStatus.Aborted, // an abort told to a read-only branch is an outcome it knows
            { ReadOnly: true } => BranchStatus.ReadOnly,
            _ => BranchStatus.Unknown,
        };
    }

    /// <summary>
    /// Records that <paramref name="gid"/> aborted, so no late branch of it can prepare. Unforced
    /// unless <paramref name="forced"/>: an abort the participant decided alone may be lost in a
    /// crash (the coordinator then presumes abort anyway), but a fence someone is told about must
    /// not be. One round trip; when a statement fails, the rest of the batch (its COMMIT included)
    /// is skipped and the connection's return to the pool rolls the transaction back.
    /// </summary>
    public async Task RecordAbortedAsync(BranchGid gid, CancellationToken cancellationToken, bool forced = false)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(
            forced ? InsertAbortedForcedSql : InsertAbortedSql, new { Gid = gid.Value, TransactionId = gid.Transaction.Value }, cancellationToken: cancellationToken));
    }

    /// <summary>
    /// Writes the commit marker inside the branch, then <c>PREPARE TRANSACTION</c>, both in one
    /// round trip (a batch: when the marker fails, PostgreSQL skips the PREPARE and the branch's
    /// transaction is left failed, for the caller to roll back). On success the session is no
    /// longer in a transaction. With <paramref name="checkWrote"/>, the same batch first asks
    /// whether the branch had written before its marker (see <see cref="WroteSql"/>) and returns
    /// it; without, returns true.
    /// </summary>
    public static async Task<bool> PrepareAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, BranchGid gid, bool checkWrote, CancellationToken cancellationToken)
    {
        await using var batch = new NpgsqlBatch(connection, transaction);
        if (checkWrote)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(WroteSql));
        }

        // Pinned whatever the role's default: under 'local' or 'off' the PREPARE (the Yes vote) is
        // acknowledged before a synchronous standby has it, and a failover loses it.
        batch.BatchCommands.Add(new NpgsqlBatchCommand("SET LOCAL synchronous_commit TO on"));
        batch.BatchCommands.Add(new NpgsqlBatchCommand(InsertCommittedMarkerSql)
        {
            Parameters = { new NpgsqlParameter("Gid", gid.Value), new NpgsqlParameter("TransactionId", gid.Transaction.Value) },
        });
        batch.BatchCommands.Add(new NpgsqlBatchCommand($"PREPARE TRANSACTION '{BranchGid.EnsureSafe(gid.Value)}'"));
        DbFaults.Before(DbFaultPoints.BranchPrepare);
        var wrote = true;
        if (checkWrote)
        {
            await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
            wrote = await reader.ReadAsync(cancellationToken) && reader.GetBoolean(0);
            // The marker's and PREPARE's errors surface here.
            while (await reader.NextResultAsync(cancellationToken))
            {
            }
        }
        else
        {
            await batch.ExecuteNonQueryAsync(cancellationToken);
        }

        DbFaults.After(DbFaultPoints.BranchPrepare);
        return wrote;
    }

    /// <summary>
    /// Whether the branch's transaction has written: PostgreSQL gives a transaction an id at its
    /// first write (any row, DDL, a sequence's nextval does not count), so none means nothing
    /// written on this connection. The signal behind the read-only vote.
    /// </summary>
    private const string WroteSql = "SELECT txid_current_if_assigned() IS NOT NULL";

    /// <summary>Asks <see cref="WroteSql"/> inside the branch's transaction. Throws when the transaction failed.</summary>
    public static Task<bool> WroteAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, CancellationToken cancellationToken) =>
        connection.ExecuteScalarAsync<bool>(new CommandDefinition(WroteSql, transaction: transaction, cancellationToken: cancellationToken));

    /// <summary>
    /// Finishes a branch that wrote nothing, in place of <see cref="PrepareAsync"/>: asks PostgreSQL
    /// whether the transaction has a transaction id (it gets one at its first write) and, with none,
    /// writes the read-only marker and commits, forced (<c>synchronous_commit</c> on), in a second
    /// round trip: a peer asking later must find the marker, never an unknown branch it would fence.
    /// False, changing nothing, when the transaction wrote. On true the session is no longer in a
    /// transaction.
    /// </summary>
    public static async Task<bool> TryFinishReadOnlyAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, BranchGid gid, CancellationToken cancellationToken)
    {
        if (await WroteAsync(connection, transaction, cancellationToken))
        {
            return false;
        }

        await using var batch = new NpgsqlBatch(connection, transaction)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("SET LOCAL synchronous_commit TO on"),
                new NpgsqlBatchCommand(InsertReadOnlyMarkerSql)
                {
                    Parameters = { new NpgsqlParameter("Gid", gid.Value), new NpgsqlParameter("TransactionId", gid.Transaction.Value) },
                },
                new NpgsqlBatchCommand("COMMIT"),
            },
        };
        await batch.ExecuteNonQueryAsync(cancellationToken);
        return true;
    }

    /// <summary><c>COMMIT PREPARED</c>. Throws <see cref="PostgresException"/> 42704 when no such prepared transaction exists.</summary>
    public Task CommitPreparedAsync(BranchGid gid, CancellationToken cancellationToken) =>
        ExecuteOutsideTransactionAsync($"COMMIT PREPARED '{BranchGid.EnsureSafe(gid.Value)}'", DbFaultPoints.BranchCommitPrepared, cancellationToken);

    /// <summary><c>ROLLBACK PREPARED</c>. Throws <see cref="PostgresException"/> 42704 when no such prepared transaction exists.</summary>
    public Task RollbackPreparedAsync(BranchGid gid, CancellationToken cancellationToken) =>
        ExecuteOutsideTransactionAsync($"ROLLBACK PREPARED '{BranchGid.EnsureSafe(gid.Value)}'", DbFaultPoints.BranchRollbackPrepared, cancellationToken);

    /// <summary>This participant's prepared branches in this database, oldest first. GIDs TxCoord did not make are left out.</summary>
    public async Task<IReadOnlyList<PreparedBranch>> ListPreparedAsync(ParticipantId participant, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<(string Gid, double AgeSeconds)>(
            new CommandDefinition(ListPreparedSql, cancellationToken: cancellationToken));
        var result = new List<PreparedBranch>();
        foreach (var (text, ageSeconds) in rows)
        {
            if (BranchGid.TryParse(text, out var gid) && gid.Participant == participant)
            {
                result.Add(new PreparedBranch(gid, TimeSpan.FromSeconds(Math.Max(0, ageSeconds))));
            }
        }

        return result;
    }

    /// <param name="faultPoint">The step's name for the fault seam (<see cref="DbFaults"/>; off unless armed).</param>
    private async Task ExecuteOutsideTransactionAsync(string sql, string faultPoint, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand(sql, connection);
        DbFaults.Before(faultPoint);
        await command.ExecuteNonQueryAsync(cancellationToken);
        DbFaults.After(faultPoint);
    }

    internal static string Describe(NpgsqlConnection connection) =>
        $"{connection.Host}:{connection.Port}/{connection.Database}";
}
