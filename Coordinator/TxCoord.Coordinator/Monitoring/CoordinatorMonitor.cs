using System.Collections.Concurrent;
using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;

namespace TxCoord.Coordinator.Monitoring;

/// <summary>
/// What this coordinator process has seen since it started, for the dashboard and /metrics:
/// transactions begun and ended per protocol, time spent in each phase, commit-decision write
/// latency, messages sent, failed and re-sent by re-drives, and the same counts in 10-second
/// buckets over the last <see cref="SeriesLength"/> for the charts. The runtime calls it on
/// every state change; nothing here does I/O or throws, and it never holds a lock while
/// calling out. Memory: a few kilobytes, plus one small entry per transaction in flight.
/// </summary>
internal sealed class CoordinatorMonitor
{
    /// <summary>Width of one bucket of the time series.</summary>
    public static readonly TimeSpan BucketWidth = TimeSpan.FromSeconds(10);

    /// <summary>How far back the time series goes.</summary>
    public static readonly TimeSpan SeriesLength = TimeSpan.FromMinutes(10);

    private static readonly int BucketCount = (int)(SeriesLength / BucketWidth);

    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<CommitProtocol, ProtocolCounters> _protocols = new();
    private readonly ConcurrentDictionary<(CommitProtocol Protocol, string Outcome), LatencyHistogram> _durations = new();
    private readonly ConcurrentDictionary<(CommitProtocol Protocol, TransactionPhase Phase), LatencyHistogram> _phases = new();
    private readonly ConcurrentDictionary<string, MessageCounters> _messages = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string Type, string Reason), Count> _refused = new();
    private readonly ConcurrentDictionary<string, Count> _skipped = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<TransactionId, PhaseEntered> _phaseEntered = new();
    private readonly LatencyHistogram _decisionWrites = new();
    private readonly Bucket[] _buckets;
    private readonly Lock _bucketsLock = new();
    private long _decisionWriteFailures;
    private long _lastDecisionWriteTicks = long.MinValue;

    public CoordinatorMonitor(TimeProvider time)
    {
        _time = time;
        StartedAt = time.GetUtcNow();
        _buckets = [.. Enumerable.Range(0, BucketCount).Select(_ => new Bucket())];
    }

    public DateTimeOffset StartedAt { get; }

    /// <summary>The label value of a protocol in metrics and JSON: "2pc", "3pc".</summary>
    public static string ProtocolLabel(CommitProtocol protocol) => protocol switch
    {
        CommitProtocol.TwoPhase => "2pc",
        CommitProtocol.ThreePhase => "3pc",
        _ => protocol.ToString().ToLowerInvariant(),
    };

    /// <summary>The label value of a phase: its name in lower case ("preparing", "committing").</summary>
    public static string PhaseLabel(TransactionPhase phase) => phase.ToString().ToLowerInvariant();

    /// <summary>A transaction's state changed from <paramref name="previous"/> (null: it was not in memory) to <paramref name="current"/>.</summary>
    public void Observe(TransactionState? previous, TransactionState current)
    {
        var now = _time.GetUtcNow();
        var counters = _protocols.GetOrAdd(current.Protocol, static _ => new ProtocolCounters());
        var id = current.TransactionId;
        if (previous is null)
        {
            if (current.Phase == TransactionPhase.Committing)
            {
                Interlocked.Increment(ref counters.Recovered);
            }
            else
            {
                Interlocked.Increment(ref counters.Begun);
                WithBucket(now, b => b.Begun++);
            }

            if (!current.IsTerminal)
            {
                _phaseEntered[id] = new PhaseEntered(current.Phase, now);
            }
        }
        else if (previous.Phase != current.Phase)
        {
            var entered = _phaseEntered.TryGetValue(id, out var e) && e.Phase == previous.Phase ? e.At : previous.CreatedAt;
            _phases.GetOrAdd((current.Protocol, previous.Phase), static _ => new LatencyHistogram()).Observe(now - entered);
            if (current.IsTerminal)
            {
                _phaseEntered.TryRemove(id, out _);
            }
            else
            {
                _phaseEntered[id] = new PhaseEntered(current.Phase, now);
            }
        }

        var redrives = current.Redrives - (previous?.Redrives ?? 0);
        if (redrives > 0)
        {
            Interlocked.Add(ref counters.Redrives, redrives);
            Interlocked.Add(ref counters.MessagesRetried, current.UnacknowledgedYesVoters.Count());
        }

        if (previous is not null && current.DecisionWriteAttempts > previous.DecisionWriteAttempts && current.DecisionWriteAttempts > 1)
        {
            Interlocked.Add(ref counters.DecisionWriteRetries, current.DecisionWriteAttempts - previous.DecisionWriteAttempts);
        }

        if (current.IsTerminal && previous is not { IsTerminal: true })
        {
            var committed = current.Phase == TransactionPhase.Committed;
            Interlocked.Increment(ref committed ? ref counters.Committed : ref counters.Aborted);
            var duration = (current.EndedAt ?? now) - current.CreatedAt;
            var outcome = committed ? "committed" : "aborted";
            _durations.GetOrAdd((current.Protocol, outcome), static _ => new LatencyHistogram()).Observe(duration);
            WithBucket(now, b =>
            {
                if (committed)
                {
                    b.Committed++;
                    b.Durations.Observe(duration);
                }
                else
                {
                    b.Aborted++;
                }
            });
        }
    }

    /// <summary>A forced commit-decision write to the journal finished (or failed) after <paramref name="elapsed"/>.</summary>
    public void DecisionWritten(TimeSpan elapsed, bool succeeded)
    {
        var now = _time.GetUtcNow();
        if (!succeeded)
        {
            Interlocked.Increment(ref _decisionWriteFailures);
            return;
        }

        _decisionWrites.Observe(elapsed);
        Interlocked.Exchange(ref _lastDecisionWriteTicks, now.UtcTicks);
        WithBucket(now, b => b.DecisionWrites.Observe(elapsed));
    }

    /// <summary>A message of type <paramref name="messageType"/> was handed to the bus (or the send failed).</summary>
    public void MessageSent(string messageType, bool succeeded)
    {
        var counters = _messages.GetOrAdd(messageType, static _ => new MessageCounters());
        Interlocked.Increment(ref succeeded ? ref counters.Sent : ref counters.Failed);
    }

    /// <summary>A protocol message was refused (sender authentication, or a rule of the protocol); <paramref name="reason"/> is the metric's short reason.</summary>
    public void MessageRefused(string messageType, string reason) =>
        Interlocked.Increment(ref _refused.GetOrAdd((messageType, reason), static _ => new Count()).Value);

    /// <summary>A message no handler of <paramref name="queue"/> takes was moved to its _skipped queue.</summary>
    public void MessageSkipped(string queue) =>
        Interlocked.Increment(ref _skipped.GetOrAdd(queue, static _ => new Count()).Value);

    public MonitorSnapshot Read()
    {
        var now = _time.GetUtcNow();
        var lastWrite = Interlocked.Read(ref _lastDecisionWriteTicks);
        return new MonitorSnapshot
        {
            At = now,
            StartedAt = StartedAt,
            Protocols = [.. _protocols.OrderBy(p => p.Key).Select(p => p.Value.Read(p.Key))],
            Durations = [.. _durations.OrderBy(d => d.Key).Select(d => new LabelledHistogram(d.Key.Protocol, d.Key.Outcome, d.Value.Read()))],
            Phases = [.. _phases.OrderBy(d => d.Key).Select(d => new LabelledHistogram(d.Key.Protocol, PhaseLabel(d.Key.Phase), d.Value.Read()))],
            DecisionWrites = _decisionWrites.Read(),
            DecisionWriteFailures = Interlocked.Read(ref _decisionWriteFailures),
            LastDecisionWriteAt = lastWrite == long.MinValue ? null : new DateTimeOffset(lastWrite, TimeSpan.Zero),
            Messages = [.. _messages.OrderBy(m => m.Key, StringComparer.Ordinal).Select(m => new MessageCounts(m.Key, Interlocked.Read(ref m.Value.Sent), Interlocked.Read(ref m.Value.Failed)))],
            Refused = [.. _refused.OrderBy(r => r.Key.Type, StringComparer.Ordinal).ThenBy(r => r.Key.Reason, StringComparer.Ordinal)
                .Select(r => new RefusedCount(r.Key.Type, r.Key.Reason, Interlocked.Read(ref r.Value.Value)))],
            Skipped = [.. _skipped.OrderBy(q => q.Key, StringComparer.Ordinal).Select(q => new SkippedCount(q.Key, Interlocked.Read(ref q.Value.Value)))],
            Series = ReadSeries(now),
        };
    }

    /// <summary>The last <see cref="SeriesLength"/> in buckets of <see cref="BucketWidth"/>, oldest first, the current (partial) bucket last.</summary>
    private IReadOnlyList<SeriesPoint> ReadSeries(DateTimeOffset now)
    {
        var current = Epoch(now);
        var points = new SeriesPoint[BucketCount];
        lock (_bucketsLock)
        {
            for (var i = 0; i < BucketCount; i++)
            {
                var epoch = current - BucketCount + 1 + i;
                var at = new DateTimeOffset(epoch * BucketWidth.Ticks, TimeSpan.Zero);
                var bucket = _buckets[Slot(epoch)];
                points[i] = bucket.Epoch == epoch
                    ? new SeriesPoint(at, bucket.Begun, bucket.Committed, bucket.Aborted, bucket.Durations.Read(), bucket.DecisionWrites.Read())
                    : new SeriesPoint(at, 0, 0, 0, HistogramSnapshot.Empty, HistogramSnapshot.Empty);
            }
        }

        return points;
    }

    private void WithBucket(DateTimeOffset now, Action<Bucket> update)
    {
        var epoch = Epoch(now);
        lock (_bucketsLock)
        {
            var bucket = _buckets[Slot(epoch)];
            if (bucket.Epoch != epoch)
            {
                bucket.Reset(epoch);
            }

            update(bucket);
        }
    }

    private static long Epoch(DateTimeOffset at) => at.UtcTicks / BucketWidth.Ticks;

    private int Slot(long epoch) => (int)(epoch % BucketCount);

    private readonly record struct PhaseEntered(TransactionPhase Phase, DateTimeOffset At);

    private sealed class ProtocolCounters
    {
        public long Begun;
        public long Committed;
        public long Aborted;
        public long Recovered;
        public long Redrives;
        public long MessagesRetried;
        public long DecisionWriteRetries;

        public ProtocolCounts Read(CommitProtocol protocol) => new(
            protocol,
            Interlocked.Read(ref Begun),
            Interlocked.Read(ref Committed),
            Interlocked.Read(ref Aborted),
            Interlocked.Read(ref Recovered),
            Interlocked.Read(ref Redrives),
            Interlocked.Read(ref MessagesRetried),
            Interlocked.Read(ref DecisionWriteRetries));
    }

    private sealed class Count
    {
        public long Value;
    }

    private sealed class MessageCounters
    {
        public long Sent;
        public long Failed;
    }

    /// <summary>One 10-second bucket of the series. Read and written under the monitor's bucket lock.</summary>
    private sealed class Bucket
    {
        public long Epoch { get; private set; } = long.MinValue;
        public long Begun { get; set; }
        public long Committed { get; set; }
        public long Aborted { get; set; }
        public LatencyHistogram Durations { get; private set; } = new();
        public LatencyHistogram DecisionWrites { get; private set; } = new();

        public void Reset(long epoch)
        {
            Epoch = epoch;
            Begun = Committed = Aborted = 0;
            Durations = new LatencyHistogram();
            DecisionWrites = new LatencyHistogram();
        }
    }
}

