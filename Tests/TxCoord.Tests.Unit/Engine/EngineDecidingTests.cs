using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using static TxCoord.Tests.Unit.Engine.EngineKit;

namespace TxCoord.Tests.Unit.Engine;

public sealed class EngineDecidingTests
{
    [Test]
    public void DecisionDurable_RepliesCommittedThenSendsCommitToEveryYesVoter()
    {
        var transition = Begin(A, B, C).Apply(Yes(A)).Apply(ReadOnly(C)).Apply(Yes(B)).Apply(new DecisionDurable());

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Committing));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[]
            {
                new ReplyToInitiator(TransactionOutcome.Committed, null), new SendCommit(A), new SendCommit(B),
            }));
        });
    }

    [Test]
    public void DecisionDurable_SchedulesTheFirstRedriveAfterTheInitialInterval()
    {
        var state = Deciding().Apply(new DecisionDurable(), T0.AddSeconds(5)).State;

        Assert.Multiple(() =>
        {
            Assert.That(state.RetryInterval, Is.EqualTo(Settings.RedriveInitialInterval));
            Assert.That(state.NextDeadline, Is.EqualTo(T0.AddSeconds(5) + Settings.RedriveInitialInterval));
        });
    }

    [Test]
    public void WhileTheDecisionWriteIsInFlight_NoTickIsNeeded()
    {
        Assert.That(Deciding().NextDeadline, Is.Null);
    }

    [Test]
    public void DecisionWriteFailed_NeverAborts_StaysDecidingWithNoEffectsAndSchedulesARetry()
    {
        var transition = Deciding().Apply(new DecisionWriteFailed("connection reset"), T0.AddSeconds(1));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Deciding));
            Assert.That(transition.Effects, Is.Empty);
            Assert.That(transition.State.NextDeadline, Is.EqualTo(T0.AddSeconds(1) + Settings.RedriveInitialInterval));
        });
    }

    [Test]
    public void TickBeforeTheRetryIsDue_DoesNothing()
    {
        var failed = Deciding().Apply(new DecisionWriteFailed("timeout")).State;

        var transition = failed.Apply(new Tick(), T0 + Settings.RedriveInitialInterval - TimeSpan.FromTicks(1));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State, Is.SameAs(failed));
            Assert.That(transition.Effects, Is.Empty);
        });
    }

    [Test]
    public void TickWhenTheRetryIsDue_ForcesTheSameDecisionAgainAndWaitsForItsResult()
    {
        var failed = Deciding().Apply(new DecisionWriteFailed("timeout")).State;

        var transition = failed.Apply(new Tick(), T0 + Settings.RedriveInitialInterval);

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Deciding));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new ForceCommitDecision() }));
            Assert.That(transition.State.DecisionWriteAttempts, Is.EqualTo(2));
            Assert.That(transition.State.NextDeadline, Is.Null);
        });
    }

    [Test]
    public void RepeatedDecisionWriteFailures_BackOffDoublingUpToTheMaximum_AndNeverGiveUp()
    {
        var state = Deciding();
        var now = T0;
        var waits = new List<double>();
        for (var attempt = 0; attempt < 7; attempt++)
        {
            state = state.Apply(new DecisionWriteFailed("down"), now).State;
            var due = state.NextDeadline!.Value;
            waits.Add((due - now).TotalSeconds);
            now = due;
            var retry = state.Apply(new Tick(), now);
            Assert.That(retry.Effects, Is.EqualTo(new TransactionEffect[] { new ForceCommitDecision() }));
            state = retry.State;
        }

        Assert.Multiple(() =>
        {
            Assert.That(waits, Is.EqualTo(new double[] { 1, 2, 4, 8, 8, 8, 8 }));
            Assert.That(state.Phase, Is.EqualTo(TransactionPhase.Deciding));
            Assert.That(state.DecisionWriteAttempts, Is.EqualTo(8));
        });
    }

    [Test]
    public void DecisionDurableAfterFailedWrites_CommitsAsUsual()
    {
        var state = Deciding().Apply(new DecisionWriteFailed("timeout")).Apply(new Tick(), T0.AddSeconds(1)).State;

        var transition = state.Apply(new DecisionDurable(), T0.AddSeconds(2));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State.Phase, Is.EqualTo(TransactionPhase.Committing));
            Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[]
            {
                new ReplyToInitiator(TransactionOutcome.Committed, null), new SendCommit(A), new SendCommit(B),
            }));
        });
    }

    [Test]
    public void SecondFailureReportBeforeTheRetry_DoesNotPostponeTheRetry()
    {
        var failed = Deciding().Apply(new DecisionWriteFailed("timeout")).State;

        var transition = failed.Apply(new DecisionWriteFailed("again"), T0.AddSeconds(0.5));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State, Is.SameAs(failed));
            Assert.That(transition.Effects, Is.Empty);
        });
    }

    [Test]
    public void TickPastTheVoteAndTransactionDeadlines_WhileDeciding_DoesNotAbort()
    {
        var before = Deciding();

        var transition = before.Apply(new Tick(), T0.AddHours(1));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State, Is.SameAs(before));
            Assert.That(transition.Effects, Is.Empty);
        });
    }

    [Test]
    public void RollbackRequested_WhileDeciding_NeitherAbortsNorAnswersBeforeTheDecisionIsDurable()
    {
        var before = Deciding();

        var transition = before.Apply(new RollbackRequested("changed my mind"));

        Assert.Multiple(() =>
        {
            Assert.That(transition.State, Is.SameAs(before));
            Assert.That(transition.Effects, Is.Empty);
        });
    }

    [TestCaseSource(nameof(IrrelevantWhileDeciding))]
    public void DuplicatesAndAcknowledgements_WhileDeciding_AreIgnored(object @event)
    {
        var before = Deciding();

        var transition = before.Apply((TransactionEvent)@event);

        Assert.Multiple(() =>
        {
            Assert.That(transition.State, Is.SameAs(before));
            Assert.That(transition.Effects, Is.Empty);
        });
    }

    private static IEnumerable<TestCaseData> IrrelevantWhileDeciding() =>
    [
        new TestCaseData(new CommitRequested(List(A, B), null)).SetArgDisplayNames("DuplicateCommitRequested"),
        new TestCaseData(Yes(A)).SetArgDisplayNames("DuplicateYes"),
        new TestCaseData(No(B)).SetArgDisplayNames("LateNo"),
        new TestCaseData(new CommitAcknowledged(A)).SetArgDisplayNames("CommitAcknowledged"),
        new TestCaseData(new AbortAcknowledged(A)).SetArgDisplayNames("AbortAcknowledged"),
    ];
}
