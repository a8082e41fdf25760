using TxCoord.Coordinator.Engine;
using TxCoord.Coordinator.Journal;

namespace TxCoord.Coordinator.Host.Dashboard;

/// <summary>
/// What the journal says a transaction's outcome must be, from what the coordinator holds in
/// memory and the journal's row. The one rule the dashboard's "resolve" follows.
/// </summary>
internal static class TransactionVerdict
{
    public const string Commit = "commit";

    public const string Abort = "abort";

    /// <summary>A decision (or a 3PC PreCommit) is being made durable: nobody can tell the outcome yet.</summary>
    public const string Deciding = "deciding";

    public static (string Verdict, string Explanation) Of(TransactionState? live, JournalEntry? entry)
    {
        if (entry is { IsCommit: true })
        {
            return (Commit, $"the journal holds the commit decision (state '{JournalQueries.StateText(entry.State)}'): every participant must commit");
        }

        if (live is { IsTerminal: false } && live.Phase is not (TransactionPhase.Preparing or TransactionPhase.Committing))
        {
            return (Deciding, $"the coordinator is making its decision durable right now (phase {live.Phase}); the outcome is not known yet: try again in a moment");
        }

        if (live is { Phase: TransactionPhase.Committing or TransactionPhase.Committed })
        {
            return (Commit, "the coordinator decided commit: every participant must commit");
        }

        if (entry is { State: JournalState.Aborted })
        {
            return (Abort, $"the journal records the abort{(entry.Reason is null ? "" : $" ({entry.Reason})")}: every participant must roll back");
        }

        if (entry is not null)
        {
            return (Deciding, $"the journal holds state '{JournalQueries.StateText(entry.State)}' without a final decision: the protocol is still deciding");
        }

        if (live is { Phase: TransactionPhase.Preparing })
        {
            return (Abort, "no commit decision: the coordinator is still collecting votes; resolving aborts it (presumed abort)");
        }

        return (Abort, "the journal has no commit decision: the transaction is aborted by presumption");
    }
}
