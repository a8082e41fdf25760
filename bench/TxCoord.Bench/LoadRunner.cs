using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Diagnostics;
using System.Globalization;
using TxCoord.Bench.Measurement;
using TxCoord.Bench.Variants;

namespace TxCoord.Bench;

/// <summary>Resident memory of the processes that matter at one moment of a cell.</summary>
internal sealed record MemorySample(double Seconds, long? CoordinatorBytes, long BenchBytes, long BenchManagedBytes);

/// <summary>The figures of one cell: one variant at one concurrency.</summary>
internal sealed record CellResult
{
    public required string Variant { get; init; }
    public required int Concurrency { get; init; }
    public required double MeasuredSeconds { get; init; }

    /// <summary>Transfers committed within the measured window.</summary>
    public required long Committed { get; init; }

    public required double Throughput { get; init; }
    public required double P50Ms { get; init; }
    public required double P90Ms { get; init; }
    public required double P99Ms { get; init; }
    public required double MaxMs { get; init; }
    public required double MeanMs { get; init; }

    /// <summary>Transfers that ended Aborted or InDoubt within the window.</summary>
    public required long Errors { get; init; }

    /// <summary>All transfers committed by this cell, warm-up and drain included (for the ledger checks).</summary>
    public required long CommittedOverall { get; init; }

    public required long InDoubtOverall { get; init; }

    public required ImmutableArray<string> ErrorSamples { get; init; }

    public required CellResources Resources { get; init; }

    public required ImmutableArray<MemorySample> Memory { get; init; }
}

/// <summary>
/// Runs one cell closed-loop: <c>concurrency</c> workers each run transfers back to back; after
/// the warm-up, the transfers that complete within the measured window count (throughput,
/// latency percentiles); then the workers finish what they started.
/// </summary>
internal sealed class LoadRunner(ResourceMonitor monitor, Progress progress, int accounts)
{
    /// <summary>Amounts are 1..100: far below the seeded balances, so no transfer is refused.</summary>
    public const int MaxAmount = 100;

    private static readonly TimeSpan MemorySampleInterval = TimeSpan.FromSeconds(1);

    public async Task<CellResult> RunAsync(IVariant variant, int concurrency, TimeSpan warmup, TimeSpan duration, int? coordinatorPid, string label, CancellationToken cancellationToken)
    {
        var state = new RunState();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var started = Stopwatch.GetTimestamp();
        var workers = Enumerable.Range(0, concurrency)
            .Select(i => Task.Run(() => WorkerAsync(variant, state, new Random(HashCode.Combine(label, i)), stop.Token), CancellationToken.None))
            .ToArray();
        var memory = new List<MemorySample>();
        var sampler = SampleMemoryAsync(memory, coordinatorPid, started, stop.Token);

        ResourceSnapshot before, after;
        try
        {
            await WaitAsync(warmup, state, label, concurrency, "warm-up", workers, cancellationToken);
            before = await monitor.TakeAsync(variant.Processes, cancellationToken);
            state.WindowStart = Stopwatch.GetTimestamp();
            Volatile.Write(ref state.Measuring, true);
            await WaitAsync(duration, state, label, concurrency, "measuring", workers, cancellationToken);
            state.WindowEnd = Stopwatch.GetTimestamp();
            Volatile.Write(ref state.Measuring, false);
            after = await monitor.TakeAsync(variant.Processes, cancellationToken);
        }
        finally
        {
            Volatile.Write(ref state.Stopping, true);
            await stop.CancelAsync();
            await Task.WhenAll(workers.Append(sampler));
            progress.Clear();
        }

        var latencies = state.Latencies.ToArray();
        Array.Sort(latencies);
        var seconds = Stopwatch.GetElapsedTime(state.WindowStart, state.WindowEnd).TotalSeconds;
        return new CellResult
        {
            Variant = variant.Id,
            Concurrency = concurrency,
            MeasuredSeconds = seconds,
            Committed = latencies.Length,
            Throughput = latencies.Length / seconds,
            P50Ms = Percentile(latencies, 0.50),
            P90Ms = Percentile(latencies, 0.90),
            P99Ms = Percentile(latencies, 0.99),
            MaxMs = latencies.Length == 0 ? 0 : Ms(latencies[^1]),
            MeanMs = latencies.Length == 0 ? 0 : Ms((long)latencies.Average()),
            Errors = Volatile.Read(ref state.WindowErrors),
            CommittedOverall = Volatile.Read(ref state.CommittedOverall),
            InDoubtOverall = Volatile.Read(ref state.InDoubtOverall),
            ErrorSamples = [.. state.ErrorSamples.Take(5)],
            Resources = CellResources.Between(before, after, latencies.Length),
            Memory = [.. memory],
        };
    }