/// <summary>Counts of one protocol since the coordinator started.</summary>
/// <param name="Recovered">Transactions resumed from the journal at start (not counted in <paramref name="Begun"/>).</param>
/// <param name="MessagesRetried">Phase-2 messages sent again by re-drives.</param>
internal sealed record ProtocolCounts(
    CommitProtocol Protocol,
    long Begun,
    long Committed,
    long Aborted,
    long Recovered,
    long Redrives,
    long MessagesRetried,
    long DecisionWriteRetries);

internal sealed record LabelledHistogram(CommitProtocol Protocol, string Label, HistogramSnapshot Histogram);

internal sealed record MessageCounts(string MessageType, long Sent, long Failed);

internal sealed record RefusedCount(string MessageType, string Reason, long Count);

internal sealed record SkippedCount(string Queue, long Count);

/// <summary>One bucket of the time series: what started and ended in it, and how long those commits took.</summary>
internal sealed record SeriesPoint(
    DateTimeOffset At,
    long Begun,
    long Committed,
    long Aborted,
    HistogramSnapshot CommitDurations,
    HistogramSnapshot DecisionWrites);

/// <summary>A consistent-enough copy of the monitor (each counter is read atomically, not all at one instant).</summary>
internal sealed record MonitorSnapshot
{
    public required DateTimeOffset At { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    public required IReadOnlyList<ProtocolCounts> Protocols { get; init; }
    public required IReadOnlyList<LabelledHistogram> Durations { get; init; }
    public required IReadOnlyList<LabelledHistogram> Phases { get; init; }
    public required HistogramSnapshot DecisionWrites { get; init; }
    public required long DecisionWriteFailures { get; init; }
    public required DateTimeOffset? LastDecisionWriteAt { get; init; }
    public required IReadOnlyList<MessageCounts> Messages { get; init; }
    public required IReadOnlyList<RefusedCount> Refused { get; init; }
    public required IReadOnlyList<SkippedCount> Skipped { get; init; }
    public required IReadOnlyList<SeriesPoint> Series { get; init; }

    /// <summary>The last <paramref name="buckets"/> buckets of the series merged: counts summed, histograms added.</summary>
    public SeriesPoint Recent(int buckets)
    {
        var window = Series.Skip(Math.Max(0, Series.Count - buckets)).ToList();
        var durations = new LatencyHistogram();
        var writes = new LatencyHistogram();
        foreach (var point in window)
        {
            durations.Add(point.CommitDurations);
            writes.Add(point.DecisionWrites);
        }

        return new SeriesPoint(
            window.Count > 0 ? window[0].At : At,
            window.Sum(p => p.Begun),
            window.Sum(p => p.Committed),
            window.Sum(p => p.Aborted),
            durations.Read(),
            writes.Read());
    }
}
