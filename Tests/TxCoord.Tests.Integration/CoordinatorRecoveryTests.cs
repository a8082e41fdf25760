using System.Collections.Immutable;
using TxCoord.Contracts;
using TxCoord.Coordinator.Journal;
using TxCoord.Participants;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// The coordinator stopped and started again (an orderly stop here; real process kills come with
/// the crash matrix): what is durable in the journal is driven to its end, what is not is aborted
/// by presumption, and a silent participant costs only the vote timeout.
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class CoordinatorRecoveryTests
{
    [Test]
    public async Task ParticipantSilentDuringPrepare_VoteTimeoutAborts_AndTheParticipantCatchesUpLater()
    {
        await using var cluster = await TxCoordCluster.StartAsync(new ClusterOptions { VoteTimeout = TimeSpan.FromSeconds(2) });
        var (first, second) = (cluster.ParticipantIds[0], cluster.ParticipantIds[1]);
        var key = $"k-{Guid.NewGuid():N}";
        var tx = cluster.Initiator.Begin();
        Assert.That((await tx.SendAsync(first, new PutItem { Key = key, Value = "v" })).Succeeded);
        Assert.That((await tx.SendAsync(second, new PutItem { Key = key, Value = "v" })).Succeeded);
        await cluster.StopParticipantAsync(second); // its open branch dies with its connection

        var result = await tx.CommitAsync();

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted));
        Assert.That(result.Reason, Does.Contain("timeout").IgnoreCase);
        await cluster.StartParticipantAsync(second); // it now reads the stale Prepare from its queue and votes No
        await Eventually.WaitForAsync(cluster.CountPreparedAsync, n => n == 0, TimeSpan.FromSeconds(20), "nothing prepared");
        Assert.That(await cluster.ReadEverywhereAsync(key), Is.All.Null);
    }

    [Test]
    public async Task CommitDecisionDurable_CoordinatorStoppedBeforeSendingCommit_CommitsEverywhereAfterRestart()
    {
        await using var cluster = await TxCoordCluster.StartAsync();
        await using var probe = await ProbeCoordinator.StartAsync(cluster);
        var coordinator = new CoordinatorId(cluster.CoordinatorId);
        await cluster.StopCoordinatorAsync();

        // Prepare both branches for the (stopped) coordinator, as if it had sent Prepare and died after forcing Commit.
        var id = TransactionId.New();
        var key = $"k-{id}";
        var participants = cluster.ParticipantIds.Select(p => new ParticipantId(p)).ToImmutableArray();
        foreach (var participant in cluster.ParticipantIds)
        {
            var work = await probe.SendRawWorkAsync(participant, new PutItem { Key = key, Value = "v" }, WorkHeaders(id, coordinator));
            Assert.That(work.Succeeded, Is.True, work.Reason);
            await probe.SendAsync(participant, new PrepareBranch
            {
                TransactionId = id, Coordinator = coordinator, Participant = new ParticipantId(participant), Participants = participants,
            });
        }

        await Eventually.WaitForAsync(cluster.CountPreparedAsync, n => n == 2, TimeSpan.FromSeconds(15), "both branches prepared");
        await using (var journal = new PostgresTransactionJournal(cluster.JournalConnectionString))
        {
            var now = DateTimeOffset.UtcNow;
            await journal.WriteCommitDecisionAsync(
                new CommitDecision(id, coordinator, CommitProtocol.TwoPhase, participants, now, now), now, CancellationToken.None);
        }

        await cluster.StartCoordinatorAsync();

        await Eventually.WaitForAsync(cluster.CountOpenJournalEntriesAsync, n => n == 0, TimeSpan.FromSeconds(30), "the journal entry closed");
        Assert.That(await cluster.ReadEverywhereAsync(key), Is.All.EqualTo("v"));
        Assert.That(await cluster.CountPreparedAsync(), Is.Zero);
        Assert.That((await cluster.Initiator.GetOutcomeAsync(id)).Outcome, Is.EqualTo(CommitOutcome.Committed));
    }

    [Test]
    public async Task CoordinatorGoneBeforeDeciding_PreparedBranchesStayBlocked_ThenAbortWhenItReturns()
    {
        await using var cluster = await TxCoordCluster.StartAsync(new ClusterOptions { DecisionTimeout = TimeSpan.FromSeconds(1) });
        await using var probe = await ProbeCoordinator.StartAsync(cluster);
        var coordinator = new CoordinatorId(cluster.CoordinatorId);
        await cluster.StopCoordinatorAsync();

        var id = TransactionId.New();
        var key = $"k-{id}";
        foreach (var participant in cluster.ParticipantIds)
        {
            Assert.That((await probe.SendRawWorkAsync(participant, new PutItem { Key = key, Value = "v" }, WorkHeaders(id, coordinator))).Succeeded);
            await probe.SendAsync(participant, new PrepareBranch { TransactionId = id, Coordinator = coordinator, Participant = new ParticipantId(participant) });
        }

        await Eventually.WaitForAsync(cluster.CountPreparedAsync, n => n == 2, TimeSpan.FromSeconds(15), "both branches prepared");
        // In 2PC a participant that voted Yes never decides alone: with the coordinator away it stays prepared and says it is blocked.
        await Eventually.WaitForAsync(
            () => Task.FromResult(cluster.ParticipantIds.Sum(p => cluster.ParticipantRuntime(p).BlockedBranches)),
            n => n == 2, TimeSpan.FromSeconds(30), "both participants to report a blocked branch");
        Assert.That(await cluster.CountPreparedAsync(), Is.EqualTo(2));

        await cluster.StartCoordinatorAsync();

        // No commit decision was ever durable: presumed abort.
        await Eventually.WaitForAsync(cluster.CountPreparedAsync, n => n == 0, TimeSpan.FromSeconds(30), "both branches rolled back");
        Assert.That(await cluster.ReadEverywhereAsync(key), Is.All.Null);
        await Eventually.WaitForAsync(
            () => Task.FromResult(cluster.ParticipantIds.Sum(p => cluster.ParticipantRuntime(p).BlockedBranches)),
            n => n == 0, TimeSpan.FromSeconds(30), "no participant blocked any more");
    }

    private static Dictionary<string, object> WorkHeaders(TransactionId id, CoordinatorId coordinator) => new()
    {
        [TxCoordHeaders.TransactionId] = id.Value.ToString(),
        [TxCoordHeaders.CoordinatorId] = coordinator.Value,
    };
}
