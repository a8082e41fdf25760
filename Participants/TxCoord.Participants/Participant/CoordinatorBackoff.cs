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
{
    private readonly Dictionary<CoordinatorId, (DateTimeOffset NextAttempt, TimeSpan Interval)> _waits = [];
    private readonly Lock _gate = new();

    /// <summary>True when <paramref name="coordinator"/> may be asked now.</summary>
    public bool MayAsk(CoordinatorId coordinator)
    {
        lock (_gate)
        {
            return !_waits.TryGetValue(coordinator, out var wait) || time.GetUtcNow() >= wait.NextAttempt;
        }
    }

    /// <summary>The coordinator answered: no more waiting for it.</summary>
    public void Answered(CoordinatorId coordinator)
    {
        lock (_gate)
        {
            _waits.Remove(coordinator);
        }
    }

    /// <summary>The coordinator did not answer. Returns how long until it is asked again.</summary>
    public TimeSpan Failed(CoordinatorId coordinator)
    {
        lock (_gate)
        {
            var interval = _waits.TryGetValue(coordinator, out var wait)
                ? TimeSpan.FromTicks(Math.Min(wait.Interval.Ticks * 2, maxInterval.Ticks))
                : TimeSpan.FromTicks(Math.Min(initialInterval.Ticks, maxInterval.Ticks));
            _waits[coordinator] = (time.GetUtcNow() + interval, interval);
            return interval;
        }
    }
}
