using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using TxCoord.Coordinator.Journal;
using static TxCoord.Tests.Unit.Engine.EngineKit;

namespace TxCoord.Tests.Unit.Engine;

/// <summary>
/// The abort row comes first: nobody hears "abort" before the journal holds it (finding 1 of the
/// 2PC model in Coordinator/models). The engine's Aborting phase, then the driver over the fakes.
/// </summary>
public sealed class EngineAbortingTests
{
    private const string Reason = "participant bank-b voted No: constraint violated";

    private static Transition Aborting() => Begin(A, B).Apply(Yes(A)).Apply(No(B, "constraint violated"), T0.AddSeconds(1));

    [Test]
    public void Abort_WritesOnlyTheRowFirst_AndTheOutcomeIsNotYetTerminal()
    {
        var aborting = Aborting();

        Assert.Multiple(() =>
        {
            Assert.That(aborting.State.Phase, Is.EqualTo(TransactionPhase.Aborting));
            Assert.That(aborting.State.IsTerminal, Is.False);
            Assert.That(aborting.State.Reason, Is.EqualTo(Reason));
            Assert.That(aborting.State.EndedAt, Is.Null);
            Assert.That(aborting.Effects, Is.EqualTo(new TransactionEffect[] { new RecordAbort(Reason) }));
        });
    }

