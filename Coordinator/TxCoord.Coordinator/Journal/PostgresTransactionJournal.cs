using System.Collections.Immutable;
using System.Runtime.CompilerServices;
using Dapper;
using Npgsql;
using TxCoord.Contracts;

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
        CREATE SCHEMA IF NOT EXISTS txcoord;
        CREATE TABLE IF NOT EXISTS txcoord.transactions (
            transaction_id uuid PRIMARY KEY,
            coordinator_id text NOT NULL,
            protocol smallint NOT NULL,
            state text NOT NULL CHECK (state IN ('committing', 'committed', 'aborted')),
            participants text[] NOT NULL,
            acked text[] NOT NULL DEFAULT '{}',
            reason text,
            created_at timestamptz,
            decided_at timestamptz,
            ended_at timestamptz);
        CREATE INDEX IF NOT EXISTS transactions_committing
            ON txcoord.transactions (coordinator_id, transaction_id) WHERE state = 'committing';
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
            ON CONFLICT (transaction_id) DO NOTHING
            RETURNING transaction_id)
        INSERT INTO txcoord.transaction_events (transaction_id, at, kind, detail)
        SELECT transaction_id, @At, 'commit-decided', @Detail FROM inserted
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

    private const string SelectColumns = """
        SELECT transaction_id AS TransactionId, coordinator_id AS CoordinatorId, protocol AS Protocol, state AS State,
               participants AS Participants, acked AS Acked, reason AS Reason,
               created_at AS CreatedAt, decided_at AS DecidedAt, ended_at AS EndedAt
        FROM txcoord.transactions
        """;

    internal const string FindSql = SelectColumns + " WHERE transaction_id = @TransactionId";

    internal const string UnfinishedPageSql = SelectColumns + """
         WHERE coordinator_id = @CoordinatorId AND state = 'committing' AND transaction_id > @After
        ORDER BY transaction_id
        LIMIT @PageSize
        """;

    internal const string PingSql = "SELECT 1";

    private readonly NpgsqlDataSource _dataSource;

    public PostgresTransactionJournal(string connectionString)
    {
        _dataSource = NpgsqlDataSource.Create(connectionString);
    }

    public async Task EnsureSchemaAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(
            SchemaSql, new { LockKey = SchemaLockKey }, transaction, cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);
    }

    public async Task WriteCommitDecisionAsync(CommitDecision decision, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(ForcedSql, null, transaction, cancellationToken: cancellationToken));
        var inserted = await connection.ExecuteAsync(new CommandDefinition(
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
            transaction,
            cancellationToken: cancellationToken));
        if (inserted == 0)
        {
            // Already there: a retry after a write whose outcome was unknown. It must be this decision.
            var state = await connection.ExecuteScalarAsync<string>(new CommandDefinition(
                SelectStateSql, new { TransactionId = decision.TransactionId.Value }, transaction, cancellationToken: cancellationToken));
            if (ParseState(state) is not (JournalState.Committing or JournalState.Committed))
            {
                throw new InvalidOperationException(
                    $"Transaction {decision.TransactionId}: the journal already holds it as '{state}'; refusing to record a commit decision.");
            }
        }

        await transaction.CommitAsync(cancellationToken);
    }

    public Task RecordAbortAsync(AbortRecord record, DateTimeOffset now, CancellationToken cancellationToken) =>
        ExecuteUnforcedAsync(
            InsertAbortSql,
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
            cancellationToken);

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
            cancellationToken);

    public Task RecordAckAsync(TransactionId transactionId, ParticipantId participant, DateTimeOffset now, CancellationToken cancellationToken) =>
        ExecuteUnforcedAsync(
            RecordAckSql,
            new { TransactionId = transactionId.Value, Participant = participant.Value, At = Utc(now) },
            cancellationToken);

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

    private async Task ExecuteUnforcedAsync(string sql, object parameters, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(UnforcedSql, null, transaction, cancellationToken: cancellationToken));
        await connection.ExecuteAsync(new CommandDefinition(sql, parameters, transaction, cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);
    }

    private static string[] Names(IEnumerable<ParticipantId> participants) => [.. participants.Select(p => p.Value)];

    /// <summary>Npgsql writes only UTC values to timestamptz.</summary>
    private static DateTimeOffset Utc(DateTimeOffset value) => value.ToUniversalTime();

    private static JournalState ParseState(string? state) => state switch
    {
        "committing" => JournalState.Committing,
        "committed" => JournalState.Committed,
        "aborted" => JournalState.Aborted,
        _ => throw new InvalidOperationException($"Unknown journal state '{state}'."),
    };

    /// <summary>A row as Dapper reads it (timestamptz comes back as a UTC <see cref="DateTime"/>).</summary>
    private sealed class Row
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
