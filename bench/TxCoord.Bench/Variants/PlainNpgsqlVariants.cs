using System.Transactions;
using Npgsql;
using TxCoord.Contracts;

namespace TxCoord.Bench.Variants;

/// <summary>
/// The SQL of the baselines. Per database a transfer runs the same two statements as the bank
/// sample's work handlers (<c>BankWork</c>: record the applied transfer, then move the balance),
/// so the baselines do the same work as TxCoord's branches, without TxCoord.
/// </summary>
internal static class BaselineSql
{
    public const string InsertApplied = """
        INSERT INTO applied_transfers (transfer_id, kind, amount) VALUES (@TransferId, @Kind, @Amount)
        ON CONFLICT (transfer_id, kind) DO NOTHING
        """;

    public const string Debit = "UPDATE accounts SET balance = balance - @Amount WHERE id = @AccountId AND balance >= @Amount";

    public const string Credit = "UPDATE accounts SET balance = balance + @Amount WHERE id = @AccountId";

    /// <summary>B1: a transfer between two accounts of one database in one statement (the accounts must differ).</summary>
    public const string LocalTransfer = """
        UPDATE accounts SET balance = balance + CASE WHEN id = @From THEN -@Amount ELSE @Amount END
        WHERE id IN (@From, @To)
        """;

    public const string CreateDecisionTableSql = """
        CREATE SCHEMA IF NOT EXISTS txcoord_bench;
        CREATE TABLE IF NOT EXISTS txcoord_bench.decisions (
            transaction_id uuid PRIMARY KEY,
            participants   text[] NOT NULL,
            decided_at     timestamptz NOT NULL DEFAULT now());
        """;

    /// <summary>B2's forced decision record (synchronous_commit is on on the server).</summary>
    public const string InsertDecision = "INSERT INTO txcoord_bench.decisions (transaction_id, participants) VALUES (@TransactionId, @Participants)";

    public const string DecisionExists = "SELECT EXISTS (SELECT 1 FROM txcoord_bench.decisions WHERE transaction_id = @TransactionId)";

    /// <summary>Deadlock and serialization failures: the transfer is simply run again.</summary>
    public static bool IsRetryable(Exception e) =>
        e is PostgresException { SqlState: PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.SerializationFailure };

    /// <summary>The work of one side of a transfer in one database: 2 statements, as the sample's handlers run them.</summary>
    public static async Task WorkAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, Transfer transfer, bool debit, CancellationToken cancellationToken)
    {
        await using (var insert = new NpgsqlCommand(InsertApplied, connection, transaction))
        {
            insert.Parameters.AddWithValue("TransferId", transfer.TransferId);
            insert.Parameters.AddWithValue("Kind", debit ? "debit" : "credit");
            insert.Parameters.AddWithValue("Amount", transfer.Amount);
            await insert.ExecuteNonQueryAsync(cancellationToken);
        }

        await using var update = new NpgsqlCommand(debit ? Debit : Credit, connection, transaction);
        update.Parameters.AddWithValue("Amount", transfer.Amount);
        update.Parameters.AddWithValue("AccountId", debit ? transfer.From : transfer.To);
        if (await update.ExecuteNonQueryAsync(cancellationToken) != 1)
        {
            throw new InvalidOperationException($"account {(debit ? transfer.From : transfer.To)} was not {(debit ? "debited" : "credited")}");
        }
    }

    public static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Runs <paramref name="attempt"/> again after a deadlock or serialization failure (up to 5 times).</summary>
    public static async Task<TransferResult> WithRetriesAsync(Func<Task<TransferResult>> attempt)
    {
        for (var i = 1; ; i++)
        {
            try
            {
                return await attempt();
            }
            catch (Exception e) when (IsRetryable(e) && i < 5)
            {
                // The whole transfer rolled back: run it again.
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException or TransactionException or TimeoutException)
            {
                return new TransferResult(TransferOutcome.Aborted, $"{e.GetType().Name}: {e.Message}");
            }
        }
    }
}

/// <summary>B1: one local transaction in one database (update + commit): the physical floor of a commit here.</summary>
internal sealed class LocalCommitVariant(BenchDatabases databases, int accounts) : IVariant
{
    public string Id => "B1";

    public string Description => "one local transaction in bank A (one UPDATE moving money between two accounts + COMMIT)";

    public AppliedRows Rows => AppliedRows.None;

