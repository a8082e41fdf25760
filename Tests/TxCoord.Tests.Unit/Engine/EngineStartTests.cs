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
        var transition = Begin(T0, A, B);

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(transition.Effects.OfType<SendPrepare>(), Is.Empty);
            Assert.That(transition.Effects.OfType<SendAbort>().Select(e => e.Participant), Is.EqualTo(new[] { A, B }));
            Assert.That(transition.Effects.OfType<ReplyToInitiator>().Single().Outcome, Is.EqualTo(TransactionOutcome.Aborted));
            Assert.That(transition.Effects.OfType<RecordAbort>(), Has.Exactly(1).Items);
            Assert.That(transition.State.Reason, Does.Contain("deadline"));
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

        var transition = Begin(A, invalid);

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
        var transition = Begin(A, default);

        Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
    }

    [Test]
    public void CommitRequested_ForAProtocolThisCoordinatorDoesNotRun_AbortsWithTheReason()
    {
        var transition = Rules.Begin(Tx, (CommitProtocol)7, new CommitRequested(List(A, B), null), T0);

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
    public void AbortUnknown_TellsEveryNamedParticipantRepliesAbortedAndRecordsTheAbort()
    {
        var transition = TransactionEngine.AbortUnknown(Tx, CommitProtocol.TwoPhase, [A, B, A, new ParticipantId("no good")], "rollback requested", T0);

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(transition.State.EndedAt, Is.EqualTo(T0));
            Assert.That(transition.State.NextDeadline, Is.Null);
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[]
            {
                new SendAbort(A, "rollback requested"),
                new SendAbort(B, "rollback requested"),
                new ReplyToInitiator(TransactionOutcome.Aborted, "rollback requested"),
                new RecordAbort("rollback requested"),
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
