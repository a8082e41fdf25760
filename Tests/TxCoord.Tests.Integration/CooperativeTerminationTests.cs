using TxCoord.Contracts;
using TxCoord.Participants;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// 2PC when the coordinator dies, with the real coordinator and three bank participant services as
/// child processes killed at their crash points: prepared participants ask their peers; one that knows
/// the outcome lets them finish, otherwise they stay prepared, say they are blocked, and finish when
/// the coordinator returns. A 2PC participant never decides alone.
/// </summary>
[NonParallelizable]
public sealed class CooperativeTerminationTests
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(90);

    // Crash point names (Shared/Faults/CrashPoint.cs); a misspelt one stops the process at start.
    private const string AfterCommitSent = "coordinator.after-commit-sent";
    private const string AfterDecision = "coordinator.after-decision";

    private static Dictionary<string, string> CrashAt(string point) => new() { ["TXCOORD_CRASH_AT"] = point, ["TXCOORD_CRASH_AFTER"] = "1" };

    [Test]
    public async Task CoordinatorKilledForGoodAfterTheDecisionReachedOneParticipant_TheOthersLearnItFromThatPeer()
    {
        await using var cluster = await ProcessCluster.CreateAsync();
        await cluster.StartAllAsync(CrashAt(AfterCommitSent));
        var (a, b, c) = (cluster.ParticipantIds[0], cluster.ParticipantIds[1], cluster.ParticipantIds[2]);
        var tx = await cluster.BeginTransferAsync(CommitProtocol.TwoPhase, [c, a, b]);

        var commit = tx.CommitAsync();
        await cluster.WaitForCrashAsync(cluster.CoordinatorId, AfterCommitSent);

        // Only c was told to commit; nobody restarts the coordinator.
        Assert.That(await cluster.WaitUntilFinishedAsync(tx.Id, Generous), Is.All.EqualTo(BranchFinish.Committed));
        Assert.Multiple(async () =>
        {
            Assert.That(await cluster.CountPreparedAsync(), Is.Zero);
            Assert.That((await commit).Outcome, Is.EqualTo(CommitOutcome.Committed), "the initiator is answered once the decision is durable, before any CommitBranch");
            // Each learns it from c, or from the other one once that one has learned it from c.
            Assert.That(cluster.Process(a).Output, Does.Contain($"learned from peer {c} that its branch is Committed").Or.Contain($"learned from peer {b} that its branch is Committed"));
            Assert.That(cluster.Process(b).Output, Does.Contain($"learned from peer {c} that its branch is Committed").Or.Contain($"learned from peer {a} that its branch is Committed"));
            Assert.That(cluster.Process(a).Output + cluster.Process(b).Output, Does.Contain($"learned from peer {c} that its branch is Committed"), "the first to learn it learns it from c");
        });
        await cluster.AssertAppliedAsync(tx.Id, committed: true);
    }

    [Test]
    public async Task CoordinatorKilledBeforeTheDecisionReachedAnyone_ParticipantsStayPreparedAndSayBlocked_ThenFinishWhenItReturns()
    {
        await using var cluster = await ProcessCluster.CreateAsync();
        await cluster.StartAllAsync(CrashAt(AfterDecision));
        var tx = await cluster.BeginTransferAsync(CommitProtocol.TwoPhase, cluster.ParticipantIds);

        var commit = tx.CommitAsync();
        await cluster.WaitForCrashAsync(cluster.CoordinatorId, AfterDecision);

        foreach (var participant in cluster.ParticipantIds)
        {
            await cluster.Process(participant).WaitForOutputAsync($"Transaction {tx.Id}: participant {participant} is blocked (2PC)", Generous, occurrences: 2);
        }

        Assert.Multiple(async () =>
        {
            Assert.That(await cluster.BranchesAsync(tx.Id), Is.All.EqualTo(BranchFinish.Prepared), "in 2PC nobody decides alone");
            Assert.That(await cluster.JournalStateAsync(tx.Id), Is.EqualTo("committing"));
            Assert.That((await commit).Outcome, Is.EqualTo(CommitOutcome.InDoubt));
        });

        await cluster.StartCoordinatorAsync();

        Assert.That(await cluster.WaitUntilFinishedAsync(tx.Id, Generous), Is.All.EqualTo(BranchFinish.Committed));
        await Eventually.WaitForAsync(() => cluster.JournalStateAsync(tx.Id), s => s == "committed", Generous, "the journal entry to close");
        Assert.That(await cluster.CountPreparedAsync(), Is.Zero);
        await cluster.AssertAppliedAsync(tx.Id, committed: true);
    }
}
