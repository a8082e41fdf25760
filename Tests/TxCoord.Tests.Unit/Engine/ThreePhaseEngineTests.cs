using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using static TxCoord.Tests.Unit.Engine.EngineKit;

namespace TxCoord.Tests.Unit.Engine;

/// <summary>The pure 3PC engine: every phase, every event that changes it, and the ones it must ignore.</summary>
public sealed class ThreePhaseEngineTests
{
    private static readonly ParticipantId D = new("ledger-d");

    private static Transition Begin3(params ParticipantId[] participants) =>
        Rules.Begin(Tx, CommitProtocol.ThreePhase, new CommitRequested([.. participants], null), T0);

    /// <summary>A, B and C voted Yes: the PreCommit record is being forced.</summary>
    private static TransactionState ForcingPreCommit() => Begin3(A, B, C).Apply(Yes(A)).Apply(Yes(B)).Apply(Yes(C)).State;

    /// <summary>The PreCommit of A, B and C is durable at T0 and was sent.</summary>
    private static TransactionState PreCommitting() => ForcingPreCommit().Apply(new PreCommitDurable()).State;

    private static TerminationDecisionReceived Decided(TransactionOutcome outcome, int round = 2) => new(B, round, outcome);

    // ---- Preparing (CanCommit) ----------------------------------------------------------------

