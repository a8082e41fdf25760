using System.Collections.Immutable;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using TxCoord.Bench.Measurement;

namespace TxCoord.Bench;

/// <summary>What became of one variant: its cells, or why it did not run, and the checks after it.</summary>
internal sealed record VariantReport
{
    public required string Id { get; init; }
    public required string Description { get; init; }

    /// <summary>Null when it ran; otherwise why not ("n/a (3PC not available)", or a failure).</summary>
    public string? NotRun { get; init; }

    public ImmutableArray<CellResult> Cells { get; init; } = [];

    /// <summary>Failed checks (balance changed, prepared left, rows not atomic): any fails the run.</summary>
    public ImmutableArray<string> CheckFailures { get; init; } = [];

    /// <summary>What the checks found, for the record.</summary>
    public string? Checks { get; init; }
}

/// <summary>The abort path of B3: transfers refused by bank A, so the coordinator aborts them.</summary>
internal sealed record AbortPathReport(
    int Transfers, int Aborted, double JournalCommitsPerAbort, double WalSyncsPerAbort, double WalSyncsPerCommitAtSameConcurrency,
    long CommitDecisionRows, long AbortRows);

/// <summary>One target of PERFORMANCE.md, as measured in this run.</summary>
internal sealed record TargetReport(string Figure, string Target, double? Value, bool? Met, string Note);

/// <summary>The whole run, as written to the JSON file.</summary>
internal sealed record BenchReport
{
    public required DateTimeOffset StartedAt { get; init; }
    public required double Seconds { get; init; }
    public required string Machine { get; init; }
    public required string PostgreSqlVersion { get; init; }
    public required bool Quick { get; init; }
    public required double WarmupSeconds { get; init; }
    public required double MeasuredSecondsPerCell { get; init; }
    public required int Accounts { get; init; }
    public required ImmutableArray<int> Concurrency { get; init; }
    public required ImmutableArray<VariantReport> Variants { get; init; }
    public AbortPathReport? AbortPath { get; init; }
    public FootprintResult? Footprint { get; init; }
    public ImmutableArray<TargetReport> Targets { get; init; } = [];
    public bool Passed => Variants.All(v => v.CheckFailures.IsEmpty);
}