    /// <summary>
    /// Runs transfers for <paramref name="time"/> without measuring them: services that just started
    /// have cold JIT, pools and caches, which a short cell's own warm-up would not cover.
    /// </summary>
    public async Task WarmUpAsync(IVariant variant, int concurrency, TimeSpan time, string label, CancellationToken cancellationToken)
    {
        var state = new RunState();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var workers = Enumerable.Range(0, concurrency)
            .Select(i => Task.Run(() => WorkerAsync(variant, state, new Random(HashCode.Combine(label, i)), stop.Token), CancellationToken.None))
            .ToArray();
        try
        {
            await WaitAsync(time, state, label, concurrency, "warm-up", workers, cancellationToken);
        }
        finally
        {
            Volatile.Write(ref state.Stopping, true);
            await stop.CancelAsync();
            await Task.WhenAll(workers);
            progress.Clear();
        }
    }

    private async Task WorkerAsync(IVariant variant, RunState state, Random random, CancellationToken cancellationToken)
    {
        while (!Volatile.Read(ref state.Stopping))
        {
            var transfer = new Transfer(Guid.CreateVersion7(), random.Next(1, accounts + 1), random.Next(1, accounts + 1), random.Next(1, MaxAmount + 1));
            var begun = Stopwatch.GetTimestamp();
            TransferResult result;
            try
            {
                // Not the stop token: a transfer once begun runs to its end, so the ledgers can be checked.
                result = await variant.TransferAsync(transfer, CancellationToken.None);
            }
            catch (Exception e)
            {
                result = new TransferResult(TransferOutcome.Aborted, $"{e.GetType().Name}: {e.Message}");
            }

            var ended = Stopwatch.GetTimestamp();
            var inWindow = Volatile.Read(ref state.Measuring);
            switch (result.Outcome)
            {
                case TransferOutcome.Committed:
                    Interlocked.Increment(ref state.CommittedOverall);
                    if (inWindow)
                    {
                        state.Latencies.Add(ended - begun);
                    }

                    break;
                case TransferOutcome.InDoubt:
                    Interlocked.Increment(ref state.InDoubtOverall);
                    goto default;
                default:
                    if (inWindow)
                    {
                        Interlocked.Increment(ref state.WindowErrors);
                    }

                    if (state.ErrorSamples.Count < 5)
                    {
                        state.ErrorSamples.Add($"{result.Outcome}: {result.Reason}");
                    }

                    break;
            }

            if (cancellationToken.IsCancellationRequested)
            {
                return;
            }
        }
    }

    private async Task WaitAsync(TimeSpan time, RunState state, string label, int concurrency, string phase, Task[] workers, CancellationToken cancellationToken)
    {
        var until = Stopwatch.GetTimestamp() + (long)(time.TotalSeconds * Stopwatch.Frequency);
        var begun = Stopwatch.GetTimestamp();
        while (true)
        {
            var left = (until - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency;
            if (left <= 0)
            {
                return;
            }

            if (workers.FirstOrDefault(w => w.IsFaulted) is { } faulted)
            {
                await faulted; // a bug in the benchmark: surface it
            }

            var elapsed = Stopwatch.GetElapsedTime(begun).TotalSeconds;
            var committed = phase == "measuring" ? state.Latencies.Count : Volatile.Read(ref state.CommittedOverall);
            progress.Update(string.Create(CultureInfo.InvariantCulture,
                $"{label}  c={concurrency,-3} {phase,-9} {elapsed,5:0.0}/{time.TotalSeconds:0.0} s  {committed,8:N0} tx  {committed / Math.Max(elapsed, 0.001),8:N0} tx/s  errors {Volatile.Read(ref state.WindowErrors)}"));
            await Task.Delay(TimeSpan.FromSeconds(Math.Min(left, 1)), cancellationToken);
        }
    }

    private static async Task SampleMemoryAsync(List<MemorySample> samples, int? coordinatorPid, long started, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(MemorySampleInterval);
        try
        {
            do
            {
                samples.Add(new MemorySample(
                    Stopwatch.GetElapsedTime(started).TotalSeconds,
                    coordinatorPid is { } pid ? ProcessStats.ResidentBytes(pid) : null,
                    ProcessStats.ResidentBytes(Environment.ProcessId) ?? 0,
                    GC.GetTotalMemory(forceFullCollection: false)));
            }
            while (await timer.WaitForNextTickAsync(cancellationToken));
        }
        catch (OperationCanceledException)
        {
            // The cell ended.
        }
    }

    private static double Percentile(long[] sorted, double p) =>
        sorted.Length == 0 ? 0 : Ms(sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)]);

    private static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

    private sealed class RunState
    {
        public readonly ConcurrentBag<long> Latencies = [];
        public readonly ConcurrentBag<string> ErrorSamples = [];
        public bool Measuring;
        public bool Stopping;
        public long CommittedOverall;
        public long InDoubtOverall;
        public long WindowErrors;
        public long WindowStart;
        public long WindowEnd;
    }
}
