using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using static TxCoord.Tests.Unit.Engine.EngineKit;

namespace TxCoord.Tests.Unit.Engine;

public sealed class EnginePreparingTests
{
    [Test]
    public void FirstOfTwoYesVotes_StaysPreparingWithNoEffects()
    {
        var transition = Begin(A, B).Apply(Yes(A));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Preparing));
            Assert.That(transition.Effects, Is.Empty);
            Assert.That(transition.State.NotVoted, Is.EqualTo(new[] { B }));
        });
    }

    [Test]
    public void AllYes_ForcesTheCommitDecisionAndSendsNoCommitAndNoReplyYet()
    {
        var transition = Begin(A, B).Apply(Yes(A)).Apply(Yes(B), T0.AddSeconds(1));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Deciding));
            Assert.That(transition.State.DecidedAt, Is.EqualTo(T0.AddSeconds(1)));
            Assert.That(transition.State.DecisionWriteAttempts, Is.EqualTo(1));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new ForceCommitDecision() }));
        });
    }

    [Test]
    public void YesAndReadOnly_ForcesTheDecisionWithOnlyTheYesVoterNeedingPhase2()
    {
        var transition = Begin(A, B).Apply(ReadOnly(B)).Apply(Yes(A));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Deciding));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new ForceCommitDecision() }));
            Assert.That(transition.State.YesVoters, Is.EqualTo(new[] { A }));
        });
    }

    [Test]
    public void AllReadOnly_ForcesTheDecisionBeforeReplyingCommitted()
    {
        // The initiator told Committed may ask GetOutcome later: a row written unforced and lost in
        // a crash of the journal's server would be answered Aborted by presumption.
        var transition = Begin(A, B).Apply(ReadOnly(A)).Apply(ReadOnly(B));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Deciding));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new ForceCommitDecision() }));
        });
    }

    [Test]
    public void AllReadOnly_DecisionDurable_RepliesCommittedAndRecordsTheEnd_SendingNothing()
    {
        var transition = Begin(A, B).Apply(ReadOnly(A)).Apply(ReadOnly(B)).Apply(new DecisionDurable());

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Committed));
            Assert.That(transition.State.IsTerminal, Is.True);
            Assert.That(transition.State.NextDeadline, Is.Null);
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[]
            {
                new ReplyToInitiator(TransactionOutcome.Committed, null), new RecordEnd(),
            }));
        });
    }

    [Test]
    public void NoVote_WritesTheAbortRowUnforcedFirst_ThenTellsEveryParticipantAndRepliesAborted()
    {
        var aborting = Begin(A, B).Apply(No(B, "constraint violated"), T0.AddSeconds(2));
        var aborted = aborting.ThenAbortRecorded(T0.AddSeconds(3));
        const string reason = "participant bank-b voted No: constraint violated";

        Assert.Multiple(() =>
        {
            Assert.That(aborting.State.Phase, Is.EqualTo(TransactionPhase.Aborting));
            Assert.That(aborting.State.Reason, Is.EqualTo(reason));
            Assert.That(aborting.State.EndedAt, Is.Null, "not ended before the abort row exists");
            Assert.That(aborting.State.AbortWriteAttempts, Is.EqualTo(1));
            Assert.That(aborting.Effects, Is.EqualTo(new TransactionEffect[] { new RecordAbort(reason, AfterPreCommit: false) }));

            Assert.That(aborted.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(aborted.State.IsTerminal, Is.True);
            Assert.That(aborted.State.NextDeadline, Is.Null);
            Assert.That(aborted.State.Reason, Is.EqualTo(reason));
            Assert.That(aborted.State.EndedAt, Is.EqualTo(T0.AddSeconds(3)), "ended when the abort row was recorded");
            Assert.That(aborted.Effects, Is.EqualTo(new TransactionEffect[]
            {
                new SendAbort(A, reason),
                new SendAbort(B, reason),
                new ReplyToInitiator(TransactionOutcome.Aborted, reason),
            }));
        });
    }

    [Test]
    public void NoVoteWithoutReason_AbortsNamingTheParticipant()
    {
        var transition = Begin(A, B).Apply(No(A));

        Assert.That(transition.State.Reason, Is.EqualTo("participant bank-a voted No"));
    }

    [Test]
    public void NoVoteAfterAYes_AbortsAndTellsTheYesVoterToo()
    {
        var transition = Begin(A, B).Apply(Yes(A)).Apply(No(B)).ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(transition.Effects.OfType<SendAbort>().Select(e => e.Participant), Is.EqualTo(new[] { A, B }));
        });
    }

    [Test]
    public void DuplicateYesVote_IsHarmless()
    {
        var once = Begin(A, B).Apply(Yes(A));
        var twice = once.Apply(Yes(A));

        Assert.Multiple(() =>
        {
            Assert.That(twice.Effects, Is.Empty);
            Assert.That(twice.State, Is.SameAs(once.State));
        });
    }

    [Test]
    public void NoAfterOwnYes_IsIgnored_TheFirstVoteCounts()
    {
        var transition = Begin(A, B).Apply(Yes(A)).Apply(No(A));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Preparing));
            Assert.That(transition.Effects, Is.Empty);
            Assert.That(transition.State.Votes[A], Is.EqualTo(Vote.Yes));
        });
    }

    [Test]
    public void VoteFromAParticipantNotInTheList_IsIgnored()
    {
        var before = Begin(A).State;

        var yes = before.Apply(Yes(Stranger));
        var no = before.Apply(No(Stranger));

        Assert.Multiple(() =>
        {
            Assert.That(yes.State, Is.SameAs(before));
            Assert.That(yes.Effects, Is.Empty);
            Assert.That(no.State, Is.SameAs(before));
            Assert.That(no.Effects, Is.Empty);
        });
    }

    [Test]
    public void TickBeforeTheVoteDeadline_DoesNothing()
    {
        var before = Begin(A, B).State;

        var transition = before.Apply(new Tick(), T0 + Settings.VoteTimeout - TimeSpan.FromTicks(1));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State, Is.SameAs(before));
            Assert.That(transition.Effects, Is.Empty);
        });
    }

    [Test]
    public void TickAtTheVoteDeadline_AbortsWithVoteTimeoutNamingTheSilentParticipants()
    {
        const string reason = "vote timeout; no vote from bank-b, audit-c";
        var aborting = Begin(A, B, C).Apply(Yes(A)).Apply(new Tick(), T0 + Settings.VoteTimeout);
        var aborted = aborting.ThenAbortRecorded(T0 + Settings.VoteTimeout);

        Assert.Multiple(() =>
        {
            Assert.That(aborting.State.Reason, Is.EqualTo(reason));
            Assert.That(aborting.Effects, Is.EqualTo(new TransactionEffect[] { new RecordAbort(reason) }));
            Assert.That(aborted.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(aborted.Effects.OfType<SendAbort>().Select(e => e.Participant), Is.EqualTo(new[] { A, B, C }));
            Assert.That(aborted.Effects.OfType<ReplyToInitiator>().Single(), Is.EqualTo(new ReplyToInitiator(TransactionOutcome.Aborted, reason)));
            Assert.That(aborted.Effects.OfType<RecordAbort>(), Is.Empty, "the row was written before");
        });
    }

    [Test]
    public void TickAtTheTransactionDeadlineBeforeTheVoteDeadline_AbortsWithTheDeadlineReason()
    {
        var transition = Begin(T0.AddSeconds(3), A, B).Apply(new Tick(), T0.AddSeconds(3)).ThenAbortRecorded(T0.AddSeconds(3));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(transition.State.Reason, Does.StartWith("transaction deadline passed"));
        });
    }

    [Test]
    public void RollbackRequested_AbortsWithTheInitiatorsReason()
    {
        const string reason = "rollback requested: user cancelled";
        var aborting = Begin(A, B).Apply(Yes(A)).Apply(new RollbackRequested("user cancelled"));
        var aborted = aborting.ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(aborting.Effects, Is.EqualTo(new TransactionEffect[] { new RecordAbort(reason) }));
            Assert.That(aborted.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(aborted.Effects, Is.EqualTo(new TransactionEffect[]
            {
                new SendAbort(A, reason),
                new SendAbort(B, reason),
                new ReplyToInitiator(TransactionOutcome.Aborted, reason),
            }));
        });
    }

    [Test]
    public void RollbackRequestedWithoutReason_AbortsWithADefaultReason()
    {
        var transition = Begin(A).Apply(new RollbackRequested(null));

        Assert.That(transition.State.Reason, Is.EqualTo("rollback requested by the initiator"));
    }

    [Test]
    public void DuplicateCommitRequest_WhilePreparing_HasNoEffect_TheAnswerComesWithTheOutcome()
    {
        var before = Begin(A, B).State;

        var transition = before.Apply(new CommitRequested(List(A, B), null));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State, Is.SameAs(before));
            Assert.That(transition.Effects, Is.Empty);
        });
    }

    [TestCaseSource(nameof(IrrelevantWhilePreparing))]
    public void AcknowledgementsAndJournalResults_WhilePreparing_AreIgnored(object @event)
    {
        var before = Begin(A, B).Apply(Yes(A)).State;

        var transition = before.Apply((TransactionEvent)@event);

        Assert.Multiple(() =>
        {
            Assert.That(transition.State, Is.SameAs(before));
            Assert.That(transition.Effects, Is.Empty);
        });
    }

    private static IEnumerable<TestCaseData> IrrelevantWhilePreparing() =>
    [
        new TestCaseData(new CommitAcknowledged(A)).SetArgDisplayNames("CommitAcknowledged"),
        new TestCaseData(new AbortAcknowledged(A)).SetArgDisplayNames("AbortAcknowledged"),
        new TestCaseData(new DecisionDurable()).SetArgDisplayNames("DecisionDurable"),
        new TestCaseData(new DecisionWriteFailed("boom")).SetArgDisplayNames("DecisionWriteFailed"),
        new TestCaseData(new AbortRecorded()).SetArgDisplayNames("AbortRecorded"),
        new TestCaseData(new AbortWriteFailed("boom")).SetArgDisplayNames("AbortWriteFailed"),
    ];
}
