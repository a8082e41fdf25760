using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using TxCoord.Coordinator.Journal;
using static TxCoord.Tests.Unit.Engine.EngineKit;

namespace TxCoord.Tests.Unit.Engine;

/// <summary>The driver over an in-memory journal and transport, with fake time: no servers, no sleeps.</summary>
public sealed class CoordinatorRuntimeTests
{
    /// <summary>Bounds a wait for the background loop, so a bug fails the test instead of hanging it; never a sleep.</summary>
    private static readonly TimeSpan BackgroundLimit = TimeSpan.FromSeconds(30);

    private static TransactionId NewId() => TransactionId.New();

    [Test]
    public async Task Commit_AllVoteYes_DecisionIsDurableBeforeAnyCommitIsSentOrTheInitiatorIsAnswered()
    {
        var rig = new RuntimeRig();
        var id = NewId();
        var initiator = RuntimeRig.Initiator();

        await rig.CommitAsync(id, initiator, A, B);
        await rig.VoteAsync(id, A, Vote.Yes);
        await rig.VoteAsync(id, B, Vote.Yes);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Trace, Is.EqualTo(new[]
            {
                "send:PrepareBranch:bank-a", "send:PrepareBranch:bank-b",
                "journal:commit-decided",
                "reply:Committed",
                "send:CommitBranch:bank-a", "send:CommitBranch:bank-b",
            }));
            Assert.That(rig.Transport.Replies.Single().Target, Is.EqualTo(initiator));
            Assert.That(rig.Transport.SentOf<PrepareBranch>().First().Participants, Is.EqualTo(new[] { A, B }));
            Assert.That(rig.Transport.SentOf<PrepareBranch>().First().Coordinator, Is.EqualTo(RuntimeRig.Coordinator));
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.Committing));
            Assert.That(rig.Runtime.Find(id)?.Phase, Is.EqualTo(TransactionPhase.Committing));
        });
    }

    [Test]
    public async Task Commit_EveryParticipantAcknowledges_RecordsTheEndAndForgetsTheTransaction()
    {
        var rig = new RuntimeRig();
        var id = NewId();
        await rig.CommitAsync(id, RuntimeRig.Initiator(), A, B);
        await rig.VoteAsync(id, A, Vote.Yes);
        await rig.VoteAsync(id, B, Vote.Yes);

        await rig.AckAsync(id, A);
        await rig.AckAsync(id, B);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Trace.TakeLast(2), Is.EqualTo(new[] { "journal:ack:bank-a", "journal:ended" }));
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.Committed));
            Assert.That(rig.Runtime.Find(id), Is.Null);
            Assert.That(rig.Runtime.InFlightCount, Is.Zero);
        });
    }

    [Test]
    public async Task DecisionWriteFails_NothingIsSentAndTheOutcomeStaysPending_UntilTheRetriedWriteSucceeds()
    {
        var rig = new RuntimeRig();
        var id = NewId();
        rig.Journal.FailNextDecisionWrites = 2;
        await rig.CommitAsync(id, RuntimeRig.Initiator(), A, B);
        await rig.VoteAsync(id, A, Vote.Yes);
        await rig.VoteAsync(id, B, Vote.Yes);

        Assert.Multiple(async () =>
        {
            Assert.That(rig.Transport.SentOf<CommitBranch>(), Is.Empty);
            Assert.That(rig.Transport.SentOf<AbortBranch>(), Is.Empty);
            Assert.That(rig.Transport.Replies, Is.Empty);
            Assert.That(await rig.OutcomeAsync(id), Is.EqualTo(TransactionOutcome.Pending));
        });

        await rig.AdvanceAndTickAsync(TimeSpan.FromMilliseconds(999));
        Assert.That(rig.Trace.Count(t => t == "journal:decision-failed"), Is.EqualTo(1), "retried before its back-off");
        await rig.AdvanceAndTickAsync(TimeSpan.FromMilliseconds(1));
        Assert.That(rig.Trace.Count(t => t == "journal:decision-failed"), Is.EqualTo(2));
        await rig.AdvanceAndTickAsync(TimeSpan.FromSeconds(2));

        Assert.Multiple(() =>
        {
            Assert.That(rig.Trace.TakeLast(4), Is.EqualTo(new[]
            {
                "journal:commit-decided", "reply:Committed", "send:CommitBranch:bank-a", "send:CommitBranch:bank-b",
            }));
            Assert.That(rig.Runtime.Find(id)?.Phase, Is.EqualTo(TransactionPhase.Committing));
        });
    }

    [Test]
    public async Task DecisionWriteFailsAfterReachingTheDisk_TheRetryFindsTheSameDecisionAndCommits()
    {
        var rig = new RuntimeRig();
        var id = NewId();
        rig.Journal.FailNextDecisionWrites = 1;
        rig.Journal.FailedWritesAreDurable = true;
        await rig.CommitAsync(id, RuntimeRig.Initiator(), A);
        await rig.VoteAsync(id, A, Vote.Yes);

        await rig.AdvanceAndTickAsync(TimeSpan.FromSeconds(1));

        Assert.Multiple(() =>
        {
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.Committing));
            Assert.That(rig.Transport.Replies.Single().Message.Outcome, Is.EqualTo(TransactionOutcome.Committed));
            Assert.That(rig.Transport.SentOf<CommitBranch>().Single().Participant, Is.EqualTo(A));
        });
    }

    [Test]
    public async Task NoVoteWithinTheVoteTimeout_ATickAbortsEveryParticipantAndAnswersAborted()
    {
        var rig = new RuntimeRig();
        var id = NewId();
        await rig.CommitAsync(id, RuntimeRig.Initiator(), A, B);
        await rig.VoteAsync(id, A, Vote.Yes);

        await rig.AdvanceAndTickAsync(TimeSpan.FromSeconds(9));
        Assert.That(rig.Runtime.Find(id)?.Phase, Is.EqualTo(TransactionPhase.Preparing));
        await rig.AdvanceAndTickAsync(TimeSpan.FromSeconds(1));

        Assert.Multiple(async () =>
        {
            Assert.That(rig.Transport.SentOf<AbortBranch>().Select(m => m.Participant), Is.EqualTo(new[] { A, B }));
            Assert.That(rig.Transport.Replies.Single().Message.Outcome, Is.EqualTo(TransactionOutcome.Aborted));
            Assert.That(rig.Transport.Replies.Single().Message.Reason, Does.Contain("vote timeout"));
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.Aborted));
            Assert.That(rig.Runtime.Find(id), Is.Null);
            Assert.That(await rig.OutcomeAsync(id), Is.EqualTo(TransactionOutcome.Aborted));
        });
    }

    [Test]
    public async Task UnacknowledgedCommit_IsRedrivenOnTheTick_OnlyToTheSilentParticipant()
    {
        var rig = new RuntimeRig();
        var id = NewId();
        await rig.CommitAsync(id, RuntimeRig.Initiator(), A, B);
        await rig.VoteAsync(id, A, Vote.Yes);
        await rig.VoteAsync(id, B, Vote.Yes);
        await rig.AckAsync(id, A);
        rig.Transport.Sent.Clear();

        await rig.AdvanceAndTickAsync(TimeSpan.FromSeconds(1));
        await rig.AdvanceAndTickAsync(TimeSpan.FromSeconds(1));
        await rig.AdvanceAndTickAsync(TimeSpan.FromSeconds(1));

        Assert.That(rig.Transport.SentOf<CommitBranch>().Select(m => m.Participant), Is.EqualTo(new[] { B, B }), "at 1 s, then at 1 + 2 s");
    }

    [Test]
    public async Task DuplicateCommitRequest_EveryRequesterIsAnsweredOnce()
    {
        var rig = new RuntimeRig();
        var id = NewId();
        var first = RuntimeRig.Initiator(1);
        var second = RuntimeRig.Initiator(2);
        await rig.CommitAsync(id, first, A);
        await rig.CommitAsync(id, second, A);
        await rig.CommitAsync(id, first, A);

        await rig.VoteAsync(id, A, Vote.Yes);
        var third = RuntimeRig.Initiator(3);
        await rig.CommitAsync(id, third, A);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Transport.SentOf<PrepareBranch>(), Has.Exactly(1).Items);
            Assert.That(rig.Transport.Replies.Select(r => r.Target), Is.EqualTo(new[] { first, second, third }));
            Assert.That(rig.Transport.Replies.Select(r => r.Message.Outcome), Is.All.EqualTo(TransactionOutcome.Committed));
        });
    }

    [Test]
    public async Task CommitRequestForATransactionTheJournalHoldsAsCommitted_IsAnsweredCommittedWithoutPreparing()
    {
        var rig = new RuntimeRig();
        var id = NewId();
        rig.AddCommittingRow(id, List(A), List(A));

        await rig.CommitAsync(id, RuntimeRig.Initiator(), A);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Transport.Sent, Is.Empty);
            Assert.That(rig.Transport.Replies.Single().Message.Outcome, Is.EqualTo(TransactionOutcome.Committed));
            Assert.That(rig.Runtime.Find(id), Is.Null);
        });
    }

    [Test]
    public async Task OutcomeAskedForAnUnknownTransaction_IsAbortedAndACommitRequestArrivingLaterCannotCommitIt()
    {
        var rig = new RuntimeRig();
        var id = NewId();

        var outcome = await rig.OutcomeAsync(id);
        await rig.CommitAsync(id, RuntimeRig.Initiator(), A, B);

        Assert.Multiple(() =>
        {
            Assert.That(outcome, Is.EqualTo(TransactionOutcome.Aborted));
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.Aborted));
            Assert.That(rig.Transport.SentOf<PrepareBranch>(), Is.Empty);
            Assert.That(rig.Transport.SentOf<AbortBranch>().Select(m => m.Participant), Is.EqualTo(new[] { A, B }));
            Assert.That(rig.Transport.Replies.Single().Message.Outcome, Is.EqualTo(TransactionOutcome.Aborted));
        });
    }

    [Test]
    public async Task OutcomeAsked_FollowsThePhase()
    {
        var rig = new RuntimeRig();
        var id = NewId();
        await rig.CommitAsync(id, null, A);
        var preparing = await rig.OutcomeAsync(id, A);
        await rig.VoteAsync(id, A, Vote.Yes);
        var committing = await rig.OutcomeAsync(id, A);
        await rig.AckAsync(id, A);
        var ended = await rig.OutcomeAsync(id, A);

        Assert.Multiple(() =>
        {
            Assert.That(preparing, Is.EqualTo(TransactionOutcome.Pending));
            Assert.That(committing, Is.EqualTo(TransactionOutcome.Committed));
            Assert.That(ended, Is.EqualTo(TransactionOutcome.Committed));
        });
    }

    [Test]
    public async Task YesVoteForATransactionNotInMemory_GetsCommitWhenTheJournalDecidedCommit_OtherwiseAbort()
    {
        var rig = new RuntimeRig();
        var committed = NewId();
        var unknown = NewId();
        rig.AddCommittingRow(committed, List(A, B), []);

        await rig.VoteAsync(committed, A, Vote.Yes);
        await rig.VoteAsync(unknown, B, Vote.Yes);
        await rig.VoteAsync(unknown, C, Vote.No);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Transport.Sent.Select(s => (s.Participant, s.Message.GetType().Name)), Is.EqualTo(new[]
            {
                (A, nameof(CommitBranch)), (B, nameof(AbortBranch)),
            }));
            Assert.That(rig.Runtime.InFlightCount, Is.Zero);
        });
    }

    [Test]
    public async Task RollbackOfAnUnknownTransaction_AbortsTheNamedParticipantsAndAnswersAborted()
    {
        var rig = new RuntimeRig();
        var id = NewId();
        var initiator = RuntimeRig.Initiator();

        await rig.Runtime.RollbackAsync(new RollbackTransaction { TransactionId = id, Participants = [A, B], Reason = "cancelled" }, initiator, CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Transport.SentOf<AbortBranch>().Select(m => m.Participant), Is.EqualTo(new[] { A, B }));
            Assert.That(rig.Transport.Replies.Single(), Is.EqualTo((initiator, new TransactionCompleted
            {
                TransactionId = id, Outcome = TransactionOutcome.Aborted, Reason = "rollback requested: cancelled",
            })));
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.Aborted));
        });
    }

    [Test]
    public async Task RollbackOfATransactionTheJournalHoldsAsCommitting_IsAnsweredCommitted()
    {
        var rig = new RuntimeRig();
        var id = NewId();
        rig.AddCommittingRow(id, List(A), []);

        await rig.Runtime.RollbackAsync(new RollbackTransaction { TransactionId = id, Participants = [A] }, RuntimeRig.Initiator(), CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Transport.Sent, Is.Empty);
            Assert.That(rig.Transport.Replies.Single().Message.Outcome, Is.EqualTo(TransactionOutcome.Committed));
        });
    }

    [Test]
    public async Task RollbackWhilePreparing_AbortsAndAnswersBothTheCommitAndTheRollbackRequester()
    {
        var rig = new RuntimeRig();
        var id = NewId();
        var committer = RuntimeRig.Initiator(1);
        var roller = RuntimeRig.Initiator(2);
        await rig.CommitAsync(id, committer, A);

        await rig.Runtime.RollbackAsync(new RollbackTransaction { TransactionId = id, Participants = [A] }, roller, CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Transport.Replies.Select(r => r.Target), Is.EqualTo(new[] { committer, roller }));
            Assert.That(rig.Transport.Replies.Select(r => r.Message.Outcome), Is.All.EqualTo(TransactionOutcome.Aborted));
        });
    }

    [Test]
    public async Task AcknowledgementsForUnknownTransactions_AreIgnored()
    {
        var rig = new RuntimeRig();
        var id = NewId();

        await rig.AckAsync(id, A);
        await rig.Runtime.AbortAcknowledgedAsync(new BranchAborted { TransactionId = id, Participant = A }, CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Trace, Is.Empty);
            Assert.That(rig.Runtime.Find(id), Is.Null);
        });
    }

    [Test]
    public async Task Recovery_ResendsCommitToParticipantsNotYetAcknowledged_AndClosesTheRowOnTheirAck()
    {
        var rig = new RuntimeRig();
        var id = NewId();
        var otherCoordinators = NewId();
        rig.AddCommittingRow(id, List(A, B), List(A));
        rig.Journal.Rows[otherCoordinators] = rig.Journal.Rows[id] with { TransactionId = otherCoordinators, CoordinatorId = new CoordinatorId("someone-else") };

        var resumed = await rig.Runtime.RecoverAsync(CancellationToken.None);
        var outcome = await rig.OutcomeAsync(id, B);
        await rig.AckAsync(id, B);

        Assert.Multiple(() =>
        {
            Assert.That(resumed, Is.EqualTo(1));
            Assert.That(outcome, Is.EqualTo(TransactionOutcome.Committed));
            Assert.That(rig.Transport.Sent.Select(s => (s.Participant, s.Message.GetType().Name)), Is.EqualTo(new[] { (B, nameof(CommitBranch)) }));
            Assert.That(rig.Transport.Replies, Is.Empty);
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.Committed));
            Assert.That(rig.Runtime.Find(id), Is.Null);
        });
    }

    [Test]
    public async Task RecoveryRunTwice_DoesNotResumeATransactionTwice()
    {
        var rig = new RuntimeRig();
        rig.AddCommittingRow(NewId(), List(A), []);

        var first = await rig.Runtime.RecoverAsync(CancellationToken.None);
        var second = await rig.Runtime.RecoverAsync(CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(first, Is.EqualTo(1));
            Assert.That(second, Is.Zero);
            Assert.That(rig.Transport.SentOf<CommitBranch>(), Has.Exactly(1).Items);
        });
    }

    [Test]
    public async Task CommitRequestForAProtocolNotRun_IsAbortedWithTheReason()
    {
        var rig = new RuntimeRig();
        var id = NewId();

        await rig.Runtime.CommitAsync(
            new CommitTransaction { TransactionId = id, Participants = [A], Protocol = (CommitProtocol)7 },
            RuntimeRig.Initiator(),
            CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Transport.SentOf<PrepareBranch>(), Is.Empty);
            Assert.That(rig.Transport.Replies.Single().Message.Outcome, Is.EqualTo(TransactionOutcome.Aborted));
            Assert.That(rig.Transport.Replies.Single().Message.Reason, Does.Contain("protocol 7 is not supported"));
        });
    }

    [Test]
    public async Task RunLoop_RecoversThenTicksWithTheTimeProvider()
    {
        var rig = new RuntimeRig();
        var id = NewId();
        rig.AddCommittingRow(id, List(A), []);
        using var stop = new CancellationTokenSource();

        var loop = rig.Runtime.RunAsync(stop.Token);
        await rig.Transport.WhenAsync(() => rig.Transport.Sent.Count == 1).WaitAsync(BackgroundLimit);
        rig.Time.Advance(TimeSpan.FromSeconds(1));
        await rig.Transport.WhenAsync(() => rig.Transport.Sent.Count == 2).WaitAsync(BackgroundLimit);
        await stop.CancelAsync();

        Assert.That(async () => await loop, Throws.InstanceOf<OperationCanceledException>());
    }
}
