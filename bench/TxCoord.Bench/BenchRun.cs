using System.Collections.Immutable;
using System.Diagnostics;
using System.Globalization;
using Dapper;
using TxCoord.Bench.Measurement;
using TxCoord.Bench.Variants;
using TxCoord.Contracts;
using TxCoord.Samples.Bank;

namespace TxCoord.Bench;

/// <summary>
/// One benchmark run: seed the banks, run every chosen variant at every concurrency against the
/// same servers, check the ledgers after each variant, then print the tables and write the JSON.
/// </summary>
internal sealed class BenchRun(BenchArguments arguments, BenchEnvironment environment, TextWriter output)
{
    /// <summary>The order variants run in: B3, B3p and B4 share their service processes, which stop before B3e.</summary>
    private static readonly ImmutableArray<string> RunOrder = ["B1", "B1'", "B2", "B2ts", "B3", "B3p", "B4", "B3e", "B3ep"];

    private static readonly TimeSpan PhaseTwoTimeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Unmeasured transfers through freshly started TxCoord services before their first cell. Four
    /// fresh .NET processes on two cores keep JIT-compiling (tier 0, then tier 1 with PGO) for several
    /// seconds: with 2 s of warm-up the first cell (concurrency 1) measured 69 ms p50 at 95 ms of CPU
    /// per transfer, against 12.7 ms and 21 ms in a 40 s cell of the same services.
    /// </summary>
    private TimeSpan ServiceWarmUp => arguments.Quick ? TimeSpan.FromSeconds(8) : TimeSpan.FromSeconds(20);

    private const int ServiceWarmUpConcurrency = 16;

    private const string JournalRowsSql = "SELECT count(*) FILTER (WHERE state <> 'aborted')::bigint AS Commits, count(*) FILTER (WHERE state = 'aborted')::bigint AS Aborts FROM txcoord.transactions WHERE coordinator_id = @CoordinatorId";

    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var startedAt = DateTimeOffset.UtcNow;
        var clock = Stopwatch.StartNew();
        var progress = new Progress(output, interactive: !Console.IsOutputRedirected);
        await using var databases = new BenchDatabases(environment);
        using var counters = new InProcessCounters();
        var monitor = new ResourceMonitor(environment, databases, counters);
        var runner = new LoadRunner(monitor, progress, arguments.Accounts);
        var pgVersion = await ServerVersionAsync(databases, cancellationToken);

        // B2ts completes its scopes synchronously: enough threads that the pool never starves it.
        ThreadPool.GetMinThreads(out var workers, out var io);
        ThreadPool.SetMinThreads(Math.Max(workers, Enumerable.Max(arguments.Concurrency) * 2 + 16), io);

        var cells = arguments.Variants.Length * arguments.Concurrency.Length;
        await Line($"TxCoord benchmark: {string.Join(", ", arguments.Variants)} at concurrency {string.Join(", ", arguments.Concurrency)}; " +
            $"{arguments.Warmup.TotalSeconds:0.#} s warm-up + {arguments.Duration.TotalSeconds:0.#} s measured per cell ({cells} cells)");
        await Line($"  {Environment.ProcessorCount} cores, PostgreSQL {pgVersion} ({environment.PostgreSql}), RabbitMQ {environment.RabbitMq.Host}:{environment.RabbitMq.Port}; " +
            $"logs of the services in {environment.LogDirectory}");
        if (!monitor.SeesServers)
        {
            await Line($"  note: the PostgreSQL or RabbitMQ process was not found under {environment.RunDirectory}: their CPU reads 0");
        }

        await Line($"seeding {BenchEnvironment.BankA} and {BenchEnvironment.BankB} with {arguments.Accounts:N0} accounts each ...");
        await databases.SeedAsync(arguments.Accounts, cancellationToken);

        var reports = new Dictionary<string, VariantReport>(StringComparer.Ordinal);
        AbortPathReport? abortPath = null;
        BusCluster? cluster = null;
        var cellNumber = 0;
        try
        {
            foreach (var id in RunOrder.Where(arguments.Variants.Contains))
            {
                if (id is "B3e" or "B3ep" && cluster is not null)
                {
                    await cluster.DisposeAsync(); // the services of B3/B4 must not share the CPU with B3e
                    cluster = null;
                }

                if (id is "B3" or "B3p" or "B4")
                {
                    cluster ??= new BusCluster(environment, counters);
                }

                await using var variant = Create(id, databases, cluster, counters);
                var (report, aborts) = await RunVariantAsync(variant, cluster, runner, databases, progress, () => ++cellNumber, cells, cancellationToken);
                reports[id] = report;
                abortPath ??= aborts;
                databases.ClearPools();
            }
        }
        finally
        {
            if (cluster is not null)
            {
                await cluster.DisposeAsync();
            }
        }

