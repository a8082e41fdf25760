using Dapper;
using Npgsql;
using TxCoord.Contracts;

namespace TxCoord.Coordinator.Journal;

/// <summary>What an operator asked for, as the audit log records it.</summary>
/// <param name="Actor">Who: the name the operator gave.</param>
/// <param name="Credential">With which right: the name of the key that authorized it (e.g. "admin-key").</param>
/// <param name="RemoteAddress">From where: the client address the request came from.</param>
/// <param name="Action">What: e.g. "resolve-abort", "retry-phase2", "heuristic-commit".</param>
/// <param name="Reason">Why, in the operator's words.</param>
internal sealed record AuditRequest(
    CoordinatorId Coordinator,
    string Actor,
    string Credential,
    string? RemoteAddress,
    string Action,
    TransactionId? TransactionId,
    string Reason);

/// <summary>One row of <c>txcoord.audit_log</c>.</summary>
/// <param name="Outcome">"requested" until the action finished, then "done", "refused" or "failed".</param>
/// <param name="Result">What happened, in words.</param>
internal sealed record AuditRecord(
    long Id,
    DateTimeOffset At,
    string CoordinatorId,
    string Actor,
    string Credential,
    string? RemoteAddress,
    string Action,
    Guid? TransactionId,
    string Reason,
    string Outcome,
    string? Result,
    DateTimeOffset? CompletedAt);

/// <summary>
/// The audit log of operators' actions, <c>txcoord.audit_log</c> in the journal database. An
/// action is recorded before it is carried out (outcome "requested") and completed after, so no
/// action, not even one interrupted by a crash, goes unrecorded. Both writes are forced
/// (<c>synchronous_commit</c> on) and each also appends a line to the transaction's history in
/// <c>txcoord.transaction_events</c>, in the same SQL transaction.
/// <para>Failure: an exception, and nothing written by that call; the caller must not carry out
/// an action whose request could not be recorded.</para>
/// </summary>
internal sealed class AuditLog(NpgsqlDataSource dataSource)
{
    /// <summary>
    /// Created with the journal schema (same advisory lock), as a separate, additive statement:
    /// a journal created before the dashboard existed gets the table at the next start.
    /// </summary>
    internal const string SchemaSql = """
        SELECT pg_advisory_xact_lock(@LockKey);
        -- Only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
        -- schema exists, and a least-privilege role owns only its schema (docs/least-privilege.md).
        DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'txcoord') THEN CREATE SCHEMA txcoord; END IF; END $$;
        CREATE TABLE IF NOT EXISTS txcoord.audit_log (
            id bigserial PRIMARY KEY,
            at timestamptz NOT NULL,
            coordinator_id text NOT NULL,
            actor text NOT NULL,
            credential text NOT NULL,
            remote_address text,
            action text NOT NULL,
            transaction_id uuid,
            reason text NOT NULL,
            outcome text NOT NULL CHECK (outcome IN ('requested', 'done', 'refused', 'failed')),
            result text,
            completed_at timestamptz);
        CREATE INDEX IF NOT EXISTS audit_log_transaction ON txcoord.audit_log (transaction_id, id);
        """;

    internal const string ForcedSql = "SET LOCAL synchronous_commit TO on";

    internal const string InsertSql = """
        INSERT INTO txcoord.audit_log (at, coordinator_id, actor, credential, remote_address, action, transaction_id, reason, outcome)
        VALUES (@At, @CoordinatorId, @Actor, @Credential, @RemoteAddress, @Action, @TransactionId, @Reason, 'requested')
        RETURNING id
        """;

    internal const string CompleteSql = """
        UPDATE txcoord.audit_log SET outcome = @Outcome, result = @Result, completed_at = @At
        WHERE id = @Id AND outcome = 'requested'
        RETURNING transaction_id
        """;

    internal const string HistorySql = """
        INSERT INTO txcoord.transaction_events (transaction_id, at, kind, detail)
        VALUES (@TransactionId, @At, @Kind, @Detail)
        """;

    private const string SelectSql = """
        SELECT id AS Id, at AS At, coordinator_id AS CoordinatorId, actor AS Actor, credential AS Credential,
               remote_address AS RemoteAddress, action AS Action, transaction_id AS TransactionId, reason AS Reason,
               outcome AS Outcome, result AS Result, completed_at AS CompletedAt
        FROM txcoord.audit_log
        """;

