using System.Collections.Immutable;
using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using static TxCoord.Tests.Unit.Engine.EngineKit;

namespace TxCoord.Tests.Unit.Engine;

/// <summary>
/// Early prepare: the commit request names participants whose Yes votes the initiator relays
/// (their branches prepared right after their work); they get no PrepareBranch.
/// </summary>
public sealed class EngineEarlyPrepareTests
{
    private static Transition BeginEarly(ImmutableArray<ParticipantId> participants, ImmutableArray<ParticipantId> prepared, CommitProtocol protocol = CommitProtocol.TwoPhase) =>
        Rules.Begin(Tx, protocol, new CommitRequested(participants, null, prepared), T0);

    [Test]
    public void CommitRequested_EveryParticipantPrepared_ForcesTheDecisionAtOnceWithoutPrepare()
    {
        var transition = BeginEarly(List(A, B), List(A, B));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Deciding));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new ForceCommitDecision() }));
            Assert.That(transition.State.YesVoters, Is.EquivalentTo(new[] { A, B }));
        });
    }

    [Test]
    public void CommitRequested_EveryParticipantPrepared_DecisionDurable_CommitsBothAndAnswersCommitted()
    {
        var committing = BeginEarly(List(A, B), List(A, B)).Apply(new DecisionDurable());

        Assert.Multiple(() =>
        {
            Assert.That(committing.State.Phase, Is.EqualTo(TransactionPhase.Committing));
            Assert.That(committing.Effects.OfType<ReplyToInitiator>().Single().Outcome, Is.EqualTo(TransactionOutcome.Committed));
            Assert.That(committing.Effects.OfType<SendCommit>().Select(e => e.Participant), Is.EquivalentTo(new[] { A, B }));
        });
    }

    [Test]
    public void CommitRequested_OneOfTwoPrepared_SendsPrepareOnlyToTheOther()
    {
        var transition = BeginEarly(List(A, B), List(A));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Preparing));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendPrepare(B) }));
            Assert.That(transition.State.NotVoted, Is.EqualTo(new[] { B }));
        });
    }

    [Test]
    public void CommitRequested_OneOfTwoPrepared_OtherVotesYes_ForcesTheDecision()
    {
        var deciding = BeginEarly(List(A, B), List(A)).Apply(Yes(B));

        Assert.Multiple(() =>
        {
            Assert.That(deciding.State.Phase, Is.EqualTo(TransactionPhase.Deciding));
            Assert.That(deciding.Effects, Is.EqualTo(new TransactionEffect[] { new ForceCommitDecision() }));
        });
    }

    [Test]
    public void CommitRequested_OneOfTwoPrepared_OtherVotesNo_AbortsAndTellsBothToAbort()
    {
        var aborted = BeginEarly(List(A, B), List(A)).Apply(No(B, "constraint")).ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(aborted.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(aborted.Effects.OfType<SendAbort>().Select(e => e.Participant), Is.EquivalentTo(new[] { A, B }), "the early-prepared branch rolls back too");
            Assert.That(aborted.Effects.OfType<ReplyToInitiator>().Single().Outcome, Is.EqualTo(TransactionOutcome.Aborted));
        });
    }

    [Test]
    public void CommitRequested_PreparedVoteRepeatedByThePreparedParticipant_IsIgnoredWhilePreparing()
    {
        var preparing = BeginEarly(List(A, B), List(A));
        var again = preparing.Apply(Yes(A));

        Assert.Multiple(() =>
        {
            Assert.That(again.State.Phase, Is.EqualTo(TransactionPhase.Preparing));
            Assert.That(again.Effects, Is.Empty);
            Assert.That(again.State.NotVoted, Is.EqualTo(new[] { B }));
        });
    }

    [Test]
    public void CommitRequested_PreparedParticipantNotAmongParticipants_AbortsEveryoneNamed()
    {
        var aborting = BeginEarly(List(A), List(A, B));
        var aborted = aborting.ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(aborting.State.Reason, Does.Contain("bank-b").And.Contain("not among"));
            Assert.That(aborted.Effects.OfType<SendPrepare>(), Is.Empty);
            Assert.That(aborted.Effects.OfType<SendAbort>().Select(e => e.Participant), Is.EquivalentTo(new[] { A, B }));
            Assert.That(aborted.Effects.OfType<ReplyToInitiator>().Single().Outcome, Is.EqualTo(TransactionOutcome.Aborted));
        });
    }

    [Test]
    public void CommitRequested_PreparedWithThreePhase_IsRefusedAsTwoPhaseOnly()
    {
        var aborting = BeginEarly(List(A, B), List(A, B), CommitProtocol.ThreePhase);
        var aborted = aborting.ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(aborting.State.Reason, Does.Contain("2PC only"));
            Assert.That(aborted.Effects.OfType<SendAbort>().Select(e => e.Participant), Is.EquivalentTo(new[] { A, B }));
            Assert.That(aborted.Effects.OfType<ReplyToInitiator>().Single().Outcome, Is.EqualTo(TransactionOutcome.Aborted));
        });
    }

    [Test]
    public void CommitRequested_AllPreparedButDeadlinePassed_AbortsWithoutDeciding()
    {
        var aborting = Rules.Begin(Tx, CommitProtocol.TwoPhase, new CommitRequested(List(A, B), T0, List(A, B)), T0);

        Assert.Multiple(() =>
        {
            Assert.That(aborting.State.Phase, Is.EqualTo(TransactionPhase.Aborting));
            Assert.That(aborting.Effects.OfType<ForceCommitDecision>(), Is.Empty);
        });
    }

    [Test]
    public void DuplicateCommitRequested_WhileDecidingAfterEarlyPrepare_ChangesNothing()
    {
        var deciding = BeginEarly(List(A, B), List(A, B));
        var duplicate = deciding.Apply(new CommitRequested(List(A, B), null, List(A, B)));

        Assert.Multiple(() =>
        {
            Assert.That(duplicate.State.Phase, Is.EqualTo(TransactionPhase.Deciding));
            Assert.That(duplicate.Effects, Is.Empty, "no second decision write, no prepare");
        });
    }
}
