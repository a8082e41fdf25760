using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using TxCoord.Coordinator.Journal;
using static TxCoord.Tests.Unit.Engine.EngineKit;

namespace TxCoord.Tests.Unit.Engine;

/// <summary>The driver running 3PC over the in-memory journal and transport, with fake time.</summary>
public sealed class ThreePhaseRuntimeTests
{
    private static Task CommitAsync(RuntimeRig rig, TransactionId id, params ParticipantId[] participants) =>
        rig.Runtime.CommitAsync(
            new CommitTransaction { TransactionId = id, Participants = participants, Protocol = CommitProtocol.ThreePhase },
            RuntimeRig.Initiator(),
            CancellationToken.None);

    private static Task PreCommittedAsync(RuntimeRig rig, TransactionId id, ParticipantId participant) =>
        rig.Runtime.PreCommitAcknowledgedAsync(new BranchPreCommitted { TransactionId = id, Participant = participant }, CancellationToken.None);

    private static Task DecidedAsync(RuntimeRig rig, TransactionId id, TransactionOutcome outcome) =>
        rig.Runtime.TerminationDecidedAsync(
            new TerminationDecided { TransactionId = id, Coordinator = RuntimeRig.Coordinator, Leader = B, Round = 1, Outcome = outcome },
            CancellationToken.None);

    private static void AddPreCommitRow(RuntimeRig rig, TransactionId id, params ParticipantId[] participants) =>
        rig.Journal.Rows[id] = new JournalEntry(id, RuntimeRig.Coordinator, CommitProtocol.ThreePhase, JournalState.PreCommitting,
            [.. participants], [], null, T0.AddMinutes(-1), null, null);

    private static async Task<RuntimeRig> PreCommittingAsync(TransactionId id)
    {
        var rig = new RuntimeRig();
        await CommitAsync(rig, id, A, B, C);
        foreach (var p in new[] { A, B, C })
        {
            await rig.VoteAsync(id, p, Vote.Yes);
        }

        return rig;
    }

