using TxCoord.Participants;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// The first resolution pass after a participant's restart respects the decision timeout like
/// every other pass: a branch prepared early a moment ago is not presumed aborted at once, and the
/// initiator's commit that follows commits (issue 10, item 8).
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class FirstResolutionPassTests
{
    [Test]
    public async Task ParticipantRestartedRightAfterPreparingEarly_FirstPassLeavesTheYoungBranch_AndTheCommitCommits()
    {
        await using var cluster = await TxCoordCluster.StartAsync(new ClusterOptions { DecisionTimeout = TimeSpan.FromSeconds(30) });
        var (first, second) = (cluster.ParticipantIds[0], cluster.ParticipantIds[1]);
        var key = $"k-{Guid.NewGuid():N}";
        await using var tx = cluster.Initiator.Begin(new TransactionOptions { Participants = [first, second] });
        foreach (var participant in cluster.ParticipantIds)
        {
            var work = await tx.SendAsync(participant, new PutItem { Key = key, Value = "v" }, prepare: true);
            Assert.That(work.Prepared, Is.True, work.Reason);
        }

        await cluster.StopParticipantAsync(first);
        await cluster.StartParticipantAsync(first);
        var restarted = DateTimeOffset.UtcNow;
        await Eventually.WaitForAsync(
            () => Task.FromResult(cluster.ParticipantRuntime(first).LastResolutionPass), at => at >= restarted, TimeSpan.FromSeconds(15),
            "the restarted participant's first resolution pass");

        var result = await tx.CommitAsync();

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Committed), result.Reason);
        await Eventually.WaitForAsync(
            () => cluster.ReadEverywhereAsync(key), v => v.All(x => x == "v"), TimeSpan.FromSeconds(15), "the commit everywhere");
    }
}
