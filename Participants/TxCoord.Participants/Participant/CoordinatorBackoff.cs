using TxCoord.Contracts;

namespace TxCoord.Participants.Participant;

/// <summary>
/// When a participant may next ask each coordinator for outcomes. A coordinator that did not
/// answer is asked again only after a wait that starts at the resolve interval and doubles up to a
/// maximum; one that answers is asked freely again. So while a coordinator is down, a pass over many
/// prepared branches costs one question to it (one <c>OutcomeQueryTimeout</c>), not one per branch,
/// and the questions thin out instead of hammering a coordinator that is coming back up. Thread-safe.
/// </summary>
internal sealed class CoordinatorBackoff(TimeSpan initialInterval, TimeSpan maxInterval, TimeProvider time)
    : RetryBackoff<CoordinatorId>(initialInterval, maxInterval, time);

/// <summary>
/// A bounded exponential back-off per key, on <see cref="TimeProvider"/>: after a failure the key
/// waits the initial interval, doubling with each further failure up to the maximum; a success
/// forgets it. Thread-safe.
/// </summary>
internal class RetryBackoff<TKey>(TimeSpan initialInterval, TimeSpan maxInterval, TimeProvider time)
    where TKey : notnull
{
    private readonly Dictionary<TKey, (DateTimeOffset NextAttempt, TimeSpan Interval)> _waits = [];
    private readonly Lock _gate = new();

    /// <summary>How many keys failed last time they were tried (and were not forgotten since).</summary>
    public int Failing
    {
        get
        {
            lock (_gate)
            {
                return _waits.Count;
            }
        }
    }

    /// <summary>True when <paramref name="key"/> may be tried now.</summary>
    public bool MayAsk(TKey key)
    {
        lock (_gate)
        {
            return !_waits.TryGetValue(key, out var wait) || time.GetUtcNow() >= wait.NextAttempt;
        }
    }

    /// <summary>It succeeded (the coordinator answered): no more waiting for it.</summary>
    public void Answered(TKey key)
    {
        lock (_gate)
        {
            _waits.Remove(key);
        }
    }

    /// <summary>It failed (the coordinator did not answer). Returns how long until it is tried again.</summary>
    public TimeSpan Failed(TKey key)
    {
        lock (_gate)
        {
            var interval = _waits.TryGetValue(key, out var wait)
                ? TimeSpan.FromTicks(Math.Min(wait.Interval.Ticks * 2, maxInterval.Ticks))
                : TimeSpan.FromTicks(Math.Min(initialInterval.Ticks, maxInterval.Ticks));
            _waits[key] = (time.GetUtcNow() + interval, interval);
            return interval;
        }
    }

    /// <summary>Forgets every key not in <paramref name="keep"/> (e.g. branches no longer prepared).</summary>
    public void Retain(IReadOnlySet<TKey> keep)
    {
        lock (_gate)
        {
            foreach (var key in _waits.Keys.Where(k => !keep.Contains(k)).ToList())
            {
                _waits.Remove(key);
            }
        }
    }
}