    public IReadOnlyList<MeasuredProcess> Processes => [];

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task<TransferResult> TransferAsync(Transfer transfer, CancellationToken cancellationToken) =>
        BaselineSql.WithRetriesAsync(async () =>
        {
            // Both accounts are in bank A here: make sure they differ, or the statement would only debit.
            var to = transfer.To == transfer.From ? transfer.From % accounts + 1 : transfer.To;
            await using var connection = await databases.BankA.OpenConnectionAsync(cancellationToken);
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            await using (var command = new NpgsqlCommand(BaselineSql.LocalTransfer, connection, transaction))
            {
                command.Parameters.AddWithValue("From", transfer.From);
                command.Parameters.AddWithValue("To", to);
                command.Parameters.AddWithValue("Amount", transfer.Amount);
                if (await command.ExecuteNonQueryAsync(cancellationToken) != 2)
                {
                    throw new InvalidOperationException($"the local transfer {transfer.From} -> {to} did not update both accounts");
                }
            }

            await transaction.CommitAsync(cancellationToken);
            return TransferResult.Committed;
        });

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>B1': the transfer as two independent commits in A and B, not atomic: what users pay without atomicity.</summary>
internal sealed class IndependentCommitsVariant(BenchDatabases databases) : IVariant
{
    public string Id => "B1'";

    public string Description => "the transfer as two independent local commits, in A and in B at once (not atomic)";

    public AppliedRows Rows => AppliedRows.DebitInACreditInB;

    public IReadOnlyList<MeasuredProcess> Processes => [];

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task<TransferResult> TransferAsync(Transfer transfer, CancellationToken cancellationToken)
    {
        var results = await Task.WhenAll(
            BaselineSql.WithRetriesAsync(() => CommitOneAsync(databases.BankA, transfer, debit: true, cancellationToken)),
            BaselineSql.WithRetriesAsync(() => CommitOneAsync(databases.BankB, transfer, debit: false, cancellationToken)));
        foreach (var result in results)
        {
            if (result.Outcome != TransferOutcome.Committed)
            {
                return result with { Reason = $"not atomic: one side failed: {result.Reason}" };
            }
        }

        return TransferResult.Committed;
    }

    private static async Task<TransferResult> CommitOneAsync(NpgsqlDataSource dataSource, Transfer transfer, bool debit, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await BaselineSql.WorkAsync(connection, transaction, transfer, debit, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return TransferResult.Committed;
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>
/// B2: 2PC driven directly from one process with Npgsql: work in A and B, PREPARE both, force a
/// decision record into a journal table, COMMIT PREPARED both. The protocol's floor with no bus
/// and no service (and no recovery: a crash here would leave the branches prepared).
/// </summary>
internal sealed class DirectTwoPhaseVariant(BenchDatabases databases) : IVariant
{
    private static readonly ParticipantId A = new("bank-a");
    private static readonly ParticipantId B = new("bank-b");

    public string Id => "B2";

    public string Description => "2PC from one process with Npgsql: work, PREPARE both, forced decision row, COMMIT PREPARED both";

    public AppliedRows Rows => AppliedRows.DebitInACreditInB;

    public IReadOnlyList<MeasuredProcess> Processes => [];

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await using var connection = await databases.Journal.OpenConnectionAsync(cancellationToken);
        await BaselineSql.ExecuteAsync(connection, BaselineSql.CreateDecisionTableSql, cancellationToken);
    }

    public Task<TransferResult> TransferAsync(Transfer transfer, CancellationToken cancellationToken) =>
        BaselineSql.WithRetriesAsync(() => TransferOnceAsync(transfer, cancellationToken));

    private async Task<TransferResult> TransferOnceAsync(Transfer transfer, CancellationToken cancellationToken)
    {
        var id = TransactionId.New();
        var gidA = BranchGid.Create(BenchDatabases.DirectCoordinator, id, A);
        var gidB = BranchGid.Create(BenchDatabases.DirectCoordinator, id, B);
        await using var connectionA = await databases.BankA.OpenConnectionAsync(cancellationToken);
        await using var connectionB = await databases.BankB.OpenConnectionAsync(cancellationToken);
        var preparedA = false;
        var preparedB = false;
        try
        {
            await Task.WhenAll(
                WorkAndPrepareAsync(connectionA, transfer, debit: true, gidA, () => preparedA = true, cancellationToken),
                WorkAndPrepareAsync(connectionB, transfer, debit: false, gidB, () => preparedB = true, cancellationToken));
        }
        catch
        {
            // Nothing decided: abort whatever prepared (the open transactions roll back with their connections).
            await RollBackPreparedAsync(connectionA, gidA, preparedA);
            await RollBackPreparedAsync(connectionB, gidB, preparedB);
            throw;
        }

        try
        {
            await using var journal = await databases.Journal.OpenConnectionAsync(cancellationToken);
            await using var decision = new NpgsqlCommand(BaselineSql.InsertDecision, journal);
            decision.Parameters.AddWithValue("TransactionId", id.Value);
            decision.Parameters.AddWithValue("Participants", new[] { A.Value, B.Value });
            await decision.ExecuteNonQueryAsync(cancellationToken);
        }
        catch (Exception e) when (e is NpgsqlException)
        {
            // The decision may or may not be durable: ask the journal (presumed abort when absent).
            if (!await DecisionExistsAsync(id))
            {
                await RollBackPreparedAsync(connectionA, gidA, true);
                await RollBackPreparedAsync(connectionB, gidB, true);
                return new TransferResult(TransferOutcome.Aborted, $"the decision write failed: {e.Message}");
            }
        }

        // Decided: commit both; a failure here is retried, never turned into an abort.
        await Task.WhenAll(
            CommitPreparedAsync(connectionA, gidA, cancellationToken),
            CommitPreparedAsync(connectionB, gidB, cancellationToken));
        return TransferResult.Committed;
    }

    private static async Task WorkAndPrepareAsync(
        NpgsqlConnection connection, Transfer transfer, bool debit, BranchGid gid, Action prepared, CancellationToken cancellationToken)
    {
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await BaselineSql.WorkAsync(connection, transaction, transfer, debit, cancellationToken);
        await using var prepare = new NpgsqlCommand($"PREPARE TRANSACTION '{BranchGid.EnsureSafe(gid.Value)}'", connection, transaction);
        await prepare.ExecuteNonQueryAsync(cancellationToken);
        prepared();
    }

    private static async Task CommitPreparedAsync(NpgsqlConnection connection, BranchGid gid, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await BaselineSql.ExecuteAsync(connection, $"COMMIT PREPARED '{BranchGid.EnsureSafe(gid.Value)}'", cancellationToken);
                return;
            }
            catch (NpgsqlException) when (attempt < 5 && !cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(100 * attempt), CancellationToken.None);
            }
        }
    }

