using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using static TxCoord.Tests.Unit.Engine.EngineKit;

namespace TxCoord.Tests.Unit.Engine;

public sealed class EngineRecoveryAndTerminalTests
{
    private static readonly DateTimeOffset Restart = T0.AddMinutes(5);

    private static Transition Recover(params ParticipantId[] acknowledged) =>
        Rules.Recover(Tx, new Recovered(CommitProtocol.TwoPhase, List(A, B), [.. acknowledged], T0, T0.AddSeconds(1)), Restart);

    [Test]
    public void Recovered_WithSomeAcknowledgements_IsCommittingAndResendsCommitToTheRest()
    {
        var transition = Recover(A);

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Committing));
            Assert.That(transition.State.CreatedAt, Is.EqualTo(T0));
            Assert.That(transition.State.DecidedAt, Is.EqualTo(T0.AddSeconds(1)));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendCommit(B) }));
            Assert.That(transition.State.NextDeadline, Is.EqualTo(Restart + Settings.RedriveInitialInterval));
        });
    }

    [Test]
    public void Recovered_WithNoAcknowledgements_ResendsCommitToEveryParticipant_AndRepliesToNobody()
    {
        var transition = Recover();

        Assert.Multiple(() =>
        {
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendCommit(A), new SendCommit(B) }));
            Assert.That(transition.Effects.OfType<ReplyToInitiator>(), Is.Empty);
        });
    }

    [Test]
    public void Recovered_WithEveryParticipantAcknowledged_CommitsAndRecordsTheEnd()
    {
        var transition = Recover(A, B);

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Committed));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new RecordEnd() }));
        });
    }

    [Test]
    public void Recovered_AcknowledgementOfAStranger_IsNotCounted()
    {
        var transition = Recover(Stranger);

        Assert.That(transition.State.UnacknowledgedYesVoters, Is.EqualTo(new[] { A, B }));
    }

    [Test]
    public void Recovered_ThenTheLastAcknowledgement_Commits()
    {
        var transition = Recover(A).Apply(new CommitAcknowledged(B), Restart);

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Committed));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new RecordEnd() }));
        });
    }

    [Test]
    public void Recovered_ThenNoAcknowledgement_IsRedrivenAtTheInitialInterval()
    {
        var transition = Recover(A).Apply(new Tick(), Restart + Settings.RedriveInitialInterval);

        Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendCommit(B) }));
    }

    [Test]
    public void Recovered_UnderAProtocolThisCoordinatorDoesNotRun_Throws()
    {
        var recovered = new Recovered((CommitProtocol)7, List(A), [], T0, T0);

        Assert.That(() => Rules.Recover(Tx, recovered, Restart), Throws.TypeOf<NotSupportedException>());
    }

    [Test]
    public void Committed_DuplicateCommitRequest_RepliesCommitted()
    {
        var transition = Committed().Apply(new CommitRequested(List(A, B, C), null));

        Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new ReplyToInitiator(TransactionOutcome.Committed, null) }));
    }

    [Test]
    public void Committed_RollbackRequest_RepliesCommitted()
    {
        var transition = Committed().Apply(new RollbackRequested(null));

        Assert.That(transition.Effects.OfType<ReplyToInitiator>().Single().Outcome, Is.EqualTo(TransactionOutcome.Committed));
    }

    [Test]
    public void Committed_LateYesVote_IsAnsweredWithCommit()
    {
        var transition = Committed().Apply(Yes(A));

        Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendCommit(A) }));
    }

    [Test]
    public void Aborted_DuplicateCommitOrRollbackRequest_RepliesAbortedWithTheReason()
    {
        var state = Aborted();

        var commit = state.Apply(new CommitRequested(List(A, B), null));
        var rollback = state.Apply(new RollbackRequested(null));

        Assert.Multiple(() =>
        {
            var expected = new TransactionEffect[] { new ReplyToInitiator(TransactionOutcome.Aborted, "participant bank-b voted No: constraint violated") };
            Assert.That(commit.Effects, Is.EqualTo(expected));
            Assert.That(rollback.Effects, Is.EqualTo(expected));
        });
    }

    [Test]
    public void Aborted_LateYesVote_IsAnsweredWithAbort()
    {
        var transition = Aborted().Apply(Yes(A));

        Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendAbort(A, "participant bank-b voted No: constraint violated") }));
    }

    [TestCaseSource(nameof(IgnoredWhenTerminal))]
    public void TerminalStates_IgnoreTicksAcknowledgementsAndJournalResults(object @event)
    {
        foreach (var before in new[] { Committed(), Aborted() })
        {
            var transition = before.Apply((TransactionEvent)@event, T0.AddDays(1));

            Assert.Multiple(() =>
            {
                Assert.That(before.IsTerminal, Is.True);
                Assert.That(before.NextDeadline, Is.Null);
                Assert.That(transition.State, Is.SameAs(before));
                Assert.That(transition.Effects, Is.Empty);
            });
        }
    }

    private static IEnumerable<TestCaseData> IgnoredWhenTerminal() =>
    [
        new TestCaseData(new Tick()).SetArgDisplayNames("Tick"),
        new TestCaseData(new CommitAcknowledged(A)).SetArgDisplayNames("CommitAcknowledged"),
        new TestCaseData(new AbortAcknowledged(A)).SetArgDisplayNames("AbortAcknowledged"),
        new TestCaseData(new DecisionDurable()).SetArgDisplayNames("DecisionDurable"),
        new TestCaseData(new DecisionWriteFailed("x")).SetArgDisplayNames("DecisionWriteFailed"),
        new TestCaseData(No(A)).SetArgDisplayNames("LateNo"),
        new TestCaseData(new AbortRecorded()).SetArgDisplayNames("LateAbortRecorded"),
        new TestCaseData(new AbortWriteFailed("x")).SetArgDisplayNames("LateAbortWriteFailed"),
    ];
}