    internal const string ListSql = SelectSql + " ORDER BY id DESC LIMIT @Limit";

    internal const string ListForTransactionSql = SelectSql + " WHERE transaction_id = @TransactionId ORDER BY id DESC LIMIT @Limit";

    public const int MaxList = 500;

    /// <summary>The outcomes an action can end with.</summary>
    public const string Done = "done";

    public const string Refused = "refused";

    public const string Failed = "failed";

    public async Task EnsureSchemaAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(
            SchemaSql, new { LockKey = PostgresTransactionJournal.SchemaLockKey }, transaction, cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>Records a request before it is carried out; returns the audit record's id.</summary>
    public async Task<long> RecordRequestAsync(AuditRequest request, DateTimeOffset at, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(ForcedSql, null, transaction, cancellationToken: cancellationToken));
        var id = await connection.ExecuteScalarAsync<long>(new CommandDefinition(
            InsertSql,
            new
            {
                At = at.ToUniversalTime(),
                CoordinatorId = request.Coordinator.Value,
                request.Actor,
                request.Credential,
                request.RemoteAddress,
                request.Action,
                TransactionId = request.TransactionId?.Value,
                request.Reason,
            },
            transaction,
            cancellationToken: cancellationToken));
        if (request.TransactionId is { } transactionId)
        {
            await connection.ExecuteAsync(new CommandDefinition(
                HistorySql,
                new
                {
                    TransactionId = transactionId.Value,
                    At = at.ToUniversalTime(),
                    Kind = $"operator:{request.Action}",
                    Detail = $"requested by {request.Actor} (audit #{id}): {request.Reason}",
                },
                transaction,
                cancellationToken: cancellationToken));
        }

        await transaction.CommitAsync(cancellationToken);
        return id;
    }

    /// <summary>Completes a request with its outcome (<see cref="Done"/>, <see cref="Refused"/> or <see cref="Failed"/>) and what happened.</summary>
    public async Task CompleteAsync(long id, string outcome, string result, DateTimeOffset at, CancellationToken cancellationToken)
    {
        if (outcome is not (Done or Refused or Failed))
        {
            throw new ArgumentException($"Unknown audit outcome '{outcome}'.", nameof(outcome));
        }

        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(ForcedSql, null, transaction, cancellationToken: cancellationToken));
        var transactionId = await connection.ExecuteScalarAsync<Guid?>(new CommandDefinition(
            CompleteSql, new { Id = id, Outcome = outcome, Result = result, At = at.ToUniversalTime() }, transaction, cancellationToken: cancellationToken));
        if (transactionId is { } tx)
        {
            await connection.ExecuteAsync(new CommandDefinition(
                HistorySql,
                new { TransactionId = tx, At = at.ToUniversalTime(), Kind = $"operator:{outcome}", Detail = $"audit #{id}: {result}" },
                transaction,
                cancellationToken: cancellationToken));
        }

        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>The latest records, newest first; only those about <paramref name="transactionId"/> when given.</summary>
    public async Task<IReadOnlyList<AuditRecord>> ListAsync(TransactionId? transactionId, int limit, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(limit, MaxList);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = transactionId is { } id
            ? await connection.QueryAsync<Row>(new CommandDefinition(ListForTransactionSql, new { TransactionId = id.Value, Limit = limit }, cancellationToken: cancellationToken))
            : await connection.QueryAsync<Row>(new CommandDefinition(ListSql, new { Limit = limit }, cancellationToken: cancellationToken));
        return [.. rows.Select(r => r.ToRecord())];
    }

    private sealed class Row
    {
        public long Id { get; init; }
        public DateTime At { get; init; }
        public string CoordinatorId { get; init; } = "";
        public string Actor { get; init; } = "";
        public string Credential { get; init; } = "";
        public string? RemoteAddress { get; init; }
        public string Action { get; init; } = "";
        public Guid? TransactionId { get; init; }
        public string Reason { get; init; } = "";
        public string Outcome { get; init; } = "";
        public string? Result { get; init; }
        public DateTime? CompletedAt { get; init; }

        public AuditRecord ToRecord() => new(
            Id, Utc(At), CoordinatorId, Actor, Credential, RemoteAddress, Action, TransactionId, Reason, Outcome, Result,
            CompletedAt is { } completed ? Utc(completed) : null);

        private static DateTimeOffset Utc(DateTime value) => new(DateTime.SpecifyKind(value, DateTimeKind.Utc));
    }
}
