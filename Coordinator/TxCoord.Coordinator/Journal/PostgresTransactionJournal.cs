using System.Collections.Immutable;
using System.Runtime.CompilerServices;
using Dapper;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Faults;

namespace TxCoord.Coordinator.Journal;

/// <summary>
/// The journal in PostgreSQL: schema <c>txcoord</c>, one row per transaction in
/// <c>txcoord.transactions</c> and an append-only history in <c>txcoord.transaction_events</c>.
/// One <see cref="NpgsqlDataSource"/>; every durable step is one explicit transaction.
/// </summary>
internal sealed class PostgresTransactionJournal : ITransactionJournal, IAsyncDisposable, IDisposable
{
    /// <summary>Rows per page when streaming unfinished transactions.</summary>
    internal const int UnfinishedPageSize = 500;

    /// <summary>Key of the advisory lock that serializes schema creation ("txcoord" in ASCII).</summary>
    internal const long SchemaLockKey = 0x7478636f6f7264;

    internal const string SchemaSql = """
        SELECT pg_advisory_xact_lock(@LockKey);
        -- Only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
        -- schema exists, and a least-privilege role owns only its schema (docs/least-privilege.md).
        DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'txcoord') THEN CREATE SCHEMA txcoord; END IF; END $$;
        CREATE TABLE IF NOT EXISTS txcoord.transactions (
            transaction_id uuid PRIMARY KEY,
            coordinator_id text NOT NULL,
            protocol smallint NOT NULL,
            state text NOT NULL CHECK (state IN ('precommitting', 'committing', 'committed', 'aborted')),
            participants text[] NOT NULL,
            acked text[] NOT NULL DEFAULT '{}',
            reason text,
            created_at timestamptz,
            decided_at timestamptz,
            ended_at timestamptz);
        CREATE INDEX IF NOT EXISTS transactions_committing
            ON txcoord.transactions (coordinator_id, transaction_id) WHERE state = 'committing';
        -- 3PC added the state 'precommitting': widen the CHECK of a journal created before it.
        DO $$
        BEGIN
            IF NOT EXISTS (
                SELECT 1 FROM pg_constraint
                WHERE conrelid = 'txcoord.transactions'::regclass AND contype = 'c'
                  AND pg_get_constraintdef(oid) LIKE '%precommitting%') THEN
                ALTER TABLE txcoord.transactions DROP CONSTRAINT IF EXISTS transactions_state_check;
                ALTER TABLE txcoord.transactions ADD CONSTRAINT transactions_state_check
                    CHECK (state IN ('precommitting', 'committing', 'committed', 'aborted'));
            END IF;
        END $$;
        CREATE INDEX IF NOT EXISTS transactions_precommitting
            ON txcoord.transactions (coordinator_id, transaction_id) WHERE state = 'precommitting';
        CREATE TABLE IF NOT EXISTS txcoord.transaction_events (
            id bigserial PRIMARY KEY,
            transaction_id uuid NOT NULL,
            at timestamptz NOT NULL,
            kind text NOT NULL,
            detail text);
        CREATE INDEX IF NOT EXISTS transaction_events_transaction
            ON txcoord.transaction_events (transaction_id, id);
        """;

    internal const string ForcedSql = "SET LOCAL synchronous_commit TO on";

    internal const string UnforcedSql = "SET LOCAL synchronous_commit TO off";

    internal const string InsertCommitDecisionSql = """
        WITH inserted AS (
            INSERT INTO txcoord.transactions (transaction_id, coordinator_id, protocol, state, participants, created_at, decided_at)
            VALUES (@TransactionId, @CoordinatorId, @Protocol, 'committing', @Participants, @CreatedAt, @DecidedAt)
            ON CONFLICT (transaction_id) DO UPDATE
                SET state = 'committing', participants = EXCLUDED.participants, decided_at = EXCLUDED.decided_at
                WHERE txcoord.transactions.state = 'precommitting'
            RETURNING transaction_id)
        INSERT INTO txcoord.transaction_events (transaction_id, at, kind, detail)
        SELECT transaction_id, @At, 'commit-decided', @Detail FROM inserted
        """;

    internal const string InsertPreCommitSql = """
        WITH inserted AS (
            INSERT INTO txcoord.transactions (transaction_id, coordinator_id, protocol, state, participants, created_at)
            VALUES (@TransactionId, @CoordinatorId, @Protocol, 'precommitting', @Participants, @CreatedAt)
            ON CONFLICT (transaction_id) DO NOTHING
            RETURNING transaction_id)
        INSERT INTO txcoord.transaction_events (transaction_id, at, kind, detail)
        SELECT transaction_id, @At, 'precommit', @Detail FROM inserted
        """;

