using System.Runtime.CompilerServices;
using Dapper;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Coordinator.Ownership;

namespace TxCoord.Coordinator.Recovery;

/// <summary>A commit decision still open in the journal.</summary>
internal sealed record OpenDecision(TransactionId TransactionId, IReadOnlyList<ParticipantId> Participants, IReadOnlyList<ParticipantId> Acknowledged, DateTimeOffset? DecidedAt);

/// <summary>One heuristic decision an operator forced, as the journal records it.</summary>
internal sealed record HeuristicRecord(long Id, TransactionId TransactionId, string Gid, string Participant, string Action, string JournalState, string Reason, string Operator, DateTimeOffset At, string Outcome);

/// <summary>
/// Recovery's access to the coordinator's journal (<c>txcoord</c> schema): decisions looked up a
/// page at a time, presumed aborts made durable before anything is rolled back, an audit trail of
/// what recovery did, and the heuristic decisions operators forced. Every write is one explicit
/// transaction; a failure leaves the journal as it was (and the caller has not acted yet).
/// </summary>
internal sealed class RecoveryJournal : IAsyncDisposable
{
    public const string Setting = "ConnectionStrings:Journal";

    internal const string SchemaExistsSql =
        "SELECT to_regclass('txcoord.transactions') IS NOT NULL AND to_regclass('txcoord.transaction_events') IS NOT NULL";

    /// <summary>The rows of the given transactions, and the ones that have a commit decision in their history but no row.</summary>
    internal const string DecisionsSql = """
        SELECT t.transaction_id AS TransactionId, t.state AS State,
               EXISTS (SELECT 1 FROM txcoord.transaction_events e
                       WHERE e.transaction_id = t.transaction_id AND e.kind = 'commit-decided') AS HasCommitEvent
        FROM txcoord.transactions t
        WHERE t.transaction_id = ANY (@Ids)
        UNION ALL
        SELECT DISTINCT e.transaction_id, NULL, true
        FROM txcoord.transaction_events e
        WHERE e.transaction_id = ANY (@Ids) AND e.kind = 'commit-decided'
          AND NOT EXISTS (SELECT 1 FROM txcoord.transactions t WHERE t.transaction_id = e.transaction_id)
        """;

    /// <summary>
    /// Presumed abort made durable: an 'aborted' row for each transaction that has none, so that a
    /// commit decision can never be written for it afterwards (the coordinator's insert finds the
    /// row and refuses). Forced, like a commit decision: it must survive before anything rolls back.
    /// </summary>
    internal const string PresumeAbortSql = """
        SET LOCAL synchronous_commit TO on;
        WITH inserted AS (
            INSERT INTO txcoord.transactions (transaction_id, coordinator_id, protocol, state, participants, reason, created_at, ended_at)
            SELECT id, @CoordinatorId, 0, 'aborted', ARRAY[participant], @Reason, @At, @At
            FROM unnest(@Ids, @Participants) AS x(id, participant)
            ON CONFLICT (transaction_id) DO NOTHING
            RETURNING transaction_id)
        INSERT INTO txcoord.transaction_events (transaction_id, at, kind, detail)
        SELECT transaction_id, @At, 'aborted', @Reason FROM inserted;
        """;

    internal const string RecordActionsSql = """
        INSERT INTO txcoord.transaction_events (transaction_id, at, kind, detail)
        SELECT id, @At, 'recovered', detail FROM unnest(@Ids, @Details) AS x(id, detail)
        """;

    internal const string OpenDecisionsPageSql = """
        SELECT transaction_id AS TransactionId, participants AS Participants, acked AS Acked, decided_at AS DecidedAt
        FROM txcoord.transactions
        WHERE coordinator_id = @CoordinatorId AND state = 'committing' AND transaction_id > @After
        ORDER BY transaction_id
        LIMIT @PageSize
        """;

    internal const string HeuristicSchemaSql = """
        SELECT pg_advisory_xact_lock(7411003);
        CREATE TABLE IF NOT EXISTS txcoord.heuristic_decisions (
            id            bigserial PRIMARY KEY,
            transaction_id uuid NOT NULL,
            gid           text NOT NULL,
            participant   text NOT NULL,
            action        text NOT NULL CHECK (action IN ('commit', 'abort')),
            journal_state text NOT NULL,
            reason        text NOT NULL,
            operator      text NOT NULL,
            at            timestamptz NOT NULL,
            outcome       text NOT NULL);
        """;

