using TxCoord.Contracts;
using TxCoord.Participants.PostgreSql;

namespace TxCoord.Participants.Protocol;

/// <summary>What a work message does to its branch (<see cref="BranchRules.OnWork"/>).</summary>
internal enum WorkStep
{
    /// <summary>The branch is open in memory: run the handler in it.</summary>
    Run,

    /// <summary>Nothing in memory and nothing stored: open the branch's transaction, then run the handler.</summary>
    Begin,

    /// <summary>A redelivery of a work that already ran in this branch: answer success, run nothing.</summary>
    SkipDuplicate,

    /// <summary>The branch has already ended (prepared, committed, aborted, read-only): refuse the work.</summary>
    Refuse,
}

/// <summary>What a Prepare does to a branch open in memory (<see cref="BranchRules.PrepareWorking"/>).</summary>
internal enum PrepareStep
{
    /// <summary>The branch lacks works the initiator sent: roll it back, vote No.</summary>
    RollBack,

    /// <summary>Every work said it wrote nothing (2PC): check with PostgreSQL, and on success finish read-only and vote ReadOnly; otherwise <see cref="Prepare"/>.</summary>
    TryReadOnly,

    /// <summary>PREPARE TRANSACTION with the branch's marker; Yes once it is durable, No (rolled back) if it fails.</summary>
    Prepare,
}

/// <summary>The answer to a Prepare for a branch that is not in memory, from its stored status.</summary>
/// <param name="Vote">The vote to send.</param>
/// <param name="Reason">Why, for No.</param>
/// <param name="Fence">Write the abort marker first, so a work arriving late can never prepare.</param>
internal readonly record struct StoredVote(Vote Vote, string? Reason, bool Fence);

/// <summary>What an abort does to a branch not in memory (<see cref="BranchRules.AbortStored"/>).</summary>
internal enum AbortStep
{
    /// <summary>ROLLBACK PREPARED, then the abort marker.</summary>
    RollBackPrepared,

    /// <summary>Nothing to undo: write the abort marker (a fence against a late work) and acknowledge.</summary>
    Fence,

    /// <summary>The branch committed: a protocol violation; nothing is changed and nothing acknowledged.</summary>
    RefuseCommitted,
}

/// <summary>
/// The branch lifecycle's rules as pure functions: what a work, a Prepare, a Commit and an Abort
/// do to a branch, given what is in memory (an open branch and its works) and what its database
/// says (<see cref="BranchStatus"/>). <see cref="Participant.ParticipantRuntime"/> carries them out
/// against PostgreSQL and the bus; the simulator (<c>Tests/TxCoord.Tests.Simulation</c>) carries
/// them out against its simulated database, so both run the same decisions.
/// </summary>
internal static class BranchRules
{
    /// <summary>What a work numbered <paramref name="sequence"/> (0: not numbered) does.</summary>
    /// <param name="working">The branch is open in memory.</param>
    /// <param name="works">The numbers of the works that ran in it (when open).</param>
    /// <param name="stored">Its stored status; read only when not open (pass null to ask whether it is needed).</param>
    public static WorkStep OnWork(bool working, IReadOnlySet<int> works, int sequence, BranchStatus? stored)
    {
        if (working)
        {
            return sequence > 0 && works.Contains(sequence) ? WorkStep.SkipDuplicate : WorkStep.Run;
        }

        return stored is null or BranchStatus.Unknown ? WorkStep.Begin : WorkStep.Refuse;
    }

    /// <summary>The refusal of a work whose branch has already ended.</summary>
    public static string AlreadyEnded(BranchStatus status) => $"the transaction's branch is already {status.ToString().ToLowerInvariant()}";

    /// <summary>What a Prepare does to an open branch.</summary>
    /// <param name="mayVoteReadOnly">False for early prepare: the initiator relays the answer as a Yes vote, so the branch must prepare.</param>
    public static PrepareStep PrepareWorking(
        IReadOnlyCollection<int> works, int expected, bool claimsReadOnly, CommitProtocol protocol, bool mayVoteReadOnly, out string? missing)
    {
        missing = MissingWorks(works, expected);
        if (missing is not null)
        {
            return PrepareStep.RollBack;
        }

        return mayVoteReadOnly && claimsReadOnly && protocol == CommitProtocol.TwoPhase ? PrepareStep.TryReadOnly : PrepareStep.Prepare;
    }

    /// <summary>
    /// Null when <paramref name="works"/> are exactly 1 to <paramref name="expected"/> (or nothing is
    /// expected: 0), otherwise why the branch must not prepare.
    /// </summary>
    public static string? MissingWorks(IReadOnlyCollection<int> works, int expected)
    {
        if (expected <= 0 || (works.Count == expected && works.Min() == 1 && works.Max() == expected))
        {
            return null;
        }

        var held = works.Count == 0 ? "none" : string.Join(", ", works.Order());
        var missing = Enumerable.Range(1, expected).Where(n => !works.Contains(n)).ToList();
        return missing.Count > 0
            ? $"the branch holds works {held} of the {expected} the initiator sent: {(missing.Count == 1 ? "work" : "works")} {string.Join(", ", missing)} {(missing.Count == 1 ? "was" : "were")} lost " +
              "(this participant restarted after it and rolled its open branch back, or it never arrived)"
            : $"the branch holds works {held}, more than the {expected} the initiator counted";
    }

    /// <summary>
    /// The vote for a Prepare that finds nothing in memory: a duplicate, a Prepare after a restart,
    /// or one that overtook its work.
    /// </summary>
    public static StoredVote VoteFromStatus(BranchStatus status, int workCount) => status switch
    {
        BranchStatus.Prepared or BranchStatus.Committed => new StoredVote(Vote.Yes, null, Fence: false),
        BranchStatus.ReadOnly => new StoredVote(Vote.ReadOnly, null, Fence: false),
        BranchStatus.Aborted => new StoredVote(Vote.No, "the branch was aborted", Fence: false),
        _ => new StoredVote(
            Vote.No,
            workCount > 0
                ? $"no work arrived for this transaction before Prepare (the initiator sent {workCount}: lost in a restart of this participant, or not delivered yet)"
                : "no work arrived for this transaction before Prepare",
            Fence: true),
    };

    /// <summary>
    /// A Commit for a branch still open in memory is refused: the coordinator commits only after a
    /// Yes vote, and a Yes vote means the branch left memory prepared.
    /// </summary>
    public static bool MayCommit(bool working) => !working;

    /// <summary>
    /// COMMIT PREPARED found no prepared transaction: true (acknowledge) when the branch committed
    /// before (a duplicate Commit, a reply lost after the commit) or had nothing to commit.
    /// </summary>
    public static bool CommitAlreadyDone(BranchStatus status) => status is BranchStatus.Committed or BranchStatus.ReadOnly;

    /// <summary>What an abort does to a branch that is not open in memory.</summary>
    public static AbortStep AbortStored(BranchStatus status) => status switch
    {
        BranchStatus.Prepared => AbortStep.RollBackPrepared,
        BranchStatus.Committed => AbortStep.RefuseCommitted,
        _ => AbortStep.Fence,
    };
}