    internal const string SelectStateSql = "SELECT state FROM txcoord.transactions WHERE transaction_id = @TransactionId";

    internal const string InsertAbortSql = """
        WITH inserted AS (
            INSERT INTO txcoord.transactions (transaction_id, coordinator_id, protocol, state, participants, reason, created_at, ended_at)
            VALUES (@TransactionId, @CoordinatorId, @Protocol, 'aborted', @Participants, @Reason, @CreatedAt, @At)
            ON CONFLICT (transaction_id) DO NOTHING
            RETURNING transaction_id)
        INSERT INTO txcoord.transaction_events (transaction_id, at, kind, detail)
        SELECT transaction_id, @At, 'aborted', @Reason FROM inserted
        """;

    /// <summary>An abort that may replace a 3PC PreCommit record (never a commit decision).</summary>
    internal const string AbortAfterPreCommitSql = """
        WITH aborted AS (
            INSERT INTO txcoord.transactions (transaction_id, coordinator_id, protocol, state, participants, reason, created_at, ended_at)
            VALUES (@TransactionId, @CoordinatorId, @Protocol, 'aborted', @Participants, @Reason, @CreatedAt, @At)
            ON CONFLICT (transaction_id) DO UPDATE
                SET state = 'aborted', reason = EXCLUDED.reason, ended_at = EXCLUDED.ended_at
                WHERE txcoord.transactions.state = 'precommitting'
            RETURNING transaction_id)
        INSERT INTO txcoord.transaction_events (transaction_id, at, kind, detail)
        SELECT transaction_id, @At, 'aborted', @Reason FROM aborted
        """;

    internal const string RecordEndSql = """
        WITH ended AS (
            INSERT INTO txcoord.transactions (transaction_id, coordinator_id, protocol, state, participants, acked, created_at, decided_at, ended_at)
            VALUES (@TransactionId, @CoordinatorId, @Protocol, 'committed', @Participants, @Participants, @CreatedAt, @DecidedAt, @At)
            ON CONFLICT (transaction_id) DO UPDATE
                SET state = 'committed', acked = EXCLUDED.acked, ended_at = EXCLUDED.ended_at
                WHERE txcoord.transactions.state = 'committing'
            RETURNING transaction_id)
        INSERT INTO txcoord.transaction_events (transaction_id, at, kind, detail)
        SELECT transaction_id, @At, 'committed', NULL FROM ended
        """;

    internal const string RecordAckSql = """
        WITH updated AS (
            UPDATE txcoord.transactions SET acked = array_append(acked, @Participant)
            WHERE transaction_id = @TransactionId AND state = 'committing' AND NOT (@Participant = ANY (acked))
            RETURNING transaction_id)
        INSERT INTO txcoord.transaction_events (transaction_id, at, kind, detail)
        SELECT transaction_id, @At, 'acknowledged', @Participant FROM updated
        """;

    internal const string SelectColumns = """
        SELECT transaction_id AS TransactionId, coordinator_id AS CoordinatorId, protocol AS Protocol, state AS State,
               participants AS Participants, acked AS Acked, reason AS Reason,
               created_at AS CreatedAt, decided_at AS DecidedAt, ended_at AS EndedAt
        FROM txcoord.transactions
        """;

    internal const string FindSql = SelectColumns + " WHERE transaction_id = @TransactionId";

    internal const string UnfinishedPageSql = SelectColumns + """
         WHERE coordinator_id = @CoordinatorId AND state IN ('committing', 'precommitting') AND transaction_id > @After
        ORDER BY transaction_id
        LIMIT @PageSize
        """;

    internal const string PingSql = "SELECT 1";

    private readonly NpgsqlDataSource _dataSource;
    private readonly JournalGroupCommit _writes;