    internal const string InsertHeuristicSql = """
        WITH heuristic AS (
            INSERT INTO txcoord.heuristic_decisions (transaction_id, gid, participant, action, journal_state, reason, operator, at, outcome)
            VALUES (@TransactionId, @Gid, @Participant, @Action, @JournalState, @Reason, @Operator, @At, 'started')
            RETURNING id, transaction_id)
        INSERT INTO txcoord.transaction_events (transaction_id, at, kind, detail)
        SELECT transaction_id, @At, 'heuristic-' || @Action, @Detail FROM heuristic
        RETURNING (SELECT id FROM heuristic)
        """;

    internal const string CompleteHeuristicSql = "UPDATE txcoord.heuristic_decisions SET outcome = @Outcome WHERE id = @Id";

    internal const string HeuristicsSql = """
        SELECT id AS Id, transaction_id AS TransactionId, gid AS Gid, participant AS Participant, action AS Action,
               journal_state AS JournalState, reason AS Reason, operator AS Operator, at AS At, outcome AS Outcome
        FROM txcoord.heuristic_decisions
        WHERE to_regclass('txcoord.heuristic_decisions') IS NOT NULL
        ORDER BY id
        """;

    private readonly NpgsqlDataSource _dataSource;

    public RecoveryJournal(string connectionString)
    {
        ConnectionString = connectionString;
        _dataSource = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(connectionString)
        {
            ApplicationName = CoordinatorOwnership.RecoveryApplicationName,
            Timeout = 10,
            CommandTimeout = 120,
        }.ConnectionString);
    }

    public string ConnectionString { get; }

    /// <summary>Connects and checks that this is a TxCoord journal.</summary>
    /// <exception cref="RecoveryException">Unreachable, bad credentials, or no journal schema, with what to fix.</exception>
    public async Task CheckAsync(CancellationToken cancellationToken)
    {
        bool exists;
        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
            exists = await connection.ExecuteScalarAsync<bool>(new CommandDefinition(SchemaExistsSql, cancellationToken: cancellationToken));
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            throw RecoveryException.From(e, "the journal", ConnectionString, Setting);
        }

        if (!exists)
        {
            var database = new NpgsqlConnectionStringBuilder(ConnectionString).Database;
            throw new RecoveryException(
                $"the journal: database '{database}' has no TxCoord journal (tables txcoord.transactions and txcoord.transaction_events are missing). " +
                $"Point {Setting} at the coordinator's journal database.");
        }
    }

    /// <summary>What the journal holds for each of <paramref name="ids"/>; absent ids have neither row nor commit history.</summary>
    public async Task<Dictionary<TransactionId, JournalDecision>> FindDecisionsAsync(IReadOnlyCollection<TransactionId> ids, CancellationToken cancellationToken)
    {
        if (ids.Count == 0)
        {
            return [];
        }

        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
            var rows = await connection.QueryAsync<(Guid TransactionId, string? State, bool HasCommitEvent)>(new CommandDefinition(
                DecisionsSql, new { Ids = ids.Select(i => i.Value).Distinct().ToArray() }, cancellationToken: cancellationToken));
            return rows.ToDictionary(r => new TransactionId(r.TransactionId), r => new JournalDecision(new TransactionId(r.TransactionId), r.State, r.HasCommitEvent));
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            throw RecoveryException.From(e, "the journal", ConnectionString, Setting);
        }
    }

    /// <summary>Makes presumed aborts durable (forced) for transactions that have no row; rows already there are left as they are.</summary>
    public async Task RecordPresumedAbortsAsync(
        CoordinatorId coordinator, IReadOnlyList<(TransactionId Id, ParticipantId Participant)> transactions, string reason, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (transactions.Count == 0)
        {
            return;
        }

        var unique = transactions.DistinctBy(t => t.Id).ToArray();
        await ExecuteAsync(PresumeAbortSql, new
        {
            CoordinatorId = coordinator.Value,
            Ids = unique.Select(t => t.Id.Value).ToArray(),
            Participants = unique.Select(t => t.Participant.Value).ToArray(),
            Reason = reason,
            At = now.ToUniversalTime(),
        }, cancellationToken);
    }

    /// <summary>Appends what recovery did to each transaction's history (unforced: it is an audit trail, not a decision).</summary>
    public Task RecordActionsAsync(IReadOnlyList<(TransactionId Id, string Detail)> actions, DateTimeOffset now, CancellationToken cancellationToken) =>
        actions.Count == 0
            ? Task.CompletedTask
            : ExecuteAsync(RecordActionsSql, new
            {
                Ids = actions.Select(a => a.Id.Value).ToArray(),
                Details = actions.Select(a => a.Detail).ToArray(),
                At = now.ToUniversalTime(),
            }, cancellationToken);

    /// <summary>This coordinator's open commit decisions, a page at a time.</summary>
    public async IAsyncEnumerable<IReadOnlyList<OpenDecision>> ReadOpenDecisionsAsync(
        CoordinatorId coordinator, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        const int pageSize = 500;
        var after = Guid.Empty;
        while (true)
        {
            List<(Guid TransactionId, string[] Participants, string[] Acked, DateTime? DecidedAt)> rows;
            try
            {
                await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
                rows = (await connection.QueryAsync<(Guid TransactionId, string[] Participants, string[] Acked, DateTime? DecidedAt)>(new CommandDefinition(
                    OpenDecisionsPageSql, new { CoordinatorId = coordinator.Value, After = after, PageSize = pageSize }, cancellationToken: cancellationToken))).AsList();
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException)
            {
                throw RecoveryException.From(e, "the journal", ConnectionString, Setting);
            }

            if (rows.Count > 0)
            {
                yield return [.. rows.Select(r => new OpenDecision(
                    new TransactionId(r.TransactionId),
                    [.. r.Participants.Select(p => new ParticipantId(p))],
                    [.. r.Acked.Select(p => new ParticipantId(p))],
                    r.DecidedAt is { } d ? new DateTimeOffset(DateTime.SpecifyKind(d, DateTimeKind.Utc)) : null))];
                after = rows[^1].TransactionId;
            }

            if (rows.Count < pageSize)
            {
                yield break;
            }
        }
    }

    /// <summary>
    /// Records a heuristic decision before it is carried out (outcome 'started'), with who and
    /// when, in <c>txcoord.heuristic_decisions</c> and in the transaction's history. Returns its id.
    /// </summary>
    public async Task<long> RecordHeuristicAsync(
        BranchGid gid, ParticipantId participant, bool commit, string journalState, string reason, string @operator, DateTimeOffset now, CancellationToken cancellationToken)
    {
        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            await connection.ExecuteAsync(new CommandDefinition(HeuristicSchemaSql, transaction: transaction, cancellationToken: cancellationToken));
            var action = commit ? "commit" : "abort";
            var id = await connection.ExecuteScalarAsync<long>(new CommandDefinition(InsertHeuristicSql, new
            {
                TransactionId = gid.Transaction.Value,
                Gid = gid.Value,
                Participant = participant.Value,
                Action = action,
                JournalState = journalState,
                Reason = reason,
                Operator = @operator,
                At = now.ToUniversalTime(),
                Detail = $"{gid} at {participant}: forced {action} by {@operator} (journal: {journalState}); reason: {reason}",
            }, transaction, cancellationToken: cancellationToken));
            await transaction.CommitAsync(cancellationToken);
            return id;
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            throw RecoveryException.From(e, "recording the heuristic decision in the journal", ConnectionString, Setting);
        }
    }

    public Task CompleteHeuristicAsync(long id, string outcome, CancellationToken cancellationToken) =>
        ExecuteAsync(CompleteHeuristicSql, new { Id = id, Outcome = outcome }, cancellationToken);

    /// <summary>Every heuristic decision recorded, oldest first (none when the table does not exist).</summary>
    public async Task<IReadOnlyList<HeuristicRecord>> ReadHeuristicsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        var exists = await connection.ExecuteScalarAsync<bool>(new CommandDefinition(
            "SELECT to_regclass('txcoord.heuristic_decisions') IS NOT NULL", cancellationToken: cancellationToken));
        if (!exists)
        {
            return [];
        }

        var rows = await connection.QueryAsync<(long Id, Guid TransactionId, string Gid, string Participant, string Action, string JournalState, string Reason, string Operator, DateTime At, string Outcome)>(
            new CommandDefinition(HeuristicsSql, cancellationToken: cancellationToken));
        return [.. rows.Select(r => new HeuristicRecord(r.Id, new TransactionId(r.TransactionId), r.Gid, r.Participant, r.Action, r.JournalState, r.Reason, r.Operator,
            new DateTimeOffset(DateTime.SpecifyKind(r.At, DateTimeKind.Utc)), r.Outcome))];
    }

    /// <summary>A connection for read-only checks (verify).</summary>
    public async Task<NpgsqlConnection> OpenAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _dataSource.OpenConnectionAsync(cancellationToken);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            throw RecoveryException.From(e, "the journal", ConnectionString, Setting);
        }
    }

    public ValueTask DisposeAsync() => _dataSource.DisposeAsync();

    private async Task ExecuteAsync(string sql, object parameters, CancellationToken cancellationToken)
    {
        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            await connection.ExecuteAsync(new CommandDefinition(sql, parameters, transaction, cancellationToken: cancellationToken));
            await transaction.CommitAsync(cancellationToken);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            throw RecoveryException.From(e, "the journal", ConnectionString, Setting);
        }
    }
}
