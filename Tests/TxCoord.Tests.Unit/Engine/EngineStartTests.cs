using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using static TxCoord.Tests.Unit.Engine.EngineKit;

namespace TxCoord.Tests.Unit.Engine;

public sealed class EngineStartTests
{
    [Test]
    public void CommitRequested_WithTwoParticipants_SendsPrepareToEachAndIsPreparing()
    {
        var transition = Begin(A, B);

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Preparing));
            Assert.That(transition.State.TransactionId, Is.EqualTo(Tx));
            Assert.That(transition.State.Participants, Is.EqualTo(new[] { A, B }));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendPrepare(A), new SendPrepare(B) }));
        });
    }

    [Test]
    public void CommitRequested_WithDeadline_VoteDeadlineIsNowPlusVoteTimeoutAndTransactionDeadlineIsTheRequested()
    {
        var state = Begin(T0.AddSeconds(30), A).State;

        Assert.Multiple(() =>
        {
            Assert.That(state.CreatedAt, Is.EqualTo(T0));
            Assert.That(state.VoteDeadline, Is.EqualTo(T0 + Settings.VoteTimeout));
            Assert.That(state.TransactionDeadline, Is.EqualTo(T0.AddSeconds(30)));
            Assert.That(state.NextDeadline, Is.EqualTo(T0 + Settings.VoteTimeout));
        });
    }

    [Test]
    public void CommitRequested_WithoutDeadline_TransactionDeadlineIsNowPlusDefaultTimeout()
    {
        var state = Begin(A).State;

        Assert.That(state.TransactionDeadline, Is.EqualTo(T0 + Settings.DefaultTransactionTimeout));
    }

    [Test]
    public void CommitRequested_WithDeadlineBeforeVoteTimeout_NextDeadlineIsTheTransactionDeadline()
    {
        var state = Begin(T0.AddSeconds(3), A).State;

        Assert.That(state.NextDeadline, Is.EqualTo(T0.AddSeconds(3)));
    }

    [Test]
    public void CommitRequested_WithDeadlineAlreadyPassed_AbortsAtOnceWithoutPreparing()
    {
        var aborting = Begin(T0, A, B);
        var aborted = aborting.ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(aborting.Effects, Is.EqualTo(new TransactionEffect[] { new RecordAbort(aborting.State.Reason!) }), "no prepare: only the abort row");
            Assert.That(aborted.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(aborted.Effects.OfType<SendPrepare>(), Is.Empty);
            Assert.That(aborted.Effects.OfType<SendAbort>().Select(e => e.Participant), Is.EqualTo(new[] { A, B }));
            Assert.That(aborted.Effects.OfType<ReplyToInitiator>().Single().Outcome, Is.EqualTo(TransactionOutcome.Aborted));
            Assert.That(aborted.Effects.OfType<RecordAbort>(), Is.Empty, "the row was written before");
            Assert.That(aborted.State.Reason, Does.Contain("deadline"));
        });
    }

    [Test]
    public void CommitRequested_NamingAParticipantTwice_PreparesItOnce()
    {
        var transition = Begin(A, B, A);

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Participants, Is.EqualTo(new[] { A, B }));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendPrepare(A), new SendPrepare(B) }));
        });
    }

    [Test]
    public void CommitRequested_WithNoParticipants_CommitsAtOnceWithoutForcedWrite()
    {
        var transition = Begin();

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Committed));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[]
            {
                new ReplyToInitiator(TransactionOutcome.Committed, null), new RecordEnd(),
            }));
        });
    }

    [Test]
    public void CommitRequested_NamingAnInvalidParticipantId_AbortsTellingOnlyTheValidParticipants()
    {
        var invalid = new ParticipantId("bad'; DROP TABLE x; --");

        var transition = Begin(A, invalid).ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(transition.Effects.OfType<SendPrepare>(), Is.Empty);
            Assert.That(transition.Effects.OfType<SendAbort>().Select(e => e.Participant), Is.EqualTo(new[] { A }));
            Assert.That(transition.Effects.OfType<ReplyToInitiator>().Single().Reason, Does.Contain("invalid participant id"));
        });
    }

    [Test]
    public void CommitRequested_WithNullParticipantId_AbortsAsInvalid()
    {
        var transition = Begin(A, default).ThenAbortRecorded();

        Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
    }

    [Test]
    public void CommitRequested_ForAProtocolThisCoordinatorDoesNotRun_AbortsWithTheReason()
    {
        var transition = Rules.Begin(Tx, (CommitProtocol)7, new CommitRequested(List(A, B), null), T0).ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(Rules.Supports((CommitProtocol)7), Is.False);
            Assert.That(Rules.Supports(CommitProtocol.ThreePhase), Is.True);
            Assert.That(Rules.Supports(CommitProtocol.TwoPhase), Is.True);
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(transition.Effects.OfType<SendAbort>().Select(e => e.Participant), Is.EqualTo(new[] { A, B }));
            Assert.That(transition.Effects.OfType<ReplyToInitiator>().Single().Reason, Does.Contain("protocol 7 is not supported"));
        });
    }

    [Test]
    public void AbortUnknown_WritesTheAbortRowFirst_ThenTellsEveryValidNamedParticipantOnceAndRepliesAborted()
    {
        var aborting = TransactionEngine.AbortUnknown(Tx, CommitProtocol.TwoPhase, [A, B, A, new ParticipantId("no good")], "rollback requested", T0);
        var aborted = aborting.ThenAbortRecorded(T0.AddSeconds(1));

        Assert.Multiple(() =>
        {
            Assert.That(aborting.State.Phase, Is.EqualTo(TransactionPhase.Aborting));
            Assert.That(aborting.State.EndedAt, Is.Null);
            Assert.That(aborting.Effects, Is.EqualTo(new TransactionEffect[] { new RecordAbort("rollback requested") }));
            Assert.That(aborted.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(aborted.State.EndedAt, Is.EqualTo(T0.AddSeconds(1)));
            Assert.That(aborted.State.NextDeadline, Is.Null);
            Assert.That(aborted.Effects, Is.EqualTo(new TransactionEffect[]
            {
                new SendAbort(A, "rollback requested"),
                new SendAbort(B, "rollback requested"),
                new ReplyToInitiator(TransactionOutcome.Aborted, "rollback requested"),
            }));
        });
    }

    [Test]
    public void NextInterval_DoublesAndIsCappedAtTheMaximum()
    {
        var intervals = new List<TimeSpan>();
        var interval = Settings.RedriveInitialInterval;
        for (var i = 0; i < 6; i++)
        {
            intervals.Add(interval);
            interval = Settings.NextInterval(interval);
        }

        Assert.That(intervals.Select(i => i.TotalSeconds), Is.EqualTo(new double[] { 1, 2, 4, 8, 8, 8 }));
    }

    [Test]
    public void NextInterval_OfAHugeInterval_DoesNotOverflow()
    {
        var settings = Settings with { RedriveMaxInterval = TimeSpan.MaxValue };

        Assert.That(settings.NextInterval(TimeSpan.MaxValue - TimeSpan.FromTicks(1)), Is.EqualTo(TimeSpan.MaxValue));
    }
}
