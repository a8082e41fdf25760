using TxCoord.Contracts;
using TxCoord.Coordinator.Recovery;

namespace TxCoord.Tests.Unit.Recovery;

public sealed class RecoveryPlannerTests
{
    private static readonly CoordinatorId Us = new("c1");
    private static readonly TimeSpan Old = TimeSpan.FromMinutes(10);

    private static PreparedTransaction Prepared(string gid) => new(
        new ParticipantId("bank-a"), "bank_a", gid, BranchGid.TryParse(gid, out var b) ? b : null, DateTimeOffset.UnixEpoch, "postgres", 3, "accounts RowExclusiveLock", 0);

    private static (PreparedTransaction Prepared, TransactionId Id) Ours()
    {
        var id = TransactionId.New();
        return (Prepared(BranchGid.Create(Us, id, new ParticipantId("bank-a")).Value), id);
    }

    [TestCase("committing")]
    [TestCase("committed")]
    public void DecidedCommit_IsCommitted_EvenBesideALiveCoordinator(string state)
    {
        var (prepared, id) = Ours();
        var step = RecoveryPlanner.Plan(prepared, Us, new JournalDecision(id, state, true), coordinatorLive: true, Old, TimeSpan.Zero);
        Assert.That((step.Verdict, step.Action), Is.EqualTo((JournalVerdict.Commit, RecoveryAction.Commit)));
    }

    [Test]
    public void RecordedAbort_IsRolledBack()
    {
        var (prepared, id) = Ours();
        var step = RecoveryPlanner.Plan(prepared, Us, new JournalDecision(id, "aborted", false), coordinatorLive: true, Old, TimeSpan.Zero);
        Assert.That((step.Verdict, step.Action), Is.EqualTo((JournalVerdict.Aborted, RecoveryAction.Abort)));
    }

    [Test]
    public void NoDecisionAndNoCoordinatorRunning_IsPresumedAborted()
    {
        var (prepared, _) = Ours();
        var step = RecoveryPlanner.Plan(prepared, Us, null, coordinatorLive: false, Old, TimeSpan.Zero);
        Assert.That((step.Verdict, step.Action, step.Why), Is.EqualTo((JournalVerdict.None, RecoveryAction.Abort, step.Why)));
        Assert.That(step.Why, Does.Contain("presumed abort"));
    }

    [Test]
    public void NoDecisionBesideALiveCoordinator_IsLeftToIt_NeverAborted()
    {
        var (prepared, _) = Ours();
        var step = RecoveryPlanner.Plan(prepared, Us, null, coordinatorLive: true, Old, TimeSpan.Zero);
        Assert.That(step.Action, Is.EqualTo(RecoveryAction.Leave));
        Assert.That(step.Why, Does.Contain("in flight"));
    }

    [Test]
    public void NoDecisionYoungerThanTheMinimumAge_IsLeftForNow()
    {
        var (prepared, _) = Ours();
        var step = RecoveryPlanner.Plan(prepared, Us, null, coordinatorLive: false, TimeSpan.FromSeconds(5), TimeSpan.FromMinutes(1));
        Assert.That(step.Action, Is.EqualTo(RecoveryAction.Leave));
    }

    [Test]
    public void HistoryShowsACommitDecisionButTheRowIsMissing_RefusesToPresumeAbort()
    {
        var (prepared, id) = Ours();
        var step = RecoveryPlanner.Plan(prepared, Us, new JournalDecision(id, null, true), coordinatorLive: false, Old, TimeSpan.Zero);
        Assert.That((step.Verdict, step.Action), Is.EqualTo((JournalVerdict.Inconsistent, RecoveryAction.Leave)));
    }

    [Test]
    public void RowSaysAbortedButHistoryShowsACommitDecision_RefusesToGuess()
    {
        var (prepared, id) = Ours();
        var step = RecoveryPlanner.Plan(prepared, Us, new JournalDecision(id, "aborted", true), coordinatorLive: false, Old, TimeSpan.Zero);
        Assert.That((step.Verdict, step.Action), Is.EqualTo((JournalVerdict.Inconsistent, RecoveryAction.Leave)));
    }

    [Test]
    public void ThreePhasePreCommit_IsLeftToTheParticipantsTermination()
    {
        var (prepared, id) = Ours();
        var step = RecoveryPlanner.Plan(prepared, Us, new JournalDecision(id, "precommitting", false), coordinatorLive: false, Old, TimeSpan.Zero);
        Assert.That((step.Verdict, step.Action), Is.EqualTo((JournalVerdict.PreCommit, RecoveryAction.Leave)));
    }

    [TestCase("txc:c2:0123456789abcdef0123456789abcdef:bank-a", "OtherCoordinator")]
    [TestCase("00000000-0000-0000-0000-000000000000/1234", "UnknownGid")]
    [TestCase("txc:c1:not-a-guid:bank-a", "UnknownGid")]
    public void OtherCoordinatorsAndForeignGids_AreLeftAlone(string gid, string expected)
    {
        var verdict = Enum.Parse<JournalVerdict>(expected);
        var step = RecoveryPlanner.Plan(Prepared(gid), Us, null, coordinatorLive: false, Old, TimeSpan.Zero);
        Assert.That((step.Verdict, step.Action), Is.EqualTo((verdict, RecoveryAction.Leave)));
    }
}