    private static async Task RollBackPreparedAsync(NpgsqlConnection connection, BranchGid gid, bool prepared)
    {
        if (prepared && connection.State == System.Data.ConnectionState.Open)
        {
            await BaselineSql.ExecuteAsync(connection, $"ROLLBACK PREPARED '{BranchGid.EnsureSafe(gid.Value)}'", CancellationToken.None);
        }
    }

    private async Task<bool> DecisionExistsAsync(TransactionId id)
    {
        await using var journal = await databases.Journal.OpenConnectionAsync(CancellationToken.None);
        await using var command = new NpgsqlCommand(BaselineSql.DecisionExists, journal);
        command.Parameters.AddWithValue("TransactionId", id.Value);
        return (bool)(await command.ExecuteScalarAsync(CancellationToken.None))!;
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>
/// B2ts: the transfer in a <see cref="TransactionScope"/> over two Npgsql connections
/// (<c>Enlist=true</c>): Npgsql prepares both in-process when the scope completes, with no
/// durable log and no recovery. What .NET offers on Linux today.
/// </summary>
internal sealed class TransactionScopeVariant(BenchEnvironment environment) : IVariant
{
    private readonly NpgsqlDataSource _bankA = NpgsqlDataSource.Create(environment.BenchDatabase(BenchEnvironment.BankA, enlist: true));
    private readonly NpgsqlDataSource _bankB = NpgsqlDataSource.Create(environment.BenchDatabase(BenchEnvironment.BankB, enlist: true));

    public string Id => "B2ts";

    public string Description => "TransactionScope over two Npgsql connections (Enlist=true): in-process 2PC, no log, no recovery";

    public AppliedRows Rows => AppliedRows.DebitInACreditInB;

    public IReadOnlyList<MeasuredProcess> Processes => [];

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task<TransferResult> TransferAsync(Transfer transfer, CancellationToken cancellationToken) =>
        BaselineSql.WithRetriesAsync(async () =>
        {
            using (var scope = new TransactionScope(
                TransactionScopeOption.Required,
                new TransactionOptions { IsolationLevel = IsolationLevel.ReadCommitted, Timeout = TimeSpan.FromSeconds(30) },
                TransactionScopeAsyncFlowOption.Enabled))
            {
                await using (var a = await _bankA.OpenConnectionAsync(cancellationToken))
                {
                    await BaselineSql.WorkAsync(a, null, transfer, debit: true, cancellationToken);
                }

                await using (var b = await _bankB.OpenConnectionAsync(cancellationToken))
                {
                    await BaselineSql.WorkAsync(b, null, transfer, debit: false, cancellationToken);
                }

                scope.Complete();
            }

            // Disposing the completed scope ran both phases (PREPARE TRANSACTION, COMMIT PREPARED) synchronously.
            return TransferResult.Committed;
        });

    public async ValueTask DisposeAsync()
    {
        await _bankA.DisposeAsync();
        await _bankB.DisposeAsync();
    }
}
