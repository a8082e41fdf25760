using System.Diagnostics;
using Dapper;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Tests.Crash.Infrastructure;

namespace TxCoord.Tests.Crash;

/// <summary>
/// Recovery at scale: 10,000 in-doubt transactions over two participants (20,000 prepared
/// branches), half decided commit in the journal and half never decided, finished by one
/// <c>txcoord-recover resolve</c> within <see cref="Bound"/> on this two-core machine, with
/// durable writes (fsync on) while it runs, and a bounded memory footprint (it streams pages of
/// 500 prepared transactions).
/// </summary>
[Category("Recovery")]
[NonParallelizable]
public sealed class RecoveryScaleTests
{
    private const int Transactions = 10_000;

    /// <summary>The stated bound for 10,000 transactions (20,000 COMMIT/ROLLBACK PREPARED plus the journal's 5,000 forced presumed aborts).</summary>
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(120);

    /// <summary>The tool's peak working set must stay below this, whatever the number in doubt.</summary>
    private const long MemoryBound = 250L * 1024 * 1024;

    [Test]
    public async Task TenThousandInDoubtTransactionsAcrossTwoParticipants_ResolvedWithinTheBoundAndInBoundedMemory()
    {
        await using var cluster = await PostgresCluster.StartAsync(new Dictionary<string, string>
        {
            ["max_prepared_transactions"] = "20100",
            ["max_connections"] = "60",
            ["max_locks_per_transaction"] = "16",
            ["shared_buffers"] = "128MB",
            // Off while the 20,000 branches are prepared (set-up only), on for the measured resolve.
            ["fsync"] = "off",
            ["synchronous_commit"] = "on",
        });
        var journal = await cluster.CreateDatabaseAsync("scale_journal");
        var banks = new[] { ("scale-a", await cluster.CreateDatabaseAsync("scale_a")), ("scale-b", await cluster.CreateDatabaseAsync("scale_b")) };
        const string coordinator = "scale";
        await CreateJournalSchemaAsync(journal, coordinator);

        var ids = Enumerable.Range(0, Transactions).Select(_ => TransactionId.New()).ToArray();
        var setup = Stopwatch.StartNew();
        foreach (var (participant, connectionString) in banks)
        {
            await PrepareBranchesAsync(connectionString, coordinator, participant, ids);
        }

        var decided = ids.Where((_, i) => i % 2 == 0).ToArray();
        await using (var connection = new NpgsqlConnection(journal))
        {
            await connection.ExecuteAsync("""
                INSERT INTO txcoord.transactions (transaction_id, coordinator_id, protocol, state, participants, created_at, decided_at)
                SELECT id, @Coordinator, 0, 'committing', ARRAY['scale-a', 'scale-b'], now(), now() FROM unnest(@Ids) AS id;
                INSERT INTO txcoord.transaction_events (transaction_id, at, kind, detail)
                SELECT id, now(), 'commit-decided', 'participants: scale-a, scale-b' FROM unnest(@Ids) AS id;
                """, new { Coordinator = coordinator, Ids = decided.Select(d => d.Value).ToArray() });
            await connection.ExecuteAsync("ALTER SYSTEM SET fsync = on; SELECT pg_reload_conf();");
        }

        await TestContext.Out.WriteLineAsync($"set-up: {2 * Transactions:N0} prepared branches, {decided.Length:N0} decided, in {setup.Elapsed.TotalSeconds:N1} s");

        string[] settings =
        [
            "--coordinator", coordinator, "--journal", journal,
            "--participant", $"scale-a={banks[0].Item2}", "--participant", $"scale-b={banks[1].Item2}",
        ];
        var clock = Stopwatch.StartNew();
        var run = await RecoverTool.RunAsync(["resolve", "--json", "--no-progress", "--parallel", "8", .. settings], timeout: TimeSpan.FromMinutes(8));
        clock.Stop();
        await TestContext.Out.WriteLineAsync($"txcoord-recover resolve: {Transactions:N0} transactions ({2 * Transactions:N0} branches) in {clock.Elapsed.TotalSeconds:N1} s (bound {Bound.TotalSeconds:N0} s)");

        Assert.That(run.ExitCode, Is.EqualTo(0), run.Error);
        var summary = run.Json().RootElement.GetProperty("summary");
        Assert.Multiple(() =>
        {
            Assert.That(summary.GetProperty("committed").GetInt32(), Is.EqualTo(2 * decided.Length));
            Assert.That(summary.GetProperty("rolledBack").GetInt32(), Is.EqualTo(2 * (Transactions - decided.Length)));
            Assert.That(summary.GetProperty("remainingInDoubt").GetInt32(), Is.EqualTo(0));
            Assert.That(run.Json().RootElement.GetProperty("peakWorkingSetBytes").GetInt64(), Is.LessThan(MemoryBound));
            Assert.That(clock.Elapsed, Is.LessThan(Bound), "the stated bound for 10,000 in-doubt transactions");
        });

        foreach (var (participant, connectionString) in banks)
        {
            await using var connection = new NpgsqlConnection(connectionString);
            Assert.That(await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"), Is.EqualTo(0), participant);
            Assert.That(await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM work"), Is.EqualTo(decided.Length), $"{participant}: exactly the decided transactions' work committed");
        }

        await using (var connection = new NpgsqlConnection(journal))
        {
            Assert.That(await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM txcoord.transactions WHERE state = 'aborted'"),
                Is.EqualTo(Transactions - decided.Length), "every presumed abort recorded in the journal");
        }
    }

    /// <summary>The coordinator service creates its journal schema at start; run it once on this journal, then kill it.</summary>
    private static async Task CreateJournalSchemaAsync(string journal, string coordinator)
    {
        var environment = new Dictionary<string, string>
        {
            ["ConnectionStrings__Journal"] = journal,
            ["ConnectionStrings__RabbitMq"] = CrashServices.RabbitMq.ToString(),
            ["TxCoord__CoordinatorId"] = coordinator,
            ["ASPNETCORE_URLS"] = "http://127.0.0.1:0",
        };
        await using var service = ChildProcess.Start("Coordinator", Repository.CoordinatorHost, environment,
            Path.Combine(TestContext.CurrentContext.WorkDirectory, "crash-logs", "scale", "Coordinator.log"));
        await service.WaitForOutputAsync("journal schema ready", TimeSpan.FromSeconds(90));
    }

    /// <summary>One prepared branch per transaction at <paramref name="participant"/>, each having inserted one row; eight connections at once.</summary>
    private static async Task PrepareBranchesAsync(string connectionString, string coordinator, string participant, IReadOnlyList<TransactionId> ids)
    {
        await using (var connection = new NpgsqlConnection(connectionString))
        {
            await connection.ExecuteAsync("CREATE TABLE work (transaction_id uuid PRIMARY KEY)");
        }

        await Parallel.ForEachAsync(
            Enumerable.Range(0, 8),
            new ParallelOptions { MaxDegreeOfParallelism = 8 },
            async (worker, _) =>
            {
                await using var connection = new NpgsqlConnection(connectionString);
                await connection.OpenAsync();
                for (var i = worker; i < ids.Count; i += 8)
                {
                    var gid = BranchGid.Create(new CoordinatorId(coordinator), ids[i], new ParticipantId(participant)).Value;
                    await using var command = new NpgsqlCommand(
                        $"BEGIN; INSERT INTO work VALUES ('{ids[i].Value}'); PREPARE TRANSACTION '{BranchGid.EnsureSafe(gid)}'", connection);
                    await command.ExecuteNonQueryAsync();
                }
            });
    }
}