    [Test]
    public void AbortRecorded_ThenEveryParticipantIsToldAndTheInitiatorAnswered()
    {
        var aborted = Aborting().Apply(new AbortRecorded(), T0.AddSeconds(2));

        Assert.Multiple(() =>
        {
            Assert.That(aborted.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(aborted.State.EndedAt, Is.EqualTo(T0.AddSeconds(2)));
            Assert.That(aborted.Effects, Is.EqualTo(new TransactionEffect[]
            {
                new SendAbort(A, Reason), new SendAbort(B, Reason), new ReplyToInitiator(TransactionOutcome.Aborted, Reason),
            }));
        });
    }

    [TestCaseSource(nameof(WaitingEvents))]
    public void WhileTheRowIsBeingWritten_RequestsVotesAndAcknowledgementsChangeNothing(object @event)
    {
        var aborting = Aborting().State;

        var transition = aborting.Apply((TransactionEvent)@event, T0.AddSeconds(2));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State, Is.EqualTo(aborting));
            Assert.That(transition.Effects, Is.Empty);
        });
    }

    private static IEnumerable<TestCaseData> WaitingEvents() =>
    [
        new TestCaseData(new CommitRequested(List(A, B), null)).SetArgDisplayNames("CommitRequested"),
        new TestCaseData(new RollbackRequested("again")).SetArgDisplayNames("RollbackRequested"),
        new TestCaseData(Yes(A)).SetArgDisplayNames("RepeatedYes"),
        new TestCaseData(new AbortAcknowledged(A)).SetArgDisplayNames("AbortAcknowledged"),
        new TestCaseData(new DecisionDurable()).SetArgDisplayNames("DecisionDurable"),
        new TestCaseData(new Tick()).SetArgDisplayNames("TickWithNoRetryDue"),
    ];

    [Test]
    public void AbortWriteFailed_IsRetriedWithBackOff_NeverGivenUpAndNothingToldMeanwhile()
    {
        var failed = Aborting().Apply(new AbortWriteFailed("timeout"), T0.AddSeconds(2));
        Assert.Multiple(() =>
        {
            Assert.That(failed.State.Phase, Is.EqualTo(TransactionPhase.Aborting));
            Assert.That(failed.Effects, Is.Empty);
            Assert.That(failed.State.RetryAt, Is.EqualTo(T0.AddSeconds(2) + Settings.RedriveInitialInterval));
            Assert.That(failed.State.NextDeadline, Is.EqualTo(failed.State.RetryAt));
        });

        var early = failed.Apply(new Tick(), T0.AddSeconds(2.5));
        Assert.That(early.Effects, Is.Empty, "not before its back-off");

        var retried = failed.Apply(new Tick(), T0.AddSeconds(3));
        Assert.Multiple(() =>
        {
            Assert.That(retried.Effects, Is.EqualTo(new TransactionEffect[] { new RecordAbort(Reason) }));
            Assert.That(retried.State.AbortWriteAttempts, Is.EqualTo(2));
            Assert.That(retried.State.RetryAt, Is.Null, "no second retry while a write is in flight");
        });

        var failedAgain = retried.Apply(new AbortWriteFailed("timeout"), T0.AddSeconds(4));
        Assert.That(failedAgain.State.RetryAt, Is.EqualTo(T0.AddSeconds(4) + Settings.RedriveInitialInterval * 2), "the back-off doubles");
    }

    [Test]
    public void AbortAfterPreCommit_EveryRetryStillReplacesThePreCommitRow()
    {
        var aborting = TransactionEngine.Abort(Begin(A, B).State with { Protocol = CommitProtocol.ThreePhase }, "decided abort", T0, afterPreCommit: true);

        var retried = aborting.Apply(new AbortWriteFailed("lost connection"), T0).Apply(new Tick(), T0 + Settings.RedriveInitialInterval);

        Assert.Multiple(() =>
        {
            Assert.That(aborting.Effects, Is.EqualTo(new TransactionEffect[] { new RecordAbort("decided abort", AfterPreCommit: true) }));
            Assert.That(retried.Effects, Is.EqualTo(new TransactionEffect[] { new RecordAbort("decided abort", AfterPreCommit: true) }));
        });
    }

    [Test]
    public void CommitDecisionFoundInsteadOfTheAbortRow_IsFinished_AndTheInitiatorToldCommitted()
    {
        var row = new Recovered(CommitProtocol.TwoPhase, List(A, B), List(A), T0, T0.AddSeconds(1));

        var resumed = Aborting().Apply(new JournalHoldsDecision(row), T0.AddSeconds(2));

        Assert.Multiple(() =>
        {
            Assert.That(resumed.State.Phase, Is.EqualTo(TransactionPhase.Committing));
            Assert.That(resumed.Effects, Is.EqualTo(new TransactionEffect[]
            {
                new SendCommit(B), new ReplyToInitiator(TransactionOutcome.Committed, TransactionEngine.CommitFoundInJournal),
            }));
            Assert.That(resumed.Effects.OfType<SendAbort>(), Is.Empty);
        });
    }

    [Test]
    public void PreCommitFoundInsteadOfTheAbortRow_ResumesPreCommitting_WithoutAnsweringYet()
    {
        var aborting = TransactionEngine.Abort(Begin(A, B, C).State with { Protocol = CommitProtocol.ThreePhase }, "deadline", T0);
        var row = new Recovered(CommitProtocol.ThreePhase, List(A, B, C), [], T0, T0, TransactionPhase.PreCommitting);

        var resumed = aborting.Apply(new JournalHoldsDecision(row), T0.AddSeconds(1));

        Assert.Multiple(() =>
        {
            Assert.That(resumed.State.Phase, Is.EqualTo(TransactionPhase.PreCommitting));
            Assert.That(resumed.Effects.OfType<SendPreCommit>().Select(e => e.Participant), Is.EqualTo(new[] { A, B, C }));
            Assert.That(resumed.Effects.OfType<ReplyToInitiator>(), Is.Empty);
            Assert.That(resumed.Effects.OfType<SendAbort>(), Is.Empty);
        });
    }

    [Test]
    public void CommitDecisionRefusedBecauseTheJournalSaysAborted_Aborts_InsteadOfRetryingForever()
    {
        var refused = Deciding().Apply(new DecisionRefused("row says aborted"), T0.AddSeconds(1));

        Assert.Multiple(() =>
        {
            Assert.That(refused.State.Phase, Is.EqualTo(TransactionPhase.Aborting));
            Assert.That(refused.State.Reason, Does.Contain("already held the transaction as aborted"));
            Assert.That(refused.Effects, Is.EqualTo(new TransactionEffect[] { new RecordAbort(refused.State.Reason!) }));
        });
    }

    [Test]
    public void ThreePhase_PreCommitRefusedBecauseTheJournalSaysAborted_Aborts()
    {
        var forcing = Rules.Begin(Tx, CommitProtocol.ThreePhase, new CommitRequested(List(A, B, C), null), T0)
            .Apply(Yes(A)).Apply(Yes(B)).Apply(Yes(C));
        Assert.That(forcing.State.Phase, Is.EqualTo(TransactionPhase.ForcingPreCommit));

        var refused = forcing.Apply(new DecisionRefused("row says aborted"));

        Assert.Multiple(() =>
        {
            Assert.That(refused.State.Phase, Is.EqualTo(TransactionPhase.Aborting));
            Assert.That(refused.Effects.OfType<SendPreCommit>(), Is.Empty);
        });
    }

    // ---- the driver ---------------------------------------------------------------------------

    [Test]
    public async Task Driver_AbortRowWrittenByAnOperatorWhileDeciding_EveryoneIsToldToAbort_AndTheInitiatorAborted()
    {
        var rig = new RuntimeRig();
        var id = TransactionId.New();
        rig.Journal.FailNextDecisionWrites = 1;
        await rig.CommitAsync(id, RuntimeRig.Initiator(), A, B);
        await rig.VoteAsync(id, A, Vote.Yes);
        await rig.VoteAsync(id, B, Vote.Yes);

        // While the decision write waits for its retry, someone (the recovery tool, an operator)
        // records the transaction as aborted.
        await rig.Journal.RecordAbortAsync(new AbortRecord(id, RuntimeRig.Coordinator, CommitProtocol.TwoPhase, [A, B], "operator", T0), T0, CancellationToken.None);
        await rig.AdvanceAndTickAsync(Settings.RedriveInitialInterval);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Transport.SentOf<CommitBranch>(), Is.Empty);
            Assert.That(rig.Transport.SentOf<AbortBranch>().Select(m => m.Participant), Is.EqualTo(new[] { A, B }));
            Assert.That(rig.Transport.Replies.Single().Message.Outcome, Is.EqualTo(TransactionOutcome.Aborted));
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.Aborted));
            Assert.That(rig.Runtime.Find(id), Is.Null);
        });
    }

    [Test]
    public async Task Driver_AbortRowWriteFails_NothingIsSentNorAnswered_AndTheOutcomeIsPending_UntilTheRetrySucceeds()
    {
        var rig = new RuntimeRig();
        var id = TransactionId.New();
        rig.Journal.FailNextAbortWrites = 2;
        await rig.CommitAsync(id, RuntimeRig.Initiator(), A, B);
        await rig.VoteAsync(id, A, Vote.Yes);
        await rig.VoteAsync(id, B, Vote.No);

        Assert.Multiple(async () =>
        {
            Assert.That(rig.Transport.SentOf<AbortBranch>(), Is.Empty);
            Assert.That(rig.Transport.Replies, Is.Empty);
            Assert.That(rig.Journal.Rows.ContainsKey(id), Is.False);
            Assert.That(rig.Runtime.Find(id)?.Phase, Is.EqualTo(TransactionPhase.Aborting));
            Assert.That(await rig.OutcomeAsync(id), Is.EqualTo(TransactionOutcome.Pending));
            Assert.That(await rig.OutcomeAsync(id, A), Is.EqualTo(TransactionOutcome.Pending), "a prepared participant asking must not be told Aborted either");
        });

        // The finding's path: the initiator, told nothing, asks to commit again. It must not begin anew.
        await rig.CommitAsync(id, RuntimeRig.Initiator(2), A, B);
        Assert.That(rig.Transport.SentOf<PrepareBranch>(), Has.Exactly(2).Items, "no second round of PrepareBranch");

        await rig.AdvanceAndTickAsync(Settings.RedriveInitialInterval);
        Assert.That(rig.Trace.Count(t => t == "journal:abort-failed"), Is.EqualTo(2));
        await rig.AdvanceAndTickAsync(Settings.RedriveInitialInterval * 2);

        Assert.Multiple(async () =>
        {
            Assert.That(rig.Trace.SkipWhile(t => t != "journal:aborted"), Is.EqualTo(new[]
            {
                "journal:aborted", "send:AbortBranch:bank-a", "send:AbortBranch:bank-b", "reply:Aborted", "reply:Aborted",
            }));
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.Aborted));
            Assert.That(rig.Runtime.Find(id), Is.Null);
            Assert.That(await rig.OutcomeAsync(id), Is.EqualTo(TransactionOutcome.Aborted));
        });
    }

    [Test]
    public async Task Driver_RollbackOfAnUnknownTransaction_WhoseRowSaysCommitting_IsAnsweredCommittedAndNotAborted()
    {
        var rig = new RuntimeRig();
        var id = TransactionId.New();

        // An earlier run's decision write lands after this run looked and found no row: simulated
        // by a row that appears between the runtime's first read and its abort write.
        rig.Journal.BeforeNextAbortWrite = () => rig.AddCommittingRow(id, List(A, B), []);
        await rig.Runtime.RollbackAsync(
            new RollbackTransaction { TransactionId = id, Participants = [A, B], Reason = "user cancelled" },
            RuntimeRig.Initiator(),
            CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Transport.SentOf<AbortBranch>(), Is.Empty);
            Assert.That(rig.Transport.SentOf<CommitBranch>().Select(m => m.Participant), Is.EqualTo(new[] { A, B }));
            Assert.That(rig.Transport.Replies.Single().Message.Outcome, Is.EqualTo(TransactionOutcome.Committed));
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.Committing));
            Assert.That(rig.Runtime.Find(id)?.Phase, Is.EqualTo(TransactionPhase.Committing));
        });
    }
}