    [Test]
    public async Task ThreePhaseCommit_PreCommitIsDurableBeforeItIsSent_AndTheCommitDecisionBeforeDoCommit()
    {
        var id = TransactionId.New();
        var rig = await PreCommittingAsync(id);

        await PreCommittedAsync(rig, id, C);
        await PreCommittedAsync(rig, id, A);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Trace, Is.EqualTo(new[]
            {
                "send:PrepareBranch:bank-a", "send:PrepareBranch:bank-b", "send:PrepareBranch:audit-c",
                "journal:precommit",
                "send:PreCommitBranch:bank-a", "send:PreCommitBranch:bank-b", "send:PreCommitBranch:audit-c",
                "journal:commit-decided",
                "reply:Committed",
                "send:CommitBranch:bank-a", "send:CommitBranch:bank-b", "send:CommitBranch:audit-c",
            }));
            Assert.That(rig.Transport.SentOf<PrepareBranch>().All(p => p.Protocol == CommitProtocol.ThreePhase), Is.True);
            Assert.That(rig.Journal.Rows[id].Protocol, Is.EqualTo(CommitProtocol.ThreePhase));
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.Committing));
            Assert.That(rig.Runtime.Find(id)?.Protocol, Is.EqualTo(CommitProtocol.ThreePhase));
        });
    }

    [Test]
    public async Task WhilePreCommitting_TheOutcomeIsPending_ForParticipantsAndInitiators()
    {
        var id = TransactionId.New();
        var rig = await PreCommittingAsync(id);

        Assert.Multiple(async () =>
        {
            Assert.That(rig.Runtime.Find(id)?.Phase, Is.EqualTo(TransactionPhase.PreCommitting));
            Assert.That(await rig.OutcomeAsync(id, A), Is.EqualTo(TransactionOutcome.Pending));
        });
    }

    [Test]
    public async Task PreCommitWriteFails_NoPreCommitIsSent_UntilTheRetriedWriteSucceeds()
    {
        var id = TransactionId.New();
        var rig = new RuntimeRig();
        rig.Journal.FailNextPreCommitWrites = 1;
        await CommitAsync(rig, id, A, B);
        await rig.VoteAsync(id, A, Vote.Yes);
        await rig.VoteAsync(id, B, Vote.Yes);

        Assert.That(rig.Transport.SentOf<PreCommitBranch>(), Is.Empty);
        await rig.AdvanceAndTickAsync(rig.Options.RedriveInitialInterval);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Trace.Where(t => t.StartsWith("journal:", StringComparison.Ordinal)), Is.EqualTo(new[] { "journal:precommit-failed", "journal:precommit" }));
            Assert.That(rig.Transport.SentOf<PreCommitBranch>().Select(m => m.Participant), Is.EqualTo(new[] { A, B }));
        });
    }

    [Test]
    public async Task TerminationDecidedAbortWhilePreCommitting_CoordinatorAdoptsIt_JournalSaysAborted()
    {
        var id = TransactionId.New();
        var rig = await PreCommittingAsync(id);

        await DecidedAsync(rig, id, TransactionOutcome.Aborted);

        Assert.Multiple(async () =>
        {
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.Aborted));
            Assert.That(rig.Transport.Replies.Single().Message.Outcome, Is.EqualTo(TransactionOutcome.Aborted));
            Assert.That(rig.Transport.SentOf<CommitBranch>(), Is.Empty);
            Assert.That(await rig.OutcomeAsync(id), Is.EqualTo(TransactionOutcome.Aborted));
        });
    }

    [Test]
    public async Task CoordinatorRestartedWithPreCommitRow_LearnsTheTerminationCommitBeforeRecoveryRan_AndCommitsEveryone()
    {
        var id = TransactionId.New();
        var rig = new RuntimeRig();
        AddPreCommitRow(rig, id, A, B, C);

        await DecidedAsync(rig, id, TransactionOutcome.Committed);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.Committing));
            Assert.That(rig.Transport.SentOf<CommitBranch>().Select(c => c.Participant), Is.EquivalentTo(new[] { A, B, C }));
            Assert.That(rig.Transport.SentOf<AbortBranch>(), Is.Empty);
            Assert.That(rig.Runtime.Find(id)?.TerminationRound, Is.EqualTo(1));
        });
    }

    [Test]
    public async Task CoordinatorRestartedWithPreCommitRow_RecoveryResendsPreCommit_AndAdoptsABranchAbortedByTermination()
    {
        var id = TransactionId.New();
        var rig = new RuntimeRig();
        AddPreCommitRow(rig, id, A, B, C);

        var resumed = await rig.Runtime.RecoverAsync(CancellationToken.None);
        await rig.Runtime.AbortAcknowledgedAsync(new BranchAborted { TransactionId = id, Participant = B }, CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(resumed, Is.EqualTo(1));
            Assert.That(rig.Transport.SentOf<PreCommitBranch>().Select(p => p.Participant), Is.EqualTo(new[] { A, B, C }));
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.Aborted));
            Assert.That(rig.Transport.SentOf<CommitBranch>(), Is.Empty);
        });
    }

    [Test]
    public async Task PreCommitRowNotYetRecovered_OutcomeQuestionIsPending_NeverPresumedAborted()
    {
        var id = TransactionId.New();
        var rig = new RuntimeRig();
        AddPreCommitRow(rig, id, A, B);

        var outcome = await rig.OutcomeAsync(id, A);

        Assert.Multiple(() =>
        {
            Assert.That(outcome, Is.EqualTo(TransactionOutcome.Pending));
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.PreCommitting));
            Assert.That(rig.Transport.SentOf<PreCommitBranch>(), Has.Exactly(2).Items, "resumed: PreCommit re-sent");
        });
    }

    [Test]
    public async Task PreCommitRowNotYetRecovered_RepeatedYesVote_GetsPreCommitNotAbort()
    {
        var id = TransactionId.New();
        var rig = new RuntimeRig();
        AddPreCommitRow(rig, id, A, B);

        await rig.VoteAsync(id, A, Vote.Yes);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Transport.SentOf<AbortBranch>(), Is.Empty);
            Assert.That(rig.Transport.SentOf<PreCommitBranch>().Count(p => p.Participant == A), Is.EqualTo(2));
        });
    }

    [Test]
    public async Task PreCommitRowNotYetRecovered_RollbackRequest_CannotAbortIt()
    {
        var id = TransactionId.New();
        var rig = new RuntimeRig();
        AddPreCommitRow(rig, id, A, B);

        await rig.Runtime.RollbackAsync(
            new RollbackTransaction { TransactionId = id, Participants = [A, B], Protocol = CommitProtocol.ThreePhase },
            RuntimeRig.Initiator(),
            CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.PreCommitting));
            Assert.That(rig.Transport.SentOf<AbortBranch>(), Is.Empty);
            Assert.That(rig.Transport.Replies, Is.Empty, "answered once the outcome is known");
        });
    }

    [Test]
    public async Task TerminationDecidedAbortForATransactionNobodyKnows_IsRecordedSoItCanNeverCommit()
    {
        var id = TransactionId.New();
        var rig = new RuntimeRig();

        await DecidedAsync(rig, id, TransactionOutcome.Aborted);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Journal.Rows[id].State, Is.EqualTo(JournalState.Aborted));
            Assert.That(rig.Journal.Rows[id].Protocol, Is.EqualTo(CommitProtocol.ThreePhase));
            Assert.That(rig.Transport.Sent, Is.Empty);
        });
    }

    [Test]
    public async Task TerminationDecidedCommitContradictingTheJournal_ChangesNothing()
    {
        var unknown = TransactionId.New();
        var aborted = TransactionId.New();
        var rig = new RuntimeRig();
        await rig.Runtime.RollbackAsync(
            new RollbackTransaction { TransactionId = aborted, Participants = [A], Protocol = CommitProtocol.ThreePhase }, null, CancellationToken.None);
        rig.Transport.Sent.Clear();

        await DecidedAsync(rig, unknown, TransactionOutcome.Committed);
        await DecidedAsync(rig, aborted, TransactionOutcome.Committed);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Journal.Rows.ContainsKey(unknown), Is.False);
            Assert.That(rig.Journal.Rows[aborted].State, Is.EqualTo(JournalState.Aborted));
            Assert.That(rig.Transport.Sent, Is.Empty);
        });
    }

    [Test]
    public async Task TerminationDecidedForATwoPhaseTransaction_IsIgnored()
    {
        var id = TransactionId.New();
        var rig = new RuntimeRig();
        await rig.CommitAsync(id, RuntimeRig.Initiator(), A, B);

        await DecidedAsync(rig, id, TransactionOutcome.Aborted);

        Assert.That(rig.Runtime.Find(id)?.Phase, Is.EqualTo(TransactionPhase.Preparing));
    }

    [Test]
    public async Task RollbackOfAThreePhaseTransaction_RecordsItsProtocol()
    {
        var id = TransactionId.New();
        var rig = new RuntimeRig();

        await rig.Runtime.RollbackAsync(
            new RollbackTransaction { TransactionId = id, Participants = [A], Protocol = CommitProtocol.ThreePhase }, null, CancellationToken.None);

        Assert.That(rig.Journal.Rows[id].Protocol, Is.EqualTo(CommitProtocol.ThreePhase));
    }
}
