using System.Diagnostics;
using TxCoord.Contracts;
using TxCoord.Participants;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// 3PC when the coordinator dies: the real coordinator and three bank participant services as child
/// processes, killed by their crash points (SIGKILL), over the real RabbitMQ and PostgreSQL. The
/// participants finish by the termination protocol without the coordinator; a coordinator that comes
/// back agrees; a side without a majority of the participants stays blocked.
/// One test at a time: each runs four services on a small machine.
/// </summary>
[NonParallelizable]
public sealed class ThreePhaseTerminationTests
{
    /// <summary>
    /// CR-14's stated bound: with DecisionTimeout 1 s, OutcomeQueryTimeout 1 s and TerminationTimeout
    /// 2 s the survivors need a few seconds (measured: see the test's output); the bound leaves room
    /// for a loaded machine.
    /// </summary>
    private static readonly TimeSpan SurvivorsBound = TimeSpan.FromSeconds(30);

    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(90);

    // Crash point names (Shared/Faults/CrashPoint.cs); a misspelt one stops the process at start.
    private const string AfterPreCommitSent = "coordinator.after-precommit-sent";
    private const string AfterPreCommitDurable = "coordinator.after-precommit-durable";
    private const string TerminationLeader = "participant.termination-leader";

    private static Dictionary<string, string> CrashAt(string point, int occurrence = 1) => new()
    {
        ["TXCOORD_CRASH_AT"] = point,
        ["TXCOORD_CRASH_AFTER"] = occurrence.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    [Test]
    public async Task CR14_CoordinatorKilledForGoodAfterPreCommitReachedOneOfThree_SurvivorsCommitWithoutIt_WithinTheStatedTime()
    {
        await using var cluster = await ProcessCluster.CreateAsync();
        await cluster.StartAllAsync(CrashAt(AfterPreCommitSent));
        var (a, b, c) = (cluster.ParticipantIds[0], cluster.ParticipantIds[1], cluster.ParticipantIds[2]);
        var tx = await cluster.BeginTransferAsync(CommitProtocol.ThreePhase, [b, a, c]);

        var commit = tx.CommitAsync();
        await cluster.WaitForCrashAsync(cluster.CoordinatorId, AfterPreCommitSent);
        var sinceDeath = Stopwatch.StartNew();

        // Only b got PreCommit; a and c are merely prepared. Nobody restarts the coordinator.
        var finishes = await cluster.WaitUntilFinishedAsync(tx.Id, SurvivorsBound);
        var elapsed = sinceDeath.Elapsed;
        await TestContext.Progress.WriteLineAsync(
            $"CR-14: the three survivors finished ({string.Join(", ", finishes)}) {elapsed.TotalSeconds:0.00} s after the coordinator died (bound {SurvivorsBound.TotalSeconds:0} s)");

        Assert.Multiple(async () =>
        {
            Assert.That(finishes, Is.All.EqualTo(BranchFinish.Committed), "a PreCommitted participant was reached: the outcome is commit");
            Assert.That(elapsed, Is.LessThan(SurvivorsBound));
            Assert.That(await cluster.CountPreparedAsync(), Is.Zero);
            Assert.That((await commit).Outcome, Is.EqualTo(CommitOutcome.InDoubt), "the initiator's coordinator is gone: it cannot be told");
        });
        await cluster.AssertAppliedAsync(tx.Id, committed: true);
        Assert.That(cluster.Process(a).Output + cluster.Process(b).Output + cluster.Process(c).Output, Does.Contain("decided Committed without the coordinator"));
    }

    [Test]
    public async Task CoordinatorKilledBeforeAnyPreCommit_AllAbortWithoutIt_AndWhenItReturnsItAgrees()
    {
        await using var cluster = await ProcessCluster.CreateAsync();
        await cluster.StartAllAsync(CrashAt(AfterPreCommitDurable));
        var tx = await cluster.BeginTransferAsync(CommitProtocol.ThreePhase, cluster.ParticipantIds);

        var commit = tx.CommitAsync();
        await cluster.WaitForCrashAsync(cluster.CoordinatorId, AfterPreCommitDurable);

        var finishes = await cluster.WaitUntilFinishedAsync(tx.Id, Generous);
        Assert.Multiple(async () =>
        {
            Assert.That(finishes, Is.All.EqualTo(BranchFinish.Aborted), "nobody PreCommitted: the outcome is abort");
            Assert.That(await cluster.JournalStateAsync(tx.Id), Is.EqualTo("precommitting"), "the coordinator died with PreCommit durable");
        });
        await cluster.AssertAppliedAsync(tx.Id, committed: false);
        Assert.That((await commit).Outcome, Is.EqualTo(CommitOutcome.InDoubt));

        // The coordinator comes back: it must adopt the participants' abort, not commit on its PreCommit record.
        await cluster.StartCoordinatorAsync();
        await Eventually.WaitForAsync(() => cluster.JournalStateAsync(tx.Id), s => s == "aborted", Generous, "the journal to adopt the abort");
        var asked = await cluster.Initiator.GetOutcomeAsync(tx.Id);
        Assert.Multiple(async () =>
        {
            Assert.That(asked.Outcome, Is.EqualTo(CommitOutcome.Aborted));
            Assert.That(await cluster.BranchesAsync(tx.Id), Is.All.EqualTo(BranchFinish.Aborted));
            Assert.That(await cluster.CountPreparedAsync(), Is.Zero);
        });
    }

    [Test]
    public async Task CoordinatorReturnsAfterTheParticipantsCommitted_AdoptsTheirCommit_AndTellsTheInitiator()
    {
        await using var cluster = await ProcessCluster.CreateAsync();
        await cluster.StartAllAsync(CrashAt(AfterPreCommitSent));
        var tx = await cluster.BeginTransferAsync(CommitProtocol.ThreePhase, cluster.ParticipantIds);
        var commit = tx.CommitAsync();
        await cluster.WaitForCrashAsync(cluster.CoordinatorId, AfterPreCommitSent);
        Assert.That(await cluster.WaitUntilFinishedAsync(tx.Id, Generous), Is.All.EqualTo(BranchFinish.Committed));
        Assert.That((await commit).Outcome, Is.EqualTo(CommitOutcome.InDoubt));

        await cluster.StartCoordinatorAsync();

        await Eventually.WaitForAsync(() => cluster.JournalStateAsync(tx.Id), s => s == "committed", Generous, "the journal to adopt the commit and close it");
        var asked = await cluster.Initiator.GetOutcomeAsync(tx.Id);
        Assert.Multiple(async () =>
        {
            Assert.That(asked.Outcome, Is.EqualTo(CommitOutcome.Committed));
            Assert.That(await cluster.CountPreparedAsync(), Is.Zero);
            Assert.That(cluster.Process(cluster.CoordinatorId).Output, Does.Contain("termination protocol decided Committed"));
        });
        await cluster.AssertAppliedAsync(tx.Id, committed: true);
    }

    [Test]
    public async Task LeaderKilledDuringTermination_TheOthersFinishInANewRound_AndItAgreesWhenItReturns()
    {
        await using var cluster = await ProcessCluster.CreateAsync();
        var (a, b, c) = (cluster.ParticipantIds[0], cluster.ParticipantIds[1], cluster.ParticipantIds[2]);
        await Task.WhenAll(
            cluster.StartCoordinatorAsync(CrashAt(AfterPreCommitSent)),
            cluster.StartParticipantAsync(a, CrashAt(TerminationLeader)),
            cluster.StartParticipantAsync(b),
            cluster.StartParticipantAsync(c));

        // PreCommit reaches c only. a (the lowest id) leads round 1 and dies once b and c joined it.
        var tx = await cluster.BeginTransferAsync(CommitProtocol.ThreePhase, [c, b, a]);
        _ = tx.CommitAsync();
        await cluster.WaitForCrashAsync(cluster.CoordinatorId, AfterPreCommitSent);
        await cluster.WaitForCrashAsync(a, TerminationLeader, Generous);

        var survivors = await cluster.WaitUntilFinishedAsync(tx.Id, Generous, [b, c]);
        Assert.Multiple(async () =>
        {
            Assert.That(survivors, Is.All.EqualTo(BranchFinish.Committed), "c PreCommitted in round 0: round 2 commits");
            Assert.That(await cluster.BranchAsync(a, tx.Id), Is.EqualTo(BranchFinish.Prepared), "the dead leader's branch waits for it");
            Assert.That(cluster.Process(b).Output, Does.Contain("leads termination round 2"));
        });

        await cluster.StartParticipantAsync(a);

        Assert.That(await cluster.WaitUntilFinishedAsync(tx.Id, Generous), Is.All.EqualTo(BranchFinish.Committed));
        Assert.That(await cluster.CountPreparedAsync(), Is.Zero);
        await cluster.AssertAppliedAsync(tx.Id, committed: true);
    }

    /// <summary>
    /// The partition rule. a got PreCommit; b and c are cut off from it (they drop every termination
    /// message, as a network partition would, and are slow to suspect the coordinator). Alone, a is a
    /// minority: it must not commit, though plain 3PC would (it is PreCommitted). Then a's side goes
    /// away and b and c, a majority, terminate: both only prepared, so they abort. When a comes back
    /// it learns the abort. Without the majority rule the two sides would have decided differently.
    /// </summary>
    [Test]
    public async Task Partition_MinorityWithPreCommitStaysBlocked_MajorityAborts_AndTheMinorityLearnsTheAbort()
    {
        await using var cluster = await ProcessCluster.CreateAsync();
        var (a, b, c) = (cluster.ParticipantIds[0], cluster.ParticipantIds[1], cluster.ParticipantIds[2]);
        var cutOff = new Dictionary<string, string>
        {
            ["TXCOORD_BUS_FAULTS"] = "drop:GetBranchState:*,drop:ProposeTermination:*,drop:TerminationDecided:*",
            ["TxCoord__Participant__DecisionTimeout"] = "00:10:00",
        };
        await Task.WhenAll(
            cluster.StartCoordinatorAsync(CrashAt(AfterPreCommitSent)),
            cluster.StartParticipantAsync(a),
            cluster.StartParticipantAsync(b, cutOff),
            cluster.StartParticipantAsync(c, cutOff));
        var tx = await cluster.BeginTransferAsync(CommitProtocol.ThreePhase, [a, b, c]);
        _ = tx.CommitAsync();
        await cluster.WaitForCrashAsync(cluster.CoordinatorId, AfterPreCommitSent);

        // a alone: several rounds, each short of a majority. It stays prepared and says it is blocked.
        await cluster.Process(a).WaitForOutputAsync("fewer than the majority 2 of 3", Generous, occurrences: 2);
        await cluster.Process(a).WaitForOutputAsync("is blocked", Generous);
        Assert.That(await cluster.BranchesAsync(tx.Id), Is.All.EqualTo(BranchFinish.Prepared), "nobody decided on the minority side");

        // The other side: a is gone, b and c (a majority) terminate without it.
        await cluster.KillAsync(a);
        await cluster.KillAsync(b);
        await cluster.KillAsync(c);
        await Task.WhenAll(cluster.StartParticipantAsync(b), cluster.StartParticipantAsync(c));
        Assert.That(await cluster.WaitUntilFinishedAsync(tx.Id, Generous, [b, c]), Is.All.EqualTo(BranchFinish.Aborted));

        // Healed: a comes back and learns the majority's outcome, though it had PreCommitted.
        await cluster.StartParticipantAsync(a);
        Assert.That(await cluster.WaitUntilFinishedAsync(tx.Id, Generous), Is.All.EqualTo(BranchFinish.Aborted));
        Assert.That(await cluster.CountPreparedAsync(), Is.Zero);
        await cluster.AssertAppliedAsync(tx.Id, committed: false);
    }
}