        FootprintResult? footprint = null;
        if (arguments.Variants.Any(v => v is "B3" or "B3e"))
        {
            var n = arguments.Quick ? 1_000 : 10_000;
            await Line($"measuring the coordinator's memory per in-flight transaction ({n:N0} transactions held in memory) ...");
            footprint = await StateFootprint.MeasureAsync(environment.Database(BenchEnvironment.Journal), n, cancellationToken);
        }

        var result = new BenchReport
        {
            StartedAt = startedAt,
            Seconds = clock.Elapsed.TotalSeconds,
            Machine = $"{Environment.ProcessorCount} cores, {Environment.OSVersion}, .NET {Environment.Version}",
            PostgreSqlVersion = pgVersion,
            Quick = arguments.Quick,
            WarmupSeconds = arguments.Warmup.TotalSeconds,
            MeasuredSecondsPerCell = arguments.Duration.TotalSeconds,
            Accounts = arguments.Accounts,
            Concurrency = arguments.Concurrency,
            Variants = [.. BenchArguments.AllVariants.Where(reports.ContainsKey).Select(v => reports[v])],
            AbortPath = abortPath,
            Footprint = footprint,
        };
        result = result with { Targets = Report.EvaluateTargets(result, Enumerable.Max(arguments.Concurrency), Enumerable.Min(arguments.Concurrency)) };

        await output.WriteLineAsync();
        await Line($"TxCoord benchmark, {startedAt:yyyy-MM-dd HH:mm} UTC, {result.Machine}; {arguments.Warmup.TotalSeconds:0.#} s + {arguments.Duration.TotalSeconds:0.#} s per cell; ratios are of throughput at the same concurrency");
        await output.WriteAsync(Report.Table(result));
        await output.WriteLineAsync();
        await output.WriteAsync(Report.CostTable(result));
        await output.WriteLineAsync();
        await Line($"targets (PERFORMANCE.md), this run:");
        await output.WriteAsync(Report.Targets(result));
        foreach (var variant in result.Variants)
        {
            if (variant.Checks is { } checks)
            {
                await Line($"  {variant.Id,-5} checks: {checks}");
            }

            foreach (var failure in variant.CheckFailures)
            {
                await Line($"  {variant.Id,-5} CHECK FAILED: {failure}");
            }
        }

