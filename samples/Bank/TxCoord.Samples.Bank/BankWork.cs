using Dapper;
using TxCoord.Participants;

namespace TxCoord.Samples.Bank;

/// <summary>
/// The bank participant's work handlers. Each writes through the branch's connection and
/// transaction only, so its effect commits or rolls back with the global transaction.
/// A transfer's row in <c>applied_transfers</c> is inserted first: a duplicate of a work message
/// (same transfer, same kind) finds it and changes nothing, so each transfer is applied at most once.
/// </summary>
internal static class BankWork
{
    private const string InsertAppliedSql = """
        INSERT INTO applied_transfers (transfer_id, kind, amount) VALUES (@TransferId, @Kind, @Amount)
        ON CONFLICT (transfer_id, kind) DO NOTHING
        """;

    private const string DebitSql = "UPDATE accounts SET balance = balance - @Amount WHERE id = @AccountId AND balance >= @Amount";

    private const string CreditSql = "UPDATE accounts SET balance = balance + @Amount WHERE id = @AccountId";

    private const string AccountExistsSql = "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = @AccountId)";

    // Catalog lookups only: the probe takes no lock on the bank's tables.
    private const string SchemaExistsSql = "SELECT to_regclass('accounts') IS NOT NULL AND to_regclass('applied_transfers') IS NOT NULL";

    public static async Task<WorkResult> DebitAsync(IBranchContext branch, DebitAccount message, CancellationToken cancellationToken)
    {
        if (message.Amount <= 0)
        {
            return WorkResult.Refuse($"invalid amount {message.Amount}: a debit must be positive");
        }

        if (!await RecordAppliedAsync(branch, message.TransferId, "debit", message.Amount, cancellationToken))
        {
            return WorkResult.Success;
        }

        var updated = await branch.Connection.ExecuteAsync(new CommandDefinition(
            DebitSql, new { message.AccountId, message.Amount }, branch.Transaction, cancellationToken: cancellationToken));
        if (updated == 1)
        {
            return WorkResult.Success;
        }

        return await AccountExistsAsync(branch, message.AccountId, cancellationToken)
            ? WorkResult.Refuse($"insufficient funds in account {message.AccountId}")
            : WorkResult.Refuse($"no such account {message.AccountId}");
    }

    public static async Task<WorkResult> CreditAsync(IBranchContext branch, CreditAccount message, CancellationToken cancellationToken)
    {
        if (message.Amount <= 0)
        {
            return WorkResult.Refuse($"invalid amount {message.Amount}: a credit must be positive");
        }

        if (!await RecordAppliedAsync(branch, message.TransferId, "credit", message.Amount, cancellationToken))
        {
            return WorkResult.Success;
        }

        var updated = await branch.Connection.ExecuteAsync(new CommandDefinition(
            CreditSql, new { message.AccountId, message.Amount }, branch.Transaction, cancellationToken: cancellationToken));
        return updated == 1 ? WorkResult.Success : WorkResult.Refuse($"no such account {message.AccountId}");
    }

    public static async Task<WorkResult> ProbeAsync(IBranchContext branch, ProbeAccounts message, CancellationToken cancellationToken)
    {
        var ready = await branch.Connection.ExecuteScalarAsync<bool>(new CommandDefinition(
            SchemaExistsSql, transaction: branch.Transaction, cancellationToken: cancellationToken));
        return ready ? WorkResult.Success : WorkResult.Refuse($"the bank schema is missing in database '{branch.Connection.Database}'");
    }

    /// <summary>False when this transfer's row of this kind exists already (a duplicate message): nothing more to do.</summary>
    private static async Task<bool> RecordAppliedAsync(IBranchContext branch, Guid transferId, string kind, long amount, CancellationToken cancellationToken)
    {
        var inserted = await branch.Connection.ExecuteAsync(new CommandDefinition(
            InsertAppliedSql, new { TransferId = transferId, Kind = kind, Amount = amount }, branch.Transaction, cancellationToken: cancellationToken));
        return inserted == 1;
    }

    private static Task<bool> AccountExistsAsync(IBranchContext branch, int accountId, CancellationToken cancellationToken) =>
        branch.Connection.ExecuteScalarAsync<bool>(new CommandDefinition(
            AccountExistsSql, new { AccountId = accountId }, branch.Transaction, cancellationToken: cancellationToken));
}