    [Test]
    public void Begin_ThreePhase_SendsPrepareToEveryParticipantAndRecordsTheProtocol()
    {
        var transition = Begin3(A, B, C);

        Assert.Multiple(() =>
        {
            Assert.That(Rules.Supports(CommitProtocol.ThreePhase), Is.True);
            Assert.That(transition.State.Protocol, Is.EqualTo(CommitProtocol.ThreePhase));
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Preparing));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendPrepare(A), new SendPrepare(B), new SendPrepare(C) }));
            Assert.That(transition.State.NextDeadline, Is.EqualTo(T0 + Settings.VoteTimeout));
        });
    }

    [Test]
    public void Begin_ThreePhaseWithoutParticipants_CommitsAtOnce()
    {
        var transition = Begin3();

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Committed));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new ReplyToInitiator(TransactionOutcome.Committed, null), new RecordEnd() }));
        });
    }

    [Test]
    public void Begin_ThreePhaseWithItsDeadlinePassed_Aborts()
    {
        var aborting = Rules.Begin(Tx, CommitProtocol.ThreePhase, new CommitRequested([A], T0.AddSeconds(-1)), T0);
        var aborted = aborting.ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(aborting.Effects.OfType<RecordAbort>().Single().AfterPreCommit, Is.False);
            Assert.That(aborted.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(aborted.State.Protocol, Is.EqualTo(CommitProtocol.ThreePhase));
            Assert.That(aborted.Effects, Is.EqualTo(new TransactionEffect[]
            {
                new SendAbort(A, aborted.State.Reason!), new ReplyToInitiator(TransactionOutcome.Aborted, aborted.State.Reason),
            }));
        });
    }

    [Test]
    public void SomeYesVotes_StayPreparingWithNothingForced()
    {
        var transition = Begin3(A, B, C).Apply(Yes(A)).Apply(Yes(C));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Preparing));
            Assert.That(transition.Effects, Is.Empty);
            Assert.That(transition.State.NotVoted, Is.EqualTo(new[] { B }));
        });
    }

    [Test]
    public void LastYesVote_ForcesThePreCommitRecord_AndSendsNothingYet()
    {
        var transition = Begin3(A, B, C).Apply(Yes(A)).Apply(Yes(B)).Apply(Yes(C));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.ForcingPreCommit));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new ForcePreCommit() }));
            Assert.That(transition.State.PreCommitWriteAttempts, Is.EqualTo(1));
            Assert.That(transition.State.RetryAt, Is.Null, "no retry while the write is in flight");
            Assert.That(transition.State.NextDeadline, Is.Null);
        });
    }

    [Test]
    public void NoVote_AbortsWithNothingForced()
    {
        var aborting = Begin3(A, B, C).Apply(Yes(A)).Apply(No(B, "constraint"));
        var transition = aborting.ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(aborting.Effects.OfType<RecordAbort>().Single().AfterPreCommit, Is.False);
            Assert.That(aborting.State.AbortReplacesPreCommit, Is.False);
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(transition.Effects.OfType<SendAbort>().Select(e => e.Participant), Is.EqualTo(new[] { A, B, C }));
            Assert.That(transition.Effects.OfType<ReplyToInitiator>().Single().Outcome, Is.EqualTo(TransactionOutcome.Aborted));
            Assert.That(transition.Effects.OfType<RecordAbort>(), Is.Empty, "the row was written before");
            Assert.That(transition.State.Reason, Does.Contain("bank-b voted No: constraint"));
        });
    }

    [Test]
    public void ReadOnlyVote_AbortsBecauseEveryParticipantMustStayForTermination()
    {
        var transition = Begin3(A, B).Apply(Yes(A)).Apply(ReadOnly(B)).ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(transition.State.Reason, Does.Contain(ThreePhaseCommitEngine.ReadOnlyRefused));
        });
    }

    [Test]
    public void DuplicateOrStrangerVotes_AreIgnoredWhilePreparing()
    {
        var before = Begin3(A, B).Apply(Yes(A)).State;

        var duplicate = before.Apply(No(A));
        var stranger = before.Apply(Yes(Stranger));

        Assert.Multiple(() =>
        {
            Assert.That(duplicate.State, Is.SameAs(before));
            Assert.That(stranger.State, Is.SameAs(before));
        });
    }

    [Test]
    public void VoteTimeoutOrTransactionDeadlineOrRollback_AbortWhilePreparing()
    {
        var preparing = Begin3(A, B).Apply(Yes(A)).State;

        var timedOut = preparing.Apply(new Tick(), T0 + Settings.VoteTimeout).ThenAbortRecorded(T0 + Settings.VoteTimeout);
        var rolledBack = preparing.Apply(new RollbackRequested("user")).ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(timedOut.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(timedOut.State.Reason, Does.Contain("vote timeout").And.Contain("bank-b"));
            Assert.That(rolledBack.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(rolledBack.State.Reason, Does.Contain("user"));
        });
    }

    [Test]
    public void TerminationDecidedAbortWhilePreparing_IsAdopted()
    {
        var aborting = Begin3(A, B, C).Apply(Yes(A)).Apply(Decided(TransactionOutcome.Aborted, round: 1));
        var transition = aborting.ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(aborting.Effects.OfType<RecordAbort>().Single().AfterPreCommit, Is.False);
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(transition.State.TerminationRound, Is.EqualTo(1));
            Assert.That(transition.State.Reason, Does.Contain("termination protocol decided abort (round 1, leader bank-b)"));
            Assert.That(transition.Effects.OfType<ReplyToInitiator>().Single().Outcome, Is.EqualTo(TransactionOutcome.Aborted));
        });
    }

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(2)]
    public void TerminationDecidedCommitWhilePreparing_IsIgnored_NobodyCanBePreCommittedYet(int yesVotes)
    {
        // Issue 16: it used to be adopted, forcing a commit of participants that had not even voted.
        var preparing = Begin3(A, B, C).State;
        foreach (var voter in new[] { A, B }.Take(yesVotes))
        {
            preparing = preparing.Apply(Yes(voter)).State;
        }

        var transition = preparing.Apply(Decided(TransactionOutcome.Committed));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State, Is.EqualTo(preparing));
            Assert.That(transition.Effects, Is.Empty);
        });
    }

    // ---- ForcingPreCommit ---------------------------------------------------------------------

    [Test]
    public void PreCommitDurable_SendsPreCommitToEveryParticipant_AndSchedulesItsRedrive()
    {
        var transition = ForcingPreCommit().Apply(new PreCommitDurable());

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.PreCommitting));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendPreCommit(A), new SendPreCommit(B), new SendPreCommit(C) }));
            Assert.That(transition.State.NextDeadline, Is.EqualTo(T0 + Settings.RedriveInitialInterval));
        });
    }

    [Test]
    public void PreCommitWriteFailed_RetriesTheSameWriteAfterABackoff_NeverAborts()
    {
        var failed = ForcingPreCommit().Apply(new PreCommitWriteFailed("timeout"));
        var early = failed.Apply(new Tick(), T0 + Settings.RedriveInitialInterval - TimeSpan.FromMilliseconds(1));
        var retried = failed.Apply(new Tick(), T0 + Settings.RedriveInitialInterval);

        Assert.Multiple(() =>
        {
            Assert.That(failed.State.Phase, Is.EqualTo(TransactionPhase.ForcingPreCommit));
            Assert.That(failed.Effects, Is.Empty);
            Assert.That(failed.State.RetryAt, Is.EqualTo(T0 + Settings.RedriveInitialInterval));
            Assert.That(early.Effects, Is.Empty);
            Assert.That(retried.Effects, Is.EqualTo(new TransactionEffect[] { new ForcePreCommit() }));
            Assert.That(retried.State.PreCommitWriteAttempts, Is.EqualTo(2));
            Assert.That(retried.State.RetryAt, Is.Null);
            Assert.That(retried.State.RetryInterval, Is.EqualTo(Settings.RedriveInitialInterval * 2));
        });
    }

    [Test]
    public void WhileForcingPreCommit_RollbackAndDeadlinesChangeNothing()
    {
        var forcing = ForcingPreCommit();

        var rollback = forcing.Apply(new RollbackRequested("late"));
        var pastDeadline = forcing.Apply(new Tick(), T0 + Settings.DefaultTransactionTimeout + TimeSpan.FromMinutes(1));
        var strayAck = forcing.Apply(new PreCommitAcknowledged(A));

        Assert.Multiple(() =>
        {
            Assert.That(rollback.State, Is.SameAs(forcing));
            Assert.That(rollback.Effects, Is.Empty);
            Assert.That(pastDeadline.State, Is.SameAs(forcing));
            Assert.That(strayAck.State, Is.SameAs(forcing));
        });
    }

    [Test]
    public void TerminationDecidedAbortWhileForcingPreCommit_AbortReplacesThePreCommitRecord()
    {
        var aborting = ForcingPreCommit().Apply(Decided(TransactionOutcome.Aborted));
        var transition = aborting.ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(aborting.Effects.OfType<RecordAbort>().Single().AfterPreCommit, Is.True);
            Assert.That(aborting.State.AbortReplacesPreCommit, Is.True);
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(transition.Effects.OfType<SendAbort>().Select(e => e.Participant), Is.EqualTo(new[] { A, B, C }));
        });
    }

    // ---- PreCommitting ------------------------------------------------------------------------

    [Test]
    public void FirstPreCommitAcknowledgementOfThree_WaitsForAMajority()
    {
        var transition = PreCommitting().Apply(new PreCommitAcknowledged(B));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.PreCommitting));
            Assert.That(transition.Effects, Is.Empty);
            Assert.That(transition.State.UnacknowledgedPreCommit, Is.EqualTo(new[] { A, C }));
        });
    }

    [Test]
    public void MajorityOfPreCommitAcknowledgements_ForcesTheCommitDecision()
    {
        var transition = PreCommitting().Apply(new PreCommitAcknowledged(B)).Apply(new PreCommitAcknowledged(A), T0.AddSeconds(2));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Deciding));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new ForceCommitDecision() }));
            Assert.That(transition.State.DecidedAt, Is.EqualTo(T0.AddSeconds(2)));
            Assert.That(transition.State.TerminationRound, Is.Null, "the coordinator decided itself");
        });
    }

    [TestCase(1, 1)]
    [TestCase(2, 2)]
    [TestCase(3, 2)]
    [TestCase(4, 3)]
    [TestCase(5, 3)]
    public void PreCommitQuorum_IsAMajorityOfAllParticipants(int participants, int quorum)
    {
        var all = new[] { A, B, C, D, Stranger }.Take(participants).ToArray();

        Assert.That(Begin3(all).State.PreCommitQuorum, Is.EqualTo(quorum));
    }

    [Test]
    public void TwoParticipants_CommitNeedsBothPreCommitAcknowledgements()
    {
        var preCommitting = Begin3(A, B).Apply(Yes(A)).Apply(Yes(B)).Apply(new PreCommitDurable());

        var one = preCommitting.Apply(new PreCommitAcknowledged(A));
        var both = one.Apply(new PreCommitAcknowledged(B));

        Assert.Multiple(() =>
        {
            Assert.That(one.State.Phase, Is.EqualTo(TransactionPhase.PreCommitting));
            Assert.That(both.State.Phase, Is.EqualTo(TransactionPhase.Deciding));
        });
    }

    [Test]
    public void DuplicateOrStrangerPreCommitAcknowledgements_AreIgnored()
    {
        var once = PreCommitting().Apply(new PreCommitAcknowledged(A));

        var twice = once.Apply(new PreCommitAcknowledged(A));
        var stranger = once.Apply(new PreCommitAcknowledged(Stranger));

        Assert.Multiple(() =>
        {
            Assert.That(twice.State, Is.SameAs(once.State));
            Assert.That(stranger.State, Is.SameAs(once.State));
        });
    }

    [Test]
    public void NoMajorityInTime_RedrivesPreCommitToTheSilentOnes_WithBackoff_NeverAborts()
    {
        var acked = PreCommitting().Apply(new PreCommitAcknowledged(A));

        var first = acked.Apply(new Tick(), T0 + Settings.RedriveInitialInterval);
        var second = first.Apply(new Tick(), T0 + Settings.RedriveInitialInterval + first.State.RetryInterval);
        var muchLater = second.Apply(new Tick(), T0 + TimeSpan.FromHours(1));

        Assert.Multiple(() =>
        {
            Assert.That(first.Effects, Is.EqualTo(new TransactionEffect[] { new SendPreCommit(B), new SendPreCommit(C) }));
            Assert.That(first.State.Redrives, Is.EqualTo(1));
            Assert.That(first.State.RetryInterval, Is.EqualTo(Settings.RedriveInitialInterval * 2));
            Assert.That(second.State.Redrives, Is.EqualTo(2));
            Assert.That(muchLater.State.Phase, Is.EqualTo(TransactionPhase.PreCommitting));
            Assert.That(muchLater.Effects.OfType<SendAbort>(), Is.Empty);
        });
    }

    [Test]
    public void RepeatedYesVoteWhilePreCommitting_ResendsPreCommitToThatParticipant()
    {
        var transition = PreCommitting().Apply(Yes(C));

        Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendPreCommit(C) }));
    }

    [Test]
    public void RollbackOrCommitRequestWhilePreCommitting_WaitsForTheOutcome()
    {
        var preCommitting = PreCommitting();

        var rollback = preCommitting.Apply(new RollbackRequested("too late"));
        var commit = preCommitting.Apply(new CommitRequested([A, B, C], null));

        Assert.Multiple(() =>
        {
            Assert.That(rollback.State, Is.SameAs(preCommitting));
            Assert.That(rollback.Effects, Is.Empty);
            Assert.That(commit.Effects, Is.Empty);
        });
    }

    [Test]
    public void BranchCommittedWhilePreCommitting_MeansTheParticipantsDecidedCommit_IsAdopted()
    {
        var transition = PreCommitting().Apply(new CommitAcknowledged(C));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Deciding));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new ForceCommitDecision() }));
        });
    }

    [Test]
    public void BranchAbortedWhilePreCommitting_MeansTheParticipantsDecidedAbort_IsAdopted()
    {
        var aborting = PreCommitting().Apply(new AbortAcknowledged(C));
        var transition = aborting.ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(aborting.Effects.OfType<RecordAbort>().Single().AfterPreCommit, Is.True);
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(transition.Effects.OfType<ReplyToInitiator>().Single().Outcome, Is.EqualTo(TransactionOutcome.Aborted));
            Assert.That(transition.State.Reason, Does.Contain("reported by audit-c"));
        });
    }

    [Test]
    public void StrangerCommitOrAbortAcknowledgementWhilePreCommitting_IsIgnored()
    {
        var preCommitting = PreCommitting();

        Assert.Multiple(() =>
        {
            Assert.That(preCommitting.Apply(new CommitAcknowledged(Stranger)).State, Is.SameAs(preCommitting));
            Assert.That(preCommitting.Apply(new AbortAcknowledged(Stranger)).State, Is.SameAs(preCommitting));
        });
    }

    [Test]
    public void TerminationDecidedWhilePreCommitting_IsAdoptedEitherWay()
    {
        var committed = PreCommitting().Apply(Decided(TransactionOutcome.Committed, round: 3));
        var aborting = PreCommitting().Apply(Decided(TransactionOutcome.Aborted, round: 3));
        var aborted = aborting.ThenAbortRecorded();
        var pending = PreCommitting().Apply(Decided(TransactionOutcome.Pending, round: 3));

        Assert.Multiple(() =>
        {
            Assert.That(committed.State.Phase, Is.EqualTo(TransactionPhase.Deciding));
            Assert.That(committed.State.TerminationRound, Is.EqualTo(3));
            Assert.That(aborted.State.Phase, Is.EqualTo(TransactionPhase.Aborted));
            Assert.That(aborted.State.TerminationRound, Is.EqualTo(3));
            Assert.That(aborting.Effects.OfType<RecordAbort>().Single().AfterPreCommit, Is.True);
            Assert.That(pending.State.Phase, Is.EqualTo(TransactionPhase.PreCommitting), "Pending is no decision");
        });
    }

    // ---- commit decided: phase 3 is 2PC's phase 2 ----------------------------------------------

    [Test]
    public void CommitDecisionDurable_SendsDoCommitToEveryParticipant_IncludingOnesThatMissedPreCommit()
    {
        var deciding = PreCommitting().Apply(new PreCommitAcknowledged(A)).Apply(new PreCommitAcknowledged(B)).State;

        var transition = deciding.Apply(new DecisionDurable());

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Committing));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[]
            {
                new ReplyToInitiator(TransactionOutcome.Committed, null), new SendCommit(A), new SendCommit(B), new SendCommit(C),
            }));
        });
    }

    [Test]
    public void EveryCommitAcknowledged_Commits_AndLatePreCommitAcksOrMatchingDecisionsChangeNothing()
    {
        var committing = PreCommitting().Apply(new PreCommitAcknowledged(A)).Apply(new PreCommitAcknowledged(B)).Apply(new DecisionDurable()).State;

        var lateAck = committing.Apply(new PreCommitAcknowledged(C));
        var decided = committing.Apply(Decided(TransactionOutcome.Committed));
        var committed = committing.Apply(new CommitAcknowledged(A)).Apply(new CommitAcknowledged(B)).Apply(new CommitAcknowledged(C));

        Assert.Multiple(() =>
        {
            Assert.That(lateAck.State, Is.SameAs(committing));
            Assert.That(decided.State, Is.SameAs(committing));
            Assert.That(committed.State.Phase, Is.EqualTo(TransactionPhase.Committed));
            Assert.That(committed.State.Protocol, Is.EqualTo(CommitProtocol.ThreePhase));
            Assert.That(committed.Effects, Is.EqualTo(new TransactionEffect[] { new RecordEnd() }));
        });
    }

    [Test]
    public void ContradictingAbortDecisionAfterCommit_ChangesNothing()
    {
        var deciding = PreCommitting().Apply(new PreCommitAcknowledged(A)).Apply(new PreCommitAcknowledged(B)).State;

        var transition = deciding.Apply(Decided(TransactionOutcome.Aborted));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State, Is.SameAs(deciding));
            Assert.That(transition.Effects, Is.Empty);
        });
    }

    // ---- Aborted ------------------------------------------------------------------------------

    [Test]
    public void Aborted_LatePreCommitAcknowledgement_IsToldToAbort()
    {
        var aborted = PreCommitting().Apply(Decided(TransactionOutcome.Aborted)).ThenAbortRecorded().State;

        var transition = aborted.Apply(new PreCommitAcknowledged(C));
        var decidedAgain = aborted.Apply(Decided(TransactionOutcome.Aborted, round: 4));
        var commitRequest = aborted.Apply(new CommitRequested([A, B, C], null));

        Assert.Multiple(() =>
        {
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendAbort(C, aborted.Reason!) }));
            Assert.That(decidedAgain.Effects, Is.Empty);
            Assert.That(commitRequest.Effects.OfType<ReplyToInitiator>().Single().Outcome, Is.EqualTo(TransactionOutcome.Aborted));
        });
    }

    // ---- recovery -----------------------------------------------------------------------------

    [Test]
    public void RecoveredWithPreCommitDurable_ResendsPreCommitToEveryone_AndWaitsForAMajorityAgain()
    {
        var restart = T0.AddMinutes(5);
        var recovered = new Recovered(CommitProtocol.ThreePhase, List(A, B, C), [], T0, T0, TransactionPhase.PreCommitting);

        var transition = Rules.Recover(Tx, recovered, restart);

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.PreCommitting));
            Assert.That(transition.State.Protocol, Is.EqualTo(CommitProtocol.ThreePhase));
            Assert.That(transition.State.PreCommitAcknowledged, Is.Empty);
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendPreCommit(A), new SendPreCommit(B), new SendPreCommit(C) }));
            Assert.That(transition.State.NextDeadline, Is.EqualTo(restart + Settings.RedriveInitialInterval));
        });
    }

    [Test]
    public void RecoveredWithCommitDurable_FinishesPhaseThree()
    {
        var recovered = new Recovered(CommitProtocol.ThreePhase, List(A, B, C), List(A), T0, T0);

        var transition = Rules.Recover(Tx, recovered, T0.AddMinutes(5));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Committing));
            Assert.That(transition.State.Protocol, Is.EqualTo(CommitProtocol.ThreePhase));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendCommit(B), new SendCommit(C) }));
        });
    }

    [Test]
    public void WholeRun_CanCommitPreCommitDoCommit_InThatOrder()
    {
        var effects = new List<TransactionEffect>();
        var t = Begin3(A, B);
        effects.AddRange(t.Effects);
        foreach (var e in new TransactionEvent[]
        {
            Yes(A), Yes(B), new PreCommitDurable(), new PreCommitAcknowledged(A), new PreCommitAcknowledged(B),
            new DecisionDurable(), new CommitAcknowledged(A), new CommitAcknowledged(B),
        })
        {
            t = t.Apply(e);
            effects.AddRange(t.Effects);
        }

        Assert.That(effects, Is.EqualTo(new TransactionEffect[]
        {
            new SendPrepare(A), new SendPrepare(B),
            new ForcePreCommit(),
            new SendPreCommit(A), new SendPreCommit(B),
            new ForceCommitDecision(),
            new ReplyToInitiator(TransactionOutcome.Committed, null), new SendCommit(A), new SendCommit(B),
            new RecordAck(A), new RecordEnd(),
        }));
    }
}
