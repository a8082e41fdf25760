using TxCoord.Contracts;
using TxCoord.Participants.PostgreSql;
using TxCoord.Participants.Protocol;

namespace TxCoord.Tests.Unit.Participants;

/// <summary>The branch lifecycle's rules (<see cref="BranchRules"/>), one table per operation.</summary>
internal sealed class BranchRulesTests
{
    private static readonly HashSet<int> None = [];

    // ---- a work --------------------------------------------------------------------------

    [TestCase(true, new[] { 1 }, 2, null, WorkStep.Run, TestName = "open branch, a new work: run it")]
    [TestCase(true, new[] { 1, 2 }, 2, null, WorkStep.SkipDuplicate, TestName = "open branch, a work that already ran: skip it")]
    [TestCase(true, new[] { 1 }, 0, null, WorkStep.Run, TestName = "open branch, an unnumbered work: always run")]
    [TestCase(false, new int[0], 1, BranchStatus.Unknown, WorkStep.Begin, TestName = "nothing stored: begin")]
    [TestCase(false, new int[0], 1, null, WorkStep.Begin, TestName = "status not read yet: begin (reads it first)")]
    [TestCase(false, new int[0], 1, BranchStatus.Prepared, WorkStep.Refuse, TestName = "already prepared: refuse")]
    [TestCase(false, new int[0], 1, BranchStatus.Committed, WorkStep.Refuse, TestName = "already committed: refuse")]
    [TestCase(false, new int[0], 1, BranchStatus.Aborted, WorkStep.Refuse, TestName = "fenced or aborted: refuse")]
    [TestCase(false, new int[0], 1, BranchStatus.ReadOnly, WorkStep.Refuse, TestName = "finished read-only: refuse")]
    public void OnWork(bool working, int[] works, int sequence, BranchStatus? stored, WorkStep expected) =>
        Assert.That(BranchRules.OnWork(working, works.ToHashSet(), sequence, stored), Is.EqualTo(expected));

    [Test]
    public void AlreadyEnded_NamesTheStatus() =>
        Assert.That(BranchRules.AlreadyEnded(BranchStatus.Aborted), Is.EqualTo("the transaction's branch is already aborted"));

    // ---- a Prepare, branch open ------------------------------------------------------------

    [TestCase(new[] { 1, 2 }, 2, false, CommitProtocol.TwoPhase, true, PrepareStep.Prepare, TestName = "every work, wrote: prepare")]
    [TestCase(new[] { 1, 2 }, 2, true, CommitProtocol.TwoPhase, true, PrepareStep.TryReadOnly, TestName = "every work said read-only, 2PC: try read-only")]
    [TestCase(new[] { 1 }, 1, true, CommitProtocol.ThreePhase, true, PrepareStep.Prepare, TestName = "read-only claim under 3PC: prepare (3PC has no ReadOnly vote)")]
    [TestCase(new[] { 1 }, 1, true, CommitProtocol.TwoPhase, false, PrepareStep.Prepare, TestName = "read-only claim, early prepare: prepare (the relayed vote is Yes)")]
    [TestCase(new[] { 2 }, 2, false, CommitProtocol.TwoPhase, true, PrepareStep.RollBack, TestName = "a work lost: roll back")]
    [TestCase(new[] { 1, 2, 3 }, 2, false, CommitProtocol.TwoPhase, true, PrepareStep.RollBack, TestName = "more works than counted: roll back")]
    [TestCase(new[] { 7 }, 0, false, CommitProtocol.TwoPhase, true, PrepareStep.Prepare, TestName = "uncounted: prepare whatever it holds")]
    public void PrepareWorking(int[] works, int expected, bool readOnly, CommitProtocol protocol, bool mayVoteReadOnly, PrepareStep step)
    {
        var got = BranchRules.PrepareWorking(works.ToHashSet(), expected, readOnly, protocol, mayVoteReadOnly, out var missing);
        Assert.That(got, Is.EqualTo(step));
        Assert.That(missing, step == PrepareStep.RollBack ? Is.Not.Null : Is.Null);
    }

