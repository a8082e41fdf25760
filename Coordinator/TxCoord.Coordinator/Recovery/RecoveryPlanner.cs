using TxCoord.Contracts;

namespace TxCoord.Coordinator.Recovery;

/// <summary>
/// Decides, without I/O, what recovery does with one prepared transaction. The rules: commit what
/// the journal decided commit; roll back what it recorded aborted; presume abort only for a GID
/// of this coordinator that the journal has never seen, and only while no coordinator with this id
/// runs (it could still be preparing that transaction) and once it is older than the minimum age;
/// leave alone everything else: other coordinators' and foreign GIDs (CR-11), 3PC transactions
/// whose PreCommit is durable (their participants decide), and transactions whose journal record
/// is inconsistent (CR-12: never presume abort over a damaged journal).
/// </summary>
internal static class RecoveryPlanner
{
    public static RecoveryStep Plan(
        PreparedTransaction prepared,
        CoordinatorId coordinator,
        JournalDecision? decision,
        bool coordinatorLive,
        TimeSpan age,
        TimeSpan minimumAge)
    {
        if (prepared.Branch is not { } branch)
        {
            return new(prepared, JournalVerdict.UnknownGid, RecoveryAction.Leave, "not a TxCoord GID: left alone");
        }

        if (branch.Coordinator != coordinator)
        {
            return new(prepared, JournalVerdict.OtherCoordinator, RecoveryAction.Leave, $"belongs to coordinator {branch.Coordinator}: left alone");
        }

        switch (decision)
        {
            case { State: "committing" or "committed" }:
                return new(prepared, JournalVerdict.Commit, RecoveryAction.Commit, $"journal: commit decided ({decision.State})");

            case { State: "aborted", HasCommitEvent: true }:
                return new(prepared, JournalVerdict.Inconsistent, RecoveryAction.Leave,
                    "journal inconsistent: the row says aborted but its history has a commit decision; refusing to guess (see verify, force)");

            case { State: "aborted" }:
                return new(prepared, JournalVerdict.Aborted, RecoveryAction.Abort, "journal: aborted");

            case { State: "precommitting" }:
                return new(prepared, JournalVerdict.PreCommit, RecoveryAction.Leave,
                    "3PC PreCommit durable, no decision: the participants' termination protocol decides");

            case { State: null, HasCommitEvent: true }:
                return new(prepared, JournalVerdict.Inconsistent, RecoveryAction.Leave,
                    "journal damaged: its history has a commit decision but the row is missing; refusing to presume abort (see verify, force)");

            case { State: not null }:
                return new(prepared, JournalVerdict.Inconsistent, RecoveryAction.Leave, $"journal: unknown state '{decision.State}'; refusing to guess");
        }

        if (coordinatorLive)
        {
            return new(prepared, JournalVerdict.None, RecoveryAction.Leave,
                $"no decision yet and coordinator {coordinator} is running: it may still be in flight; left to the coordinator");
        }

        if (age < minimumAge)
        {
            return new(prepared, JournalVerdict.None, RecoveryAction.Leave, $"no decision, but younger than --min-age {minimumAge}: left for now");
        }

        return new(prepared, JournalVerdict.None, RecoveryAction.Abort, "presumed abort: the journal has no commit decision");
    }

    /// <summary>The word scan and resolve print for a verdict.</summary>
    public static string Describe(JournalVerdict verdict) => verdict switch
    {
        JournalVerdict.Commit => "commit",
        JournalVerdict.Aborted => "aborted",
        JournalVerdict.None => "none",
        JournalVerdict.PreCommit => "precommit",
        JournalVerdict.Inconsistent => "INCONSISTENT",
        JournalVerdict.OtherCoordinator => "other coordinator",
        _ => "unknown GID",
    };
}
