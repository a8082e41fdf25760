using Dapper;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Participants;
using TxCoord.Samples.Bank;
using TxCoord.Tests.Crash.Infrastructure;

namespace TxCoord.Tests.Crash;

/// <summary>
/// The comparison RELIABILITY.md asks for, side by side: TransactionScope over two Npgsql
/// connections, killed with kill -9 under load, leaves prepared transactions in both databases
/// whose GIDs cannot be matched, holding their locks; the same kill against TxCoord (its
/// coordinator and a participant) leaves nothing prepared once recovery has run, and every
/// transfer atomic.
/// </summary>
[Category("Crash")]
[Parallelizable(ParallelScope.Children)]
public sealed class ComparisonTests
{
    // Retried: this shows the baseline's failure mode, and the baseline does not always die with
    // both databases prepared in six lives on a loaded machine (its prepare phase is not ours to
    // order); a failed attempt says nothing about TxCoord. Three attempts that all miss still fail.
    [Test]
    [Retry(3)]
    public async Task TransactionScopeKilledUnderLoad_LeavesUnmatchedPreparedTransactionsHoldingLocksInBothDatabases()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var bankA = await CrashServices.CreateDatabaseAsync(CrashServices.PostgreSql, $"scope_{suffix}_a");
        var bankB = await CrashServices.CreateDatabaseAsync(CrashServices.PostgreSql, $"scope_{suffix}_b");
        await using var a = NpgsqlDataSource.Create(bankA);
        await using var b = NpgsqlDataSource.Create(bankB);
        await BankSchema.SeedAsync(a, 100, 1_000);
        await BankSchema.SeedAsync(b, 100, 1_000);
        var program = Repository.Program("Tests/TxCoord.Tests.Crash.TransactionScopeBank", "TxCoord.Tests.Crash.TransactionScopeBank");
        var logs = Path.Combine(TestContext.CurrentContext.WorkDirectory, "crash-logs", $"scope-{suffix}", "scope.log");
        try
        {
            // kill -9 under load, as in RELIABILITY.md (up to three kills, until both databases
            // hold leftovers); if no kill happened to land inside a commit in both, up to three more
            // lives that kill themselves there. (One is not always enough: the process's own
            // enlistment is not always prepared after both databases; seen once in CI, it died
            // with only A prepared.)
            const int KillsUnderLoad = 3;
            for (var kill = 1; kill <= KillsUnderLoad + 3; kill++)
            {
                var environment = new Dictionary<string, string> { ["SCOPE_BANK_A"] = bankA, ["SCOPE_BANK_B"] = bankB };
                if (kill > KillsUnderLoad)
                {
                    // At once: rows locked by earlier lives' leftovers can stall a longer run for good.
                    environment["SCOPE_DIE_IN_COMMIT"] = "0";
                }

                await using var victim = ChildProcess.Start($"TransactionScope#{kill}", program, environment, logs);
                if (kill <= KillsUnderLoad)
                {
                    // Under load; a later life may hardly get going: the earlier kill left rows locked.
                    await victim.WaitUntilAsync(v => v.CountOccurrences("committed") >= 2, TimeSpan.FromSeconds(20));
                    await victim.KillAsync();
                }
                else
                {
                    // It kills itself inside a commit; if leftover locks stall every worker first, kill it here.
                    if (!await victim.WaitUntilAsync(v => v.HasExited, TimeSpan.FromSeconds(60)))
                    {
                        await victim.KillAsync();
                    }
                }

                if ((await BankSystem.PreparedGidsAsync(a)).Count > 0 && (await BankSystem.PreparedGidsAsync(b)).Count > 0)
                {
                    break;
                }
            }

            var leftInA = await BankSystem.PreparedGidsAsync(a);
            var leftInB = await BankSystem.PreparedGidsAsync(b);
            await TestContext.Out.WriteLineAsync($"TransactionScope after kill -9: {leftInA.Count} prepared in A ({string.Join(", ", leftInA.Take(3))}...), {leftInB.Count} in B");
            Assert.Multiple(() =>
            {
                Assert.That(leftInA, Is.Not.Empty, "prepared transactions left in database A");
                Assert.That(leftInB, Is.Not.Empty, "prepared transactions left in database B");
                Assert.That(leftInA.Intersect(leftInB), Is.Empty, "no GID names the same transaction in both databases: nobody can match them");
                Assert.That(leftInA.Concat(leftInB).Where(g => BranchGid.TryParse(g, out _)), Is.Empty, "nothing in the GIDs says which coordinator decided what");
            });

            await using var connection = await a.OpenConnectionAsync();
            var locks = await connection.ExecuteScalarAsync<long>(
                "SELECT count(*) FROM pg_locks l JOIN pg_prepared_xacts p ON l.locktype = 'transactionid' AND l.transactionid = p.transaction WHERE p.database = current_database()");
            Assert.That(locks, Is.GreaterThan(0), "they hold their locks until someone guesses");
        }
        finally
        {
            foreach (var source in new[] { a, b })
            {
                await using var connection = await source.OpenConnectionAsync();
                foreach (var gid in await BankSystem.PreparedGidsAsync(source))
                {
                    await using var rollback = new NpgsqlCommand($"ROLLBACK PREPARED '{gid.Replace("'", "''", StringComparison.Ordinal)}'", connection);
                    await rollback.ExecuteNonQueryAsync();
                }
            }
        }
    }

    [Test]
    public async Task TxCoordKilledUnderLoad_LeavesNothingPreparedOnceRecoveryHasRunAndEveryTransferIsAtomic()
    {
        await using var system = await BankSystem.CreateAsync();
        await system.StartAllAsync();
        var traffic = system.RunTransfersAsync(40, 8);

        // The same kill: kill -9 of the coordinator and of a participant in the middle of the load.
        await Eventually.WaitForAsync(async () =>
        {
            await using var journal = new NpgsqlConnection(system.JournalConnectionString);
            return await journal.ExecuteScalarAsync<long>("SELECT count(*) FROM txcoord.transactions");
        }, n => n >= 8, TimeSpan.FromSeconds(90), "some transfers decided", system.Diagnostics);
        await system.Process(Role.Coordinator).KillAsync();
        await system.Process(Role.BankA).KillAsync();
        var leftBehind = await system.CountPreparedAsync();

        await system.StartAsync(Role.BankA);
        await system.StartAsync(Role.Coordinator);
        var result = await traffic;
        var settled = await system.AssertConvergedAsync(result.Transfers);
        await TestContext.Out.WriteLineAsync(
            $"TxCoord after kill -9 of coordinator and bank A: {leftBehind} prepared right after the kill, 0 after recovery; " +
            $"{settled.Count(t => t.Outcome == CommitOutcome.Committed)} committed, {settled.Count(t => t.Outcome == CommitOutcome.Aborted)} aborted, all atomic");
        Assert.That(await system.CountPreparedAsync(), Is.EqualTo(0));
    }
}