    [TestCase(new[] { 1 }, 1)]
    [TestCase(new[] { 1, 2, 3 }, 3)]
    [TestCase(new[] { 2, 1 }, 2, TestName = "works that arrived out of order")]
    [TestCase(new int[0], 0, TestName = "nothing expected (an initiator that does not count)")]
    [TestCase(new[] { 5 }, 0, TestName = "nothing expected, whatever the branch holds")]
    public void MissingWorks_HoldsEveryWork_MayPrepare(int[] works, int expected) =>
        Assert.That(BranchRules.MissingWorks(works.ToHashSet(), expected), Is.Null);

    [TestCase(new[] { 2 }, 2, "work 1 was lost")]
    [TestCase(new[] { 3 }, 3, "works 1, 2 were lost")]
    [TestCase(new[] { 1, 3 }, 3, "work 2 was lost")]
    [TestCase(new int[0], 2, "holds works none of the 2")]
    [TestCase(new[] { 3, 1, 2 }, 2, "holds works 1, 2, 3, more than the 2 the initiator counted")]
    public void MissingWorks_LacksAWorkOrHoldsMore_MustNotPrepare(int[] works, int expected, string reason) =>
        Assert.That(BranchRules.MissingWorks(works.ToHashSet(), expected), Does.Contain(reason));

    // ---- a Prepare, nothing in memory --------------------------------------------------------

    [TestCase(BranchStatus.Prepared, Vote.Yes, false, TestName = "prepared (a duplicate Prepare): Yes again")]
    [TestCase(BranchStatus.Committed, Vote.Yes, false, TestName = "committed (the Commit overtook the answer): Yes")]
    [TestCase(BranchStatus.ReadOnly, Vote.ReadOnly, false, TestName = "finished read-only: ReadOnly again")]
    [TestCase(BranchStatus.Aborted, Vote.No, false, TestName = "aborted: No")]
    [TestCase(BranchStatus.Unknown, Vote.No, true, TestName = "never seen (lost in a restart, or overtaking its work): fence, No")]
    public void VoteFromStatus(BranchStatus status, Vote vote, bool fence)
    {
        var got = BranchRules.VoteFromStatus(status, workCount: 2);
        Assert.That((got.Vote, got.Fence), Is.EqualTo((vote, fence)));
        Assert.That(got.Reason, vote == Vote.No ? Is.Not.Null : Is.Null);
    }

    [Test]
    public void VoteFromStatus_NeverSeen_SaysHowManyWorksWereSent()
    {
        Assert.That(BranchRules.VoteFromStatus(BranchStatus.Unknown, 3).Reason, Does.Contain("the initiator sent 3"));
        Assert.That(BranchRules.VoteFromStatus(BranchStatus.Unknown, 0).Reason, Is.EqualTo("no work arrived for this transaction before Prepare"));
    }

    // ---- a Commit, an Abort ----------------------------------------------------------------

    [TestCase(true, false, TestName = "open branch (never prepared): refuse the Commit")]
    [TestCase(false, true, TestName = "not in memory (prepared): commit")]
    public void MayCommit(bool working, bool may) => Assert.That(BranchRules.MayCommit(working), Is.EqualTo(may));

    [TestCase(BranchStatus.Committed, true)]
    [TestCase(BranchStatus.ReadOnly, true)]
    [TestCase(BranchStatus.Aborted, false)]
    [TestCase(BranchStatus.Unknown, false)]
    [TestCase(BranchStatus.Prepared, false)]
    public void CommitAlreadyDone(BranchStatus status, bool done) => Assert.That(BranchRules.CommitAlreadyDone(status), Is.EqualTo(done));

    [TestCase(BranchStatus.Prepared, AbortStep.RollBackPrepared)]
    [TestCase(BranchStatus.Committed, AbortStep.RefuseCommitted)]
    [TestCase(BranchStatus.Aborted, AbortStep.Fence)]
    [TestCase(BranchStatus.Unknown, AbortStep.Fence)]
    [TestCase(BranchStatus.ReadOnly, AbortStep.Fence)]
    public void AbortStored(BranchStatus status, AbortStep step) => Assert.That(BranchRules.AbortStored(status), Is.EqualTo(step));

    [Test]
    public void OnWork_EmptyWorks_NeverDuplicate() => Assert.That(BranchRules.OnWork(true, None, 1, null), Is.EqualTo(WorkStep.Run));
}