/// <summary>Prints the tables and writes the JSON.</summary>
internal static class Report
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter() },
    };

    public static string ToJson(BenchReport report) => JsonSerializer.Serialize(report, Json);

    public static CellResult? Cell(this BenchReport report, string variant, int concurrency) =>
        report.Variants.FirstOrDefault(v => v.Id == variant)?.Cells.FirstOrDefault(c => c.Concurrency == concurrency);

    /// <summary>The main table: throughput, latency and ratios to the baselines at the same concurrency.</summary>
    public static string Table(BenchReport report)
    {
        var text = new StringBuilder();
        Line(text, $"{"variant",-7} {"conc",4} {"tx/s",9} {"p50 ms",8} {"p99 ms",8} {"/B1",6} {"/B1'",6} {"/B2",6} {"p50/B1",7} {"errors",6}");
        foreach (var variant in report.Variants)
        {
            if (variant.NotRun is { } why)
            {
                // The first line only: a failure's details (a log tail) were printed when it happened.
                var first = why.Split('\n', 2)[0].TrimEnd();
                Line(text, $"{variant.Id,-7} {"",4} {(first.Length > 140 ? first[..137] + "..." : first)}");
                continue;
            }

            foreach (var cell in variant.Cells)
            {
                Line(text, $"{variant.Id,-7} {cell.Concurrency,4} {cell.Throughput,9:N0} {cell.P50Ms,8:0.00} {cell.P99Ms,8:0.00} " +
                    $"{Ratio(report, cell, "B1"),6} {Ratio(report, cell, "B1'"),6} {Ratio(report, cell, "B2"),6} {LatencyRatio(report, cell),7} {cell.Errors,6}");
            }
        }

        return text.ToString();
    }

    /// <summary>Where the time goes: CPU per committed transfer by process, PostgreSQL commits and WAL flushes, messages.</summary>
    public static string CostTable(BenchReport report)
    {
        var text = new StringBuilder();
        Line(text, "per committed transfer, measured window (CPU in ms; commits per database A/B/journal; WAL flushes = pg_stat_wal.wal_sync):");
        Line(text, $"{"variant",-7} {"conc",4} {"bench",6} {"coord",6} {"parts",6} {"pg",6} {"rabbit",6} {"total",6} {"busy",5} {"other",5} {"commits A/B/J",14} {"flush",6} {"WAL B",6} {"msgs",5} {"sql",5}");
        foreach (var variant in report.Variants.Where(v => v.NotRun is null))
        {
            foreach (var cell in variant.Cells)
            {
                var r = cell.Resources;
                double Cpu(string role) => r.CpuMsPerTransfer.GetValueOrDefault(role);
                double Commits(string db) => r.CommitsPerTransfer.GetValueOrDefault(db);
                var commits = string.Create(CultureInfo.InvariantCulture,
                    $"{Commits(BenchEnvironment.BankA):0.0}/{Commits(BenchEnvironment.BankB):0.0}/{Commits(BenchEnvironment.Journal):0.0}");
                Line(text, $"{variant.Id,-7} {cell.Concurrency,4} {Cpu("bench"),6:0.00} {Cpu("coordinator"),6:0.00} {Cpu("participants"),6:0.00} {Cpu("postgres"),6:0.00} {Cpu("rabbitmq"),6:0.00} " +
                    $"{r.CpuMsPerTransferTotal,6:0.00} {r.MachineBusyShare * 100,4:0}% {r.OtherCores,5:0.00} {commits,14} {r.WalSyncsPerTransfer,6:0.00} {r.WalBytesPerTransfer,6:0} " +
                    $"{r.MessagesSentPerTransfer.Values.Sum(),5:0.0} {r.SqlCommandsPerTransfer,5:0.0}");
            }
        }

        Line(text, "busy: share of the machine's cores in use (anyone's); other: cores used by processes outside this run (a shared machine);");
        Line(text, "msgs/sql: messages sent and SQL commands run inside the benchmark process (B3e: all of TxCoord; B3/B4: the initiator's side).");
        return text.ToString();
    }

    public static string Targets(BenchReport report)
    {
        var text = new StringBuilder();
        foreach (var target in report.Targets)
        {
            var value = target.Value is { } v ? v.ToString("0.00", CultureInfo.InvariantCulture) : "n/a";
            var verdict = target.Met switch { true => "MET", false => "NOT MET", null => "-" };
            Line(text, $"  {target.Figure,-40} {value,8}   target {target.Target,-8} {verdict,-8} {target.Note}");
        }

        return text.ToString();
    }

    /// <summary>The targets of PERFORMANCE.md, computed from this run's cells.</summary>
    public static ImmutableArray<TargetReport> EvaluateTargets(BenchReport report, int high, int low)
    {
        var targets = ImmutableArray.CreateBuilder<TargetReport>();
        targets.Add(ThroughputTarget(report, "B3", "B1'", high, 0.6));
        targets.Add(ThroughputTarget(report, "B3", "B2", high, 0.9));
        var b3 = report.Cell("B3", low);
        var b1 = report.Cell("B1", low);
        double? latency = b3 is not null && b1 is { P50Ms: > 0 } ? b3.P50Ms / b1.P50Ms : null;
        targets.Add(new TargetReport($"B3 p50 / B1 p50 at concurrency {low}", "<= 4", latency, latency is { } l ? l <= 4 : null, latency is null ? $"B3 or B1 did not run at concurrency {low}" : ""));
        var b4 = report.Variants.FirstOrDefault(v => v.Id == "B4");
        targets.Add(b4?.NotRun is { } why
            ? new TargetReport($"B4 / B3 throughput at concurrency {high}", ">= 0.7", null, null, why)
            : ThroughputTarget(report, "B4", "B3", high, 0.7));
        if (report.AbortPath is { } abort)
        {
            targets.Add(new TargetReport(
                "abort path: commit decisions forced", "0", abort.CommitDecisionRows, abort.CommitDecisionRows == 0,
                string.Create(CultureInfo.InvariantCulture,
                    $"{abort.Aborted}/{abort.Transfers} refused transfers aborted; {abort.AbortRows} unforced abort rows; WAL flushes {abort.WalSyncsPerAbort:0.00}/abort vs {abort.WalSyncsPerCommitAtSameConcurrency:0.00}/commit")));
        }

        if (report.Footprint is { } footprint)
        {
            targets.Add(new TargetReport("bytes per in-flight transaction", "stated", footprint.BytesPerTransaction, null,
                $"{footprint.InFlight:N0} transactions held in the prepare phase"));
        }

        var memory = report.Variants.FirstOrDefault(v => v.Id == "B3")?.Cells.LastOrDefault();
        if (memory is not null && Slope(memory.Memory) is { } slope)
        {
            targets.Add(new TargetReport($"coordinator RSS slope at concurrency {memory.Concurrency}", "flat", slope, null,
                string.Create(CultureInfo.InvariantCulture, $"MB/min over the 2nd half of {memory.MeasuredSeconds:0} s (meaningful for long runs only); {MemorySummary(memory)}")));
        }

        return targets.ToImmutable();
    }

    /// <summary>Coordinator RSS first/last/max of a cell, in MB.</summary>
    public static string MemorySummary(CellResult cell)
    {
        var rss = cell.Memory.Where(m => m.CoordinatorBytes is not null).Select(m => m.CoordinatorBytes!.Value / 1048576.0).ToArray();
        return rss.Length == 0
            ? "no coordinator process"
            : string.Create(CultureInfo.InvariantCulture, $"RSS {rss[0]:0} MB at start, {rss[^1]:0} MB at end, {rss.Max():0} MB max");
    }

    /// <summary>
    /// Least-squares slope of the coordinator's RSS over the second half of the cell, in MB per
    /// minute: the first half holds the start-up growth (JIT, pools, heap sizing), not a leak.
    /// </summary>
    public static double? Slope(ImmutableArray<MemorySample> samples)
    {
        var all = samples.Where(s => s.CoordinatorBytes is not null).ToArray();
        var points = all.Skip(all.Length / 2).Select(s => (X: s.Seconds / 60, Y: s.CoordinatorBytes!.Value / 1048576.0)).ToArray();
        if (points.Length < 3)
        {
            return null;
        }

        var meanX = points.Average(p => p.X);
        var meanY = points.Average(p => p.Y);
        var sxx = points.Sum(p => (p.X - meanX) * (p.X - meanX));
        return sxx == 0 ? null : points.Sum(p => (p.X - meanX) * (p.Y - meanY)) / sxx;
    }

    private static TargetReport ThroughputTarget(BenchReport report, string variant, string baseline, int concurrency, double target)
    {
        var cell = report.Cell(variant, concurrency);
        var reference = report.Cell(baseline, concurrency);
        double? value = cell is not null && reference is { Throughput: > 0 } ? cell.Throughput / reference.Throughput : null;
        return new TargetReport($"{variant} / {baseline} throughput at concurrency {concurrency}", $">= {target:0.0#}", value, value is { } v ? v >= target : null,
            value is null ? $"{variant} or {baseline} did not run at concurrency {concurrency}" : "");
    }

    private static string Ratio(BenchReport report, CellResult cell, string baseline) =>
        report.Cell(baseline, cell.Concurrency) is { Throughput: > 0 } reference
            ? (cell.Throughput / reference.Throughput).ToString("0.00", CultureInfo.InvariantCulture)
            : "-";

    private static string LatencyRatio(BenchReport report, CellResult cell) =>
        report.Cell("B1", cell.Concurrency) is { P50Ms: > 0 } reference
            ? (cell.P50Ms / reference.P50Ms).ToString("0.0", CultureInfo.InvariantCulture)
            : "-";

    private static void Line(StringBuilder text, string line) => text.AppendLine(line);
}
