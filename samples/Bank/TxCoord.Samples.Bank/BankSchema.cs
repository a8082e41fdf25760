using Dapper;
using Npgsql;

namespace TxCoord.Samples.Bank;

/// <summary>
/// The bank's tables: <c>accounts</c> (a balance that can never go negative) and
/// <c>applied_transfers</c> (one row per transfer and kind, written in the same branch as the
/// balance change, so it is visible exactly when that change committed).
/// Failure semantics: each method is one transaction; a failure leaves the database as it was.
/// </summary>
public static class BankSchema
{
    /// <summary>How long seeding waits for a table lock before it gives up with an explanation.</summary>
    public static readonly TimeSpan SeedLockTimeout = TimeSpan.FromSeconds(10);

    // The advisory lock serializes concurrent creation (two services starting at once), which
    // CREATE TABLE IF NOT EXISTS alone does not. The key is the bank sample's own.
    private const string CreateSql = """
        SELECT pg_advisory_xact_lock(7411101);
        CREATE TABLE IF NOT EXISTS accounts (
            id      int PRIMARY KEY,
            balance bigint NOT NULL CHECK (balance >= 0)
        );
        CREATE TABLE IF NOT EXISTS applied_transfers (
            transfer_id uuid NOT NULL,
            kind        text NOT NULL CHECK (kind IN ('debit', 'credit')),
            amount      bigint NOT NULL,
            PRIMARY KEY (transfer_id, kind)
        );
        """;

    private const string LockTimeoutSql = "SELECT set_config('lock_timeout', @LockTimeout, true)";

    private const string TruncateSql = "TRUNCATE accounts, applied_transfers";

    private const string InsertAccountsSql = """
        INSERT INTO accounts (id, balance)
        SELECT g, @InitialBalance FROM generate_series(1, @Accounts) AS g
        """;

    /// <summary>Creates the tables if they are missing. Safe to run concurrently and repeatedly; never touches data.</summary>
    public static async Task EnsureCreatedAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(CreateSql, transaction: transaction, cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>
    /// Starts the bank afresh: creates the tables if needed, empties them and inserts accounts
    /// 1..<paramref name="accounts"/> with <paramref name="initialBalance"/> each. Refuses, with a
    /// message that says why, while prepared transactions remain in the database (they hold locks
    /// on these tables and would make the result meaningless).
    /// </summary>
    public static async Task SeedAsync(NpgsqlDataSource dataSource, int accounts, long initialBalance, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentOutOfRangeException.ThrowIfLessThan(accounts, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(initialBalance);

        await EnsureCreatedAsync(dataSource, cancellationToken);
        var prepared = await BankLedger.CountPreparedAsync(dataSource, cancellationToken);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        if (prepared > 0)
        {
            throw new InvalidOperationException(
                $"Cannot seed database '{connection.Database}': {prepared} prepared transaction(s) are still in it. " +
                "Let the coordinator finish them (or resolve them with the recovery tool) first.");
        }

        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        try
        {
            await connection.ExecuteAsync(new CommandDefinition(
                LockTimeoutSql, new { LockTimeout = $"{(long)SeedLockTimeout.TotalMilliseconds}ms" }, transaction, cancellationToken: cancellationToken));
            await connection.ExecuteAsync(new CommandDefinition(TruncateSql, transaction: transaction, cancellationToken: cancellationToken));
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            throw new InvalidOperationException(
                $"Cannot seed database '{connection.Database}': the bank tables stayed locked for {SeedLockTimeout.TotalSeconds:0} s " +
                "(a transfer still running, or a transaction prepared meanwhile).", e);
        }

        await connection.ExecuteAsync(new CommandDefinition(
            InsertAccountsSql, new { Accounts = accounts, InitialBalance = initialBalance }, transaction, cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);
    }
}
