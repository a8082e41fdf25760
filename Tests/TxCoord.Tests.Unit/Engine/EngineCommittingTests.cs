using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using static TxCoord.Tests.Unit.Engine.EngineKit;

namespace TxCoord.Tests.Unit.Engine;

public sealed class EngineCommittingTests
{
    [Test]
    public void FirstOfTwoCommitAcknowledgements_RecordsTheAckAndStaysCommitting()
    {
        var transition = Committing().Apply(new CommitAcknowledged(A));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Committing));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new RecordAck(A) }));
            Assert.That(transition.State.UnacknowledgedYesVoters, Is.EqualTo(new[] { B }));
        });
    }

    [Test]
    public void LastCommitAcknowledgement_CommitsAndRecordsTheEnd()
    {
        var transition = Committing().Apply(new CommitAcknowledged(B)).Apply(new CommitAcknowledged(A), T0.AddSeconds(3));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Committed));
            Assert.That(transition.State.EndedAt, Is.EqualTo(T0.AddSeconds(3)));
            Assert.That(transition.State.NextDeadline, Is.Null);
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new RecordEnd() }));
        });
    }

    [Test]
    public void DuplicateCommitAcknowledgement_IsHarmless()
    {
        var once = Committing().Apply(new CommitAcknowledged(A));

        var twice = once.Apply(new CommitAcknowledged(A));

        Assert.Multiple(() =>
        {
            Assert.That(twice.State, Is.SameAs(once.State));
            Assert.That(twice.Effects, Is.Empty);
        });
    }

    [Test]
    public void CommitAcknowledgementFromAReadOnlyVoterOrAStranger_IsIgnored()
    {
        var before = Committing();

        var fromReadOnly = before.Apply(new CommitAcknowledged(C));
        var fromStranger = before.Apply(new CommitAcknowledged(Stranger));

        Assert.Multiple(() =>
        {
            Assert.That(fromReadOnly.State, Is.SameAs(before));
            Assert.That(fromReadOnly.Effects, Is.Empty);
            Assert.That(fromStranger.State, Is.SameAs(before));
            Assert.That(fromStranger.Effects, Is.Empty);
        });
    }

    [Test]
    public void TickBeforeTheRedriveIsDue_DoesNothing()
    {
        var before = Committing();

        var transition = before.Apply(new Tick(), T0 + Settings.RedriveInitialInterval - TimeSpan.FromTicks(1));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State, Is.SameAs(before));
            Assert.That(transition.Effects, Is.Empty);
        });
    }

    [Test]
    public void TickWhenTheRedriveIsDue_ResendsCommitOnlyToParticipantsThatHaveNotAcknowledged()
    {
        var state = Committing().Apply(new CommitAcknowledged(A)).State;

        var transition = state.Apply(new Tick(), T0 + Settings.RedriveInitialInterval);

        Assert.Multiple(() =>
        {
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendCommit(B) }));
            Assert.That(transition.State.Redrives, Is.EqualTo(1));
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Committing));
        });
    }

    [Test]
    public void Redrives_BackOffDoublingUpToTheMaximum_AndNeverGiveUp()
    {
        var state = Committing();
        var now = T0;
        var waits = new List<double>();
        for (var redrive = 0; redrive < 20; redrive++)
        {
            var due = state.NextDeadline!.Value;
            waits.Add((due - now).TotalSeconds);
            now = due;
            var transition = state.Apply(new Tick(), now);
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendCommit(A), new SendCommit(B) }));
            state = transition.State;
        }

        Assert.Multiple(() =>
        {
            Assert.That(waits.Take(6), Is.EqualTo(new double[] { 1, 2, 4, 8, 8, 8 }));
            Assert.That(waits.Max(), Is.EqualTo(Settings.RedriveMaxInterval.TotalSeconds));
            Assert.That(state.Phase, Is.EqualTo(TransactionPhase.Committing));
            Assert.That(state.Redrives, Is.EqualTo(20));
        });
    }

    [Test]
    public void DuplicateCommitRequest_WhileCommitting_RepliesCommitted()
    {
        var transition = Committing().Apply(new CommitRequested(List(A, B, C), null));

        Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new ReplyToInitiator(TransactionOutcome.Committed, null) }));
    }

    [Test]
    public void RollbackRequested_WhileCommitting_IsTooLateAndRepliesCommitted()
    {
        var before = Committing();

        var transition = before.Apply(new RollbackRequested("please"));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State, Is.SameAs(before));
            Assert.That(transition.Effects, Has.Exactly(1).Items);
            var reply = (ReplyToInitiator)transition.Effects[0];
            Assert.That(reply.Outcome, Is.EqualTo(TransactionOutcome.Committed));
            Assert.That(reply.Reason, Does.Contain("already decided commit"));
        });
    }

    [Test]
    public void RepeatedYesVoteFromAParticipantStillWaiting_ResendsItsCommitAtOnce()
    {
        var transition = Committing().Apply(Yes(B));

        Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendCommit(B) }));
    }

    [Test]
    public void RepeatedYesVoteFromAParticipantThatAcknowledged_IsIgnored()
    {
        var state = Committing().Apply(new CommitAcknowledged(A)).State;

        Assert.That(state.Apply(Yes(A)).Effects, Is.Empty);
    }

    [TestCaseSource(nameof(IrrelevantWhileCommitting))]
    public void StaleEvents_WhileCommitting_AreIgnored(object @event)
    {
        var before = Committing();

        var transition = before.Apply((TransactionEvent)@event);

        Assert.Multiple(() =>
        {
            Assert.That(transition.State, Is.SameAs(before));
            Assert.That(transition.Effects, Is.Empty);
        });
    }

    private static IEnumerable<TestCaseData> IrrelevantWhileCommitting() =>
    [
        new TestCaseData(new DecisionDurable()).SetArgDisplayNames("DuplicateDecisionDurable"),
        new TestCaseData(new DecisionWriteFailed("late")).SetArgDisplayNames("StaleDecisionWriteFailed"),
        new TestCaseData(new AbortAcknowledged(A)).SetArgDisplayNames("AbortAcknowledged"),
        new TestCaseData(No(A)).SetArgDisplayNames("LateNo"),
        new TestCaseData(ReadOnly(C)).SetArgDisplayNames("DuplicateReadOnly"),
    ];
}
