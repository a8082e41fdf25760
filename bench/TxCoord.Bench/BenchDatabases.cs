using Dapper;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Samples.Bank;

namespace TxCoord.Bench;

/// <summary>The two bank databases and the journal database, as every variant shares them.</summary>
internal sealed class BenchDatabases : IAsyncDisposable
{
    /// <summary>Every account starts with this much: far more than the transfers of any run take out, so none is refused.</summary>
    public const long InitialBalance = 1_000_000_000;

    /// <summary>The bench's own prepared transactions (B2) carry this coordinator id in their GID.</summary>
    public static readonly CoordinatorId DirectCoordinator = new("bench-b2");

    // One statement, so balances and rows of one bank are read in one snapshot.
    private const string LedgerSql = """
        SELECT (SELECT coalesce(sum(balance), 0)::bigint FROM accounts) AS Total,
               count(*) FILTER (WHERE kind = 'debit')::bigint AS Debits,
               count(*) FILTER (WHERE kind = 'credit')::bigint AS Credits,
               (SELECT count(*)::int FROM pg_prepared_xacts WHERE database = current_database()) AS Prepared
        FROM applied_transfers
        """;

    private const string PreparedSql = "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()";

    public BenchDatabases(BenchEnvironment environment)
    {
        BankA = NpgsqlDataSource.Create(environment.BenchDatabase(BenchEnvironment.BankA));
        BankB = NpgsqlDataSource.Create(environment.BenchDatabase(BenchEnvironment.BankB));
        Journal = NpgsqlDataSource.Create(environment.BenchDatabase(BenchEnvironment.Journal));
        Server = NpgsqlDataSource.Create(environment.BenchDatabase("postgres", maxPoolSize: 4));
    }

    public NpgsqlDataSource BankA { get; }

    public NpgsqlDataSource BankB { get; }

    public NpgsqlDataSource Journal { get; }

    /// <summary>The maintenance database, for server-wide statistics.</summary>
    public NpgsqlDataSource Server { get; }

    public async Task SeedAsync(int accounts, CancellationToken cancellationToken)
    {
        await BankSchema.SeedAsync(BankA, accounts, InitialBalance, cancellationToken);
        await BankSchema.SeedAsync(BankB, accounts, InitialBalance, cancellationToken);
        foreach (var dataSource in new[] { BankA, BankB })
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            await connection.ExecuteAsync(new CommandDefinition("VACUUM ANALYZE accounts", cancellationToken: cancellationToken));
        }
    }

    /// <summary>
    /// Balances, applied rows and prepared transactions of both banks, each bank in one snapshot.
    /// Call it when no transfer is in flight and nothing is prepared, or a transfer may be half in it.
    /// </summary>
    public async Task<LedgerSnapshot> SnapshotAsync(CancellationToken cancellationToken)
    {
        var a = await LedgerAsync(BankA, cancellationToken);
        var b = await LedgerAsync(BankB, cancellationToken);
        return new LedgerSnapshot(a.Total, b.Total, a.Debits, a.Credits, b.Debits, b.Credits, a.Prepared, b.Prepared);
    }

    /// <summary>
    /// Rolls back what a failed variant left prepared, so that the next variant starts clean (the
    /// failure is reported all the same). Only GIDs that pass <see cref="BranchGid.IsSafe"/> reach SQL.
    /// </summary>
    public async Task<int> RollBackLeftoversAsync(CancellationToken cancellationToken)
    {
        var count = 0;
        foreach (var dataSource in new[] { BankA, BankB })
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            foreach (var gid in await connection.QueryAsync<string>(new CommandDefinition(PreparedSql, cancellationToken: cancellationToken)))
            {
                // TransactionScope's GIDs (<guid>_<xid>/...) are not TxCoord's but pass the same allow-list check only if safe.
                if (BranchGid.IsSafe(gid))
                {
                    await connection.ExecuteAsync(new CommandDefinition($"ROLLBACK PREPARED '{gid}'", cancellationToken: cancellationToken));
                    count++;
                }
            }
        }

        return count;
    }

    /// <summary>Closes the idle pooled connections, so that one variant's pools never crowd the next one out of max_connections.</summary>
    public void ClearPools()
    {
        foreach (var dataSource in new[] { BankA, BankB, Journal })
        {
            dataSource.Clear();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await BankA.DisposeAsync();
        await BankB.DisposeAsync();
        await Journal.DisposeAsync();
        await Server.DisposeAsync();
    }

    private static async Task<(long Total, long Debits, long Credits, int Prepared)> LedgerAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleAsync<(long Total, long Debits, long Credits, int Prepared)>(new CommandDefinition(LedgerSql, cancellationToken: cancellationToken));
    }
}

/// <summary>What the two banks hold at one moment.</summary>
internal sealed record LedgerSnapshot(
    long TotalA, long TotalB, long DebitsA, long CreditsA, long DebitsB, long CreditsB, int PreparedA, int PreparedB)
{
    public long Total => TotalA + TotalB;

    public int Prepared => PreparedA + PreparedB;
}
