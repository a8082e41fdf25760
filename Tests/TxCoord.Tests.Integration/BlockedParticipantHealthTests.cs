using System.Collections.Immutable;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using TxCoord.Contracts;
using TxCoord.Participants.Participant;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// 2PC cooperative termination that cannot finish: the coordinator is away and every peer is only
/// prepared, so nobody knows the outcome. The participants stay prepared, count the branch as
/// blocked and turn their health check Degraded, until the coordinator is back.
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class BlockedParticipantHealthTests
{
    [Test]
    public async Task CoordinatorAwayAndNoPeerKnows_BothStayPreparedAndReportDegradedHealth_UntilTheCoordinatorReturns()
    {
        await using var cluster = await TxCoordCluster.StartAsync(new ClusterOptions { DecisionTimeout = TimeSpan.FromSeconds(1) });
        await using var probe = await ProbeCoordinator.StartAsync(cluster);
        var coordinator = new CoordinatorId(cluster.CoordinatorId);
        await cluster.StopCoordinatorAsync();

        var id = TransactionId.New();
        var participants = cluster.ParticipantIds.Select(p => new ParticipantId(p)).ToImmutableArray();
        foreach (var participant in cluster.ParticipantIds)
        {
            var headers = new Dictionary<string, object> { [TxCoordHeaders.TransactionId] = id.Value.ToString(), [TxCoordHeaders.CoordinatorId] = coordinator.Value };
            Assert.That((await probe.SendRawWorkAsync(participant, new PutItem { Key = $"k-{id}", Value = "v" }, headers)).Succeeded);
            await probe.SendAsync(participant, new PrepareBranch
            {
                TransactionId = id, Coordinator = coordinator, Participant = new ParticipantId(participant), Participants = participants,
            });
        }

        await Eventually.WaitForAsync(cluster.CountPreparedAsync, n => n == 2, TimeSpan.FromSeconds(15), "both branches prepared");
        await Eventually.WaitForAsync(
            () => Task.FromResult(cluster.ParticipantIds.Sum(p => cluster.ParticipantRuntime(p).BlockedBranches)),
            n => n == 2, TimeSpan.FromSeconds(60), "both participants to report their branch blocked after asking each other");
        var degraded = await Task.WhenAll(cluster.ParticipantIds.Select(p => HealthAsync(cluster.ParticipantRuntime(p))));
        Assert.Multiple(async () =>
        {
            Assert.That(degraded.Select(h => h.Status), Is.All.EqualTo(HealthStatus.Degraded));
            Assert.That(degraded[0].Description, Does.Contain("1 prepared branch(es) blocked"));
            Assert.That(degraded[0].Data["blockedBranches"], Is.EqualTo(1));
            Assert.That(await cluster.CountPreparedAsync(), Is.EqualTo(2), "a 2PC participant never decides alone");
        });

        await cluster.StartCoordinatorAsync();

        // No decision was ever durable: presumed abort, and both are healthy again.
        await Eventually.WaitForAsync(cluster.CountPreparedAsync, n => n == 0, TimeSpan.FromSeconds(60), "both branches rolled back");
        await Eventually.WaitForAsync(
            async () => (await Task.WhenAll(cluster.ParticipantIds.Select(p => HealthAsync(cluster.ParticipantRuntime(p))))).Select(h => h.Status).ToList(),
            statuses => statuses.All(s => s == HealthStatus.Healthy), TimeSpan.FromSeconds(60), "both participants healthy again");
        Assert.That(await cluster.ReadEverywhereAsync($"k-{id}"), Is.All.Null);
    }

    private static Task<HealthCheckResult> HealthAsync(ParticipantRuntime participant) =>
        new ParticipantHealthCheck(participant).CheckHealthAsync(new HealthCheckContext
        {
            Registration = new HealthCheckRegistration(ParticipantHealthCheck.NameOf(participant.Id.Value), _ => null!, HealthStatus.Degraded, null),
        });
}
