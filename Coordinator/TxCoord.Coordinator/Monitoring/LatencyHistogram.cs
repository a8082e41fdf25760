namespace TxCoord.Coordinator.Monitoring;

/// <summary>
/// A histogram in the Prometheus sense: cumulative counts per fixed upper bound, a sum and a
/// count. Thread-safe. Also answers quantiles, interpolated inside the bucket that holds them.
/// </summary>
internal sealed class LatencyHistogram
{
    /// <summary>
    /// Upper bounds in seconds, from 0.5 ms to 2 minutes. Fine enough around the 1-100 ms where
    /// commits live that p50/p99 read from them are within one bucket's width of the truth.
    /// </summary>
    public static readonly double[] Bounds =
    [
        0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
        0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 30, 60, 120,
    ];

    private readonly long[] _counts = new long[Bounds.Length + 1];
    private readonly Lock _lock = new();
    private double _sum;
    private long _count;

    public void Observe(TimeSpan value)
    {
        var seconds = Math.Max(0, value.TotalSeconds);
        var index = Array.BinarySearch(Bounds, seconds);
        if (index < 0)
        {
            index = ~index;
        }

        lock (_lock)
        {
            _counts[index]++;
            _sum += seconds;
            _count++;
        }
    }

    /// <summary>Adds every observation of <paramref name="snapshot"/> to this one.</summary>
    public void Add(HistogramSnapshot snapshot)
    {
        lock (_lock)
        {
            for (var i = 0; i < _counts.Length; i++)
            {
                _counts[i] += snapshot.Counts[i];
            }

            _sum += snapshot.Sum;
            _count += snapshot.Count;
        }
    }

    public HistogramSnapshot Read()
    {
        lock (_lock)
        {
            return new HistogramSnapshot([.. _counts], _sum, _count);
        }
    }
}

/// <summary>A copy of a <see cref="LatencyHistogram"/>: per-bucket (not cumulative) counts, the last one above every bound.</summary>
internal sealed record HistogramSnapshot(long[] Counts, double Sum, long Count)
{
    public static readonly HistogramSnapshot Empty = new(new long[LatencyHistogram.Bounds.Length + 1], 0, 0);

    /// <summary>
    /// The <paramref name="quantile"/> (0..1) in seconds, interpolated linearly inside its bucket;
    /// null without observations. Values above the last bound are reported as that bound.
    /// </summary>
    public double? Quantile(double quantile)
    {
        if (Count == 0)
        {
            return null;
        }

        var rank = quantile * Count;
        long seen = 0;
        for (var i = 0; i < Counts.Length; i++)
        {
            if (Counts[i] == 0)
            {
                continue;
            }

            if (seen + Counts[i] >= rank)
            {
                var bounds = LatencyHistogram.Bounds;
                if (i >= bounds.Length)
                {
                    return bounds[^1];
                }

                var lower = i == 0 ? 0 : bounds[i - 1];
                var fraction = Counts[i] == 0 ? 1 : Math.Clamp((rank - seen) / Counts[i], 0, 1);
                return lower + ((bounds[i] - lower) * fraction);
            }

            seen += Counts[i];
        }

        return LatencyHistogram.Bounds[^1];
    }
}