        var path = await WriteJsonAsync(result, startedAt, cancellationToken);
        await Line($"JSON: {path}");
        await Line($"benchmark {(result.Passed ? "passed its checks" : "FAILED its checks")} in {clock.Elapsed.TotalSeconds:0} s");
        return result.Passed ? 0 : 1;
    }

    private IVariant Create(string id, BenchDatabases databases, BusCluster? cluster, InProcessCounters counters) => id switch
    {
        "B1" => new LocalCommitVariant(databases, arguments.Accounts),
        "B1'" => new IndependentCommitsVariant(databases),
        "B2" => new DirectTwoPhaseVariant(databases),
        "B2ts" => new TransactionScopeVariant(environment),
        "B3" => new BusVariant(cluster!, CommitProtocol.TwoPhase),
        "B4" => new BusVariant(cluster!, CommitProtocol.ThreePhase),
        "B3e" => new EmbeddedVariant(environment, counters),
        "B3p" => new BusVariant(cluster!, CommitProtocol.TwoPhase, earlyPrepare: true),
        "B3ep" => new EmbeddedVariant(environment, counters, earlyPrepare: true),
        _ => throw new ArgumentOutOfRangeException(nameof(id), id, "unknown variant"),
    };

    private async Task<(VariantReport Report, AbortPathReport? AbortPath)> RunVariantAsync(
        IVariant variant, BusCluster? cluster, LoadRunner runner, BenchDatabases databases, Progress progress, Func<int> nextCell, int cells,
        CancellationToken cancellationToken)
    {
        var report = new VariantReport { Id = variant.Id, Description = variant.Description };
        await Line($"{variant.Id}: {variant.Description}");
        try
        {
            await variant.StartAsync(cancellationToken);
        }
        catch (VariantUnavailableException e)
        {
            await Line($"  {variant.Id}: n/a ({e.Message})");
            return (report with { NotRun = $"n/a ({e.Message})" }, null);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            await Line($"  {variant.Id}: FAILED to start: {e.Message}");
            return (report with { NotRun = $"FAILED to start: {e.Message}", CheckFailures = [$"did not start: {e.Message}"] }, null);
        }

        if (variant.Processes.Count > 0 || variant is EmbeddedVariant)
        {
            // TxCoord's services have just started (or, for B4, run new code paths): warm them up.
            await runner.WarmUpAsync(variant, ServiceWarmUpConcurrency, ServiceWarmUp, $"        {variant.Id,-4}", cancellationToken);
        }

        // Starting ran transfers (readiness probes, B4's probe) whose phase 2 may still be under way:
        // the ledger checks start once nothing is prepared.
        await WaitForPhaseTwoAsync(databases, cancellationToken);
        var before = await databases.SnapshotAsync(cancellationToken);
        var results = ImmutableArray.CreateBuilder<CellResult>();
        foreach (var concurrency in arguments.Concurrency)
        {
            var label = string.Create(Invariant, $"[{nextCell(),2}/{cells}] {variant.Id,-4}");
            var cell = await runner.RunAsync(variant, concurrency, arguments.Warmup, arguments.Duration, cluster?.CoordinatorProcessId, label, cancellationToken);
            results.Add(cell);
            await Line($"  {label} c={concurrency,-3} {cell.Throughput,8:N0} tx/s  p50 {cell.P50Ms,7:0.00} ms  p99 {cell.P99Ms,7:0.00} ms  errors {cell.Errors}" +
                (cell.ErrorSamples.IsEmpty ? "" : $"  (e.g. {cell.ErrorSamples[0]})"));
            cluster?.EnsureAlive();
        }

        report = report with { Cells = results.ToImmutable() };
        var committed = report.Cells.Sum(c => c.CommittedOverall);
        var inDoubt = report.Cells.Sum(c => c.InDoubtOverall);
        report = await CheckLedgerAsync(report, variant.Rows, before, committed, inDoubt, databases, progress, cancellationToken);

        AbortPathReport? abortPath = null;
        if (variant.Id == "B3" && cluster is not null && report.CheckFailures.IsEmpty)
        {
            abortPath = await MeasureAbortPathAsync(cluster, databases, report.Cells[^1], cancellationToken);
        }

        return (report, abortPath);
    }

    /// <summary>After a variant: the total unchanged, nothing left prepared, every committed transfer's rows in both banks.</summary>
    private async Task<VariantReport> CheckLedgerAsync(
        VariantReport report, AppliedRows rows, LedgerSnapshot before, long committed, long inDoubt, BenchDatabases databases, Progress progress,
        CancellationToken cancellationToken)
    {
        // TxCoord finishes phase 2 after it answered the initiator: give it the time to.
        var left = await WaitForPhaseTwoAsync(databases, cancellationToken);
        progress.Clear();
        var after = await databases.SnapshotAsync(cancellationToken);
        var failures = new List<string>();
        if (after.Total != before.Total)
        {
            failures.Add(string.Create(Invariant, $"the total balance changed by {after.Total - before.Total:+#,0;-#,0} ({before.Total:N0} -> {after.Total:N0})"));
        }

        if (left.Sum() > 0)
        {
            var rolledBack = await databases.RollBackLeftoversAsync(cancellationToken);
            failures.Add($"{left[0]} prepared transaction(s) left in {BenchEnvironment.BankA} and {left[1]} in {BenchEnvironment.BankB} after {PhaseTwoTimeout.TotalSeconds:0} s ({rolledBack} rolled back so the next variant starts clean)");
        }

        long debitsA = after.DebitsA - before.DebitsA, creditsA = after.CreditsA - before.CreditsA;
        long debitsB = after.DebitsB - before.DebitsB, creditsB = after.CreditsB - before.CreditsB;
        string checks;
        if (rows == AppliedRows.None)
        {
            if (debitsA + creditsA + debitsB + creditsB != 0)
            {
                failures.Add($"applied rows appeared ({debitsA}/{creditsA}/{debitsB}/{creditsB}) though this variant writes none");
            }

            checks = string.Create(Invariant, $"{committed:N0} committed; total {after.Total:N0} unchanged: {after.Total == before.Total}; prepared left {left.Sum()}");
        }
        else
        {
            if (creditsA != 0 || debitsB != 0)
            {
                failures.Add($"rows in the wrong bank: {creditsA} credits in A, {debitsB} debits in B");
            }

            if (debitsA != creditsB)
            {
                failures.Add($"not atomic: {debitsA:N0} debits applied in A but {creditsB:N0} credits in B");
            }

            if (debitsA < committed || debitsA > committed + inDoubt)
            {
                failures.Add($"{committed:N0} transfers reported committed ({inDoubt:N0} in doubt) but {debitsA:N0} debits applied");
            }

            checks = string.Create(Invariant,
                $"{committed:N0} committed ({inDoubt} in doubt); debits in A {debitsA:N0}, credits in B {creditsB:N0}; total unchanged: {after.Total == before.Total}; prepared left {left.Sum()}");
        }

        foreach (var failure in failures)
        {
            await Line($"  {report.Id} CHECK FAILED: {failure}");
        }

        return report with { CheckFailures = [.. failures], Checks = checks };
    }

    /// <summary>Waits until nothing is prepared in either bank (up to <see cref="PhaseTwoTimeout"/>); returns what is left per bank.</summary>
    private async Task<IReadOnlyList<int>> WaitForPhaseTwoAsync(BenchDatabases databases, CancellationToken cancellationToken) =>
        await BankLedger.WaitForNoPreparedAsync(
            [new BankDatabase(BenchEnvironment.BankA, databases.BankA), new BankDatabase(BenchEnvironment.BankB, databases.BankB)],
            PhaseTwoTimeout, output, cancellationToken: cancellationToken);

    /// <summary>
    /// B3's abort path: transfers larger than any balance, refused by bank A, so the initiator rolls
    /// back and the coordinator aborts. Presumed abort: no commit decision is forced for them.
    /// </summary>
    private async Task<AbortPathReport> MeasureAbortPathAsync(BusCluster cluster, BenchDatabases databases, CellResult committedCell, CancellationToken cancellationToken)
    {
        var transfers = arguments.Quick ? 50 : 400;
        const int Concurrency = 16;
        await Line($"  B3 abort path: {transfers} transfers refused by bank A ({Concurrency} at a time) ...");
        var rowsBefore = await JournalRowsAsync(databases, cancellationToken);
        var pgBefore = await PostgresCounters.ReadAsync(databases.Server, cancellationToken);
        var aborted = 0;
        await Parallel.ForEachAsync(Enumerable.Range(0, transfers), new ParallelOptions { MaxDegreeOfParallelism = Concurrency, CancellationToken = cancellationToken }, async (_, token) =>
        {
            var transfer = new Transfer(Guid.CreateVersion7(), Random.Shared.Next(1, arguments.Accounts + 1), Random.Shared.Next(1, arguments.Accounts + 1), BenchDatabases.InitialBalance * 1000);
            if ((await TxCoordTransfer.RunAsync(cluster.Initiator, CommitProtocol.TwoPhase, transfer, token)).Outcome == TransferOutcome.Aborted)
            {
                Interlocked.Increment(ref aborted);
            }
        });

        // The unforced abort rows and the statistics reach PostgreSQL's counters within about a second.
        await Task.Delay(TimeSpan.FromSeconds(1.5), cancellationToken);
        var pg = (await PostgresCounters.ReadAsync(databases.Server, cancellationToken)).Since(pgBefore);
        var rowsAfter = await JournalRowsAsync(databases, cancellationToken);
        var report = new AbortPathReport(
            transfers,
            aborted,
            (double)pg.Commits.GetValueOrDefault(BenchEnvironment.Journal) / transfers,
            (double)pg.WalSyncs / transfers,
            committedCell.Resources.WalSyncsPerTransfer,
            rowsAfter.Commits - rowsBefore.Commits,
            rowsAfter.Aborts - rowsBefore.Aborts);
        await Line($"  B3 abort path: {aborted}/{transfers} aborted; commit decisions written {report.CommitDecisionRows}, abort rows {report.AbortRows}; " +
            $"WAL flushes {report.WalSyncsPerAbort:0.00} per abort (committed transfers: {report.WalSyncsPerCommitAtSameConcurrency:0.00})");
        return report;
    }

    private static async Task<(long Commits, long Aborts)> JournalRowsAsync(BenchDatabases databases, CancellationToken cancellationToken)
    {
        await using var connection = await databases.Journal.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleAsync<(long Commits, long Aborts)>(
            new CommandDefinition(JournalRowsSql, new { CoordinatorId = BusCluster.CoordinatorId }, cancellationToken: cancellationToken));
    }

    private static async Task<string> ServerVersionAsync(BenchDatabases databases, CancellationToken cancellationToken)
    {
        await using var connection = await databases.Server.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<string>(new CommandDefinition("SHOW server_version", cancellationToken: cancellationToken)) ?? "?";
    }

    private async Task<string> WriteJsonAsync(BenchReport report, DateTimeOffset startedAt, CancellationToken cancellationToken)
    {
        var path = arguments.Out ?? Path.Combine(environment.RepositoryRoot, "bench", "results", $"bench-{startedAt:yyyyMMdd-HHmmss}.json");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        await File.WriteAllTextAsync(path, Report.ToJson(report), cancellationToken);
        return path;
    }

    private Task Line(string text) => output.WriteLineAsync(text);
}