    public PostgresTransactionJournal(string connectionString)
    {
        // The journal never leaves session state behind (SET LOCAL only, transactions always ended):
        // its pooled connections skip the DISCARD ALL that Npgsql otherwise runs at every checkout.
        _dataSource = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(connectionString) { NoResetOnClose = true }.ConnectionString);
        _writes = new JournalGroupCommit(_dataSource);
    }

    /// <summary>Group commit: every write goes through it (see <see cref="JournalGroupCommit"/> for what a failure leaves behind).</summary>
    internal JournalGroupCommit Writes => _writes;

    public async Task EnsureSchemaAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(
            SchemaSql, new { LockKey = SchemaLockKey }, transaction, cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);
    }

    public Task WriteCommitDecisionAsync(CommitDecision decision, DateTimeOffset now, CancellationToken cancellationToken) =>
        _writes.WriteAsync(
            new JournalWrite(
                InsertCommitDecisionSql,
                new
                {
                    TransactionId = decision.TransactionId.Value,
                    CoordinatorId = decision.CoordinatorId.Value,
                    Protocol = (short)decision.Protocol,
                    Participants = Names(decision.Participants),
                    CreatedAt = Utc(decision.CreatedAt),
                    DecidedAt = Utc(decision.DecidedAt),
                    At = Utc(now),
                    Detail = "participants: " + string.Join(", ", decision.Participants),
                },
                Forced: true,
                DbFaultPoints.JournalCommitDecision,
                async (connection, transaction, inserted) =>
                {
                    if (inserted == 0)
                    {
                        // Already there: a retry after a write whose outcome was unknown. It must be this decision.
                        var state = await connection.ExecuteScalarAsync<string>(new CommandDefinition(
                            SelectStateSql, new { TransactionId = decision.TransactionId.Value }, transaction));
                        if (ParseState(state) is not (JournalState.Committing or JournalState.Committed))
                        {
                            throw new JournalDecisionRefusedException(
                                $"Transaction {decision.TransactionId}: the journal already holds it as '{state}'; refusing to record a commit decision.");
                        }
                    }
                }),
            cancellationToken);

    public Task WritePreCommitAsync(CommitDecision decision, DateTimeOffset now, CancellationToken cancellationToken) =>
        _writes.WriteAsync(
            new JournalWrite(
                InsertPreCommitSql,
                new
                {
                    TransactionId = decision.TransactionId.Value,
                    CoordinatorId = decision.CoordinatorId.Value,
                    Protocol = (short)decision.Protocol,
                    Participants = Names(decision.Participants),
                    CreatedAt = Utc(decision.CreatedAt),
                    At = Utc(now),
                    Detail = "participants: " + string.Join(", ", decision.Participants),
                },
                Forced: true,
                FaultPoint: null,
                async (connection, transaction, inserted) =>
                {
                    if (inserted == 0)
                    {
                        // Already there: a retry after a write whose outcome was unknown, or a later step of the same transaction.
                        var state = await connection.ExecuteScalarAsync<string>(new CommandDefinition(
                            SelectStateSql, new { TransactionId = decision.TransactionId.Value }, transaction));
                        if (ParseState(state) is JournalState.Aborted)
                        {
                            throw new JournalDecisionRefusedException(
                                $"Transaction {decision.TransactionId}: the journal already holds it as '{state}'; refusing to record PreCommit.");
                        }
                    }
                }),
            cancellationToken);

    public async Task<bool> RecordAbortAsync(AbortRecord record, DateTimeOffset now, CancellationToken cancellationToken)
    {
        // The statement's row count is the number of 'aborted' events it inserted: 1 when this
        // write put the abort in the row. (A batch that failed is re-run write by write: the
        // last run's count is the one that committed.)
        var wrote = false;
        await _writes.WriteAsync(new JournalWrite(
            record.AfterPreCommit ? AbortAfterPreCommitSql : InsertAbortSql,
            new
            {
                TransactionId = record.TransactionId.Value,
                CoordinatorId = record.CoordinatorId.Value,
                Protocol = (short)record.Protocol,
                Participants = Names(record.Participants),
                record.Reason,
                CreatedAt = Utc(record.CreatedAt),
                At = Utc(now),
            },
            record.Forced,
            DbFaultPoints.JournalAbort,
            async (connection, transaction, rows) =>
            {
                wrote = rows > 0;
                if (record.Forced && rows == 0)
                {
                    // The row was already there, perhaps written unforced and not yet flushed: a
                    // transaction id makes this transaction's forced commit write a commit record,
                    // whose flush covers the WAL before it, the earlier row's included.
                    await connection.ExecuteScalarAsync<long>(new CommandDefinition(
                        "SELECT txid_current()", transaction: transaction, cancellationToken: CancellationToken.None)); // the batch is not the caller's to cancel
                }
            }), cancellationToken);
        return wrote;
    }

    public Task RecordEndAsync(CommitDecision decision, DateTimeOffset now, CancellationToken cancellationToken) =>
        ExecuteUnforcedAsync(
            RecordEndSql,
            new
            {
                TransactionId = decision.TransactionId.Value,
                CoordinatorId = decision.CoordinatorId.Value,
                Protocol = (short)decision.Protocol,
                Participants = Names(decision.Participants),
                CreatedAt = Utc(decision.CreatedAt),
                DecidedAt = Utc(decision.DecidedAt),
                At = Utc(now),
            },
            cancellationToken,
            DbFaultPoints.JournalEnd);

    public Task RecordAckAsync(TransactionId transactionId, ParticipantId participant, DateTimeOffset now, CancellationToken cancellationToken) =>
        ExecuteUnforcedAsync(
            RecordAckSql,
            new { TransactionId = transactionId.Value, Participant = participant.Value, At = Utc(now) },
            cancellationToken,
            DbFaultPoints.JournalAck);

    public async Task<JournalEntry?> FindAsync(TransactionId transactionId, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleOrDefaultAsync<Row>(new CommandDefinition(
            FindSql, new { TransactionId = transactionId.Value }, cancellationToken: cancellationToken));
        return row?.ToEntry();
    }

    public async IAsyncEnumerable<JournalEntry> LoadUnfinishedAsync(
        CoordinatorId coordinatorId,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var after = Guid.Empty;
        while (true)
        {
            List<Row> page;
            await using (var connection = await _dataSource.OpenConnectionAsync(cancellationToken))
            {
                page = (await connection.QueryAsync<Row>(new CommandDefinition(
                    UnfinishedPageSql,
                    new { CoordinatorId = coordinatorId.Value, After = after, PageSize = UnfinishedPageSize },
                    cancellationToken: cancellationToken))).AsList();
            }

            foreach (var row in page)
            {
                yield return row.ToEntry();
            }

            if (page.Count < UnfinishedPageSize)
            {
                yield break;
            }

            after = page[^1].TransactionId;
        }
    }

    public async Task PingAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await connection.ExecuteScalarAsync<int>(new CommandDefinition(PingSql, cancellationToken: cancellationToken));
    }

    public ValueTask DisposeAsync() => _dataSource.DisposeAsync();

    public void Dispose() => _dataSource.Dispose();

    /// <param name="faultPoint">The step's name for the fault seam (<see cref="DbFaults"/>; off unless armed).</param>
    private Task ExecuteUnforcedAsync(string sql, object parameters, CancellationToken cancellationToken, string faultPoint) =>
        _writes.WriteAsync(new JournalWrite(sql, parameters, Forced: false, faultPoint), cancellationToken);

    private static string[] Names(IEnumerable<ParticipantId> participants) => [.. participants.Select(p => p.Value)];

    /// <summary>Npgsql writes only UTC values to timestamptz.</summary>
    private static DateTimeOffset Utc(DateTimeOffset value) => value.ToUniversalTime();

    private static JournalState ParseState(string? state) => state switch
    {
        "precommitting" => JournalState.PreCommitting,
        "committing" => JournalState.Committing,
        "committed" => JournalState.Committed,
        "aborted" => JournalState.Aborted,
        _ => throw new InvalidOperationException($"Unknown journal state '{state}'."),
    };

    /// <summary>A row as Dapper reads it (timestamptz comes back as a UTC <see cref="DateTime"/>).</summary>
    internal sealed class Row
    {
        public Guid TransactionId { get; init; }
        public string CoordinatorId { get; init; } = "";
        public short Protocol { get; init; }
        public string State { get; init; } = "";
        public string[] Participants { get; init; } = [];
        public string[] Acked { get; init; } = [];
        public string? Reason { get; init; }
        public DateTime? CreatedAt { get; init; }
        public DateTime? DecidedAt { get; init; }
        public DateTime? EndedAt { get; init; }

        public JournalEntry ToEntry() => new(
            new TransactionId(TransactionId),
            new CoordinatorId(CoordinatorId),
            (CommitProtocol)Protocol,
            ParseState(State),
            [.. Participants.Select(p => new ParticipantId(p))],
            [.. Acked.Select(p => new ParticipantId(p))],
            Reason,
            ToOffset(CreatedAt) ?? ToOffset(DecidedAt) ?? DateTimeOffset.MinValue,
            ToOffset(DecidedAt),
            ToOffset(EndedAt));

        private static DateTimeOffset? ToOffset(DateTime? value) =>
            value is { } v ? new DateTimeOffset(DateTime.SpecifyKind(v, DateTimeKind.Utc)) : null;
    }
}
