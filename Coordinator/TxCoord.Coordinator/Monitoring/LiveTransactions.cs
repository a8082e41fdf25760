using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using TxCoord.Coordinator.Runtime;

namespace TxCoord.Coordinator.Monitoring;

/// <summary>When a transaction in flight needs a person's attention.</summary>
/// <param name="InDoubtAfter">A transaction whose participants hold prepared branches without a durable decision for this long is "in doubt".</param>
/// <param name="StuckAfter">A transaction decided commit whose phase 2 is not acknowledged this long after the decision is "stuck".</param>
/// <param name="StuckAfterRedrives">... or after this many re-drives, whichever comes first.</param>
internal sealed record AttentionThresholds(TimeSpan InDoubtAfter, TimeSpan StuckAfter, int StuckAfterRedrives)
{
    public static readonly TimeSpan DefaultInDoubtAfter = TimeSpan.FromSeconds(5);

    public static readonly TimeSpan DefaultStuckAfter = TimeSpan.FromSeconds(30);

    public static AttentionThresholds Default { get; } = new(DefaultInDoubtAfter, DefaultStuckAfter, CoordinatorRuntime.StuckAfterRedrives);
}

/// <summary>The statuses the dashboard gives a transaction in flight.</summary>
internal static class LiveStatus
{
    /// <summary>Collecting votes; nobody is blocked yet (no Yes vote, or not for long).</summary>
    public const string Preparing = "preparing";

    /// <summary>Some participants hold prepared branches and the decision is not durable, past <see cref="AttentionThresholds.InDoubtAfter"/>.</summary>
    public const string InDoubt = "in-doubt";

    /// <summary>Decided commit, phase 2 under way.</summary>
    public const string Committing = "committing";

    /// <summary>Decided commit, phase 2 not acknowledged past <see cref="AttentionThresholds.StuckAfter"/> (or the re-drive limit).</summary>
    public const string Stuck = "stuck";

    /// <summary>
    /// The status of <paramref name="state"/> at <paramref name="now"/>. Phases other than
    /// preparing and committing (the decision or a 3PC PreCommit being made durable) are shown by
    /// their name, and as in doubt once they last past the threshold.
    /// </summary>
    public static string Of(TransactionState state, DateTimeOffset now, AttentionThresholds thresholds)
    {
        if (state.IsTerminal)
        {
            return CoordinatorMonitor.PhaseLabel(state.Phase);
        }

        var age = now - state.CreatedAt;
        return state.Phase switch
        {
            TransactionPhase.Preparing => state.Votes.Values.Any(v => v == Vote.Yes) && age >= thresholds.InDoubtAfter ? InDoubt : Preparing,
            TransactionPhase.Committing => state.Redrives >= thresholds.StuckAfterRedrives || now - (state.DecidedAt ?? state.CreatedAt) >= thresholds.StuckAfter
                ? Stuck
                : Committing,
            _ => age >= thresholds.InDoubtAfter ? InDoubt : CoordinatorMonitor.PhaseLabel(state.Phase),
        };
    }
}
