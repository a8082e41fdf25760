using Dapper;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Participants;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>A work that inserts one key and ignores its cancellation token, as a careless handler would.</summary>
public sealed record StubbornPutItem
{
    public required string Key { get; init; }
    public required string Value { get; init; }
}

/// <summary>
/// A prepared branch whose Commit was lost holds a row lock; a second transaction's work handler
/// waits on that row. The participant's background loop must still ask the coordinator and commit
/// the prepared branch: it never waits on a running work handler (issue 10, item 5), and a handler
/// still running at its branch's deadline is cancelled.
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class ResolutionBehindWorkTests
{
    /// <summary>Longer than any wait of these tests: a handler blocked this long is "for ever" to them.</summary>
    private static readonly TimeSpan StubbornCommandTimeout = TimeSpan.FromSeconds(60);

    private TxCoordCluster _cluster = null!;
    private ProbeCoordinator _probe = null!;
    private string _participant = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _cluster = await TxCoordCluster.StartAsync(new ClusterOptions
        {
            Participants = 1,
            DecisionTimeout = TimeSpan.FromSeconds(2),
            Handlers = o =>
            {
                KeyValueParticipant.Configure(o);
                o.Handle<StubbornPutItem>(async (branch, item, _) =>
                {
                    await branch.Connection.ExecuteAsync(new CommandDefinition(
                        "INSERT INTO items (key, value) VALUES (@Key, @Value)", new { item.Key, item.Value }, branch.Transaction,
                        commandTimeout: (int)StubbornCommandTimeout.TotalSeconds, cancellationToken: CancellationToken.None));
                    return WorkResult.Success;
                });
            },
        });
        _probe = await ProbeCoordinator.StartAsync(_cluster);
        _participant = _cluster.ParticipantIds[0];
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        await _probe.DisposeAsync();
        await _cluster.DisposeAsync();
    }

    private string Database => _cluster.ParticipantDatabases[_participant];

    [Test]
    public async Task HandlerBlockedOnARowOfAPreparedBranchWhoseCommitWasLost_AndIgnoringItsToken_ThePreparedBranchStillCommits()
    {
        var key = $"k-{Guid.NewGuid():N}";
        var prepared = await PrepareAsync(key);

        // The second transaction's handler waits on the prepared branch's uncommitted key, past its
        // branch deadline (0.5 s), and does not listen to its token.
        var blocked = TransactionId.New();
        var blockedWork = _probe.SendRawWorkAsync(_participant, new StubbornPutItem { Key = key, Value = "second" }, Headers(blocked, branchTimeoutMs: 500));
        await WaitForLockWaiterAsync();

        // The Commit was lost: the coordinator tells it only when asked.
        _probe.Outcomes[prepared] = TransactionOutcome.Committed;

        await Eventually.WaitForAsync(
            () => KeyValueParticipant.ReadAsync(Database, key), v => v == "first", TimeSpan.FromSeconds(15),
            "the prepared branch to commit after asking the coordinator, while the other handler waits on its row");
        var reply = await blockedWork;
        Assert.Multiple(async () =>
        {
            Assert.That(reply.Succeeded, Is.False, "the blocked work ran into the committed key, or its branch had timed out");
            Assert.That(await KeyValueParticipant.ReadAsync(Database, key), Is.EqualTo("first"));
            Assert.That(await KeyValueParticipant.CountPreparedAsync(Database), Is.Zero);
        });
    }

    [Test]
    public async Task HandlerStillRunningAtItsBranchDeadline_IsCancelled_AndTheWorkIsRefusedAsTimedOut()
    {
        var key = $"k-{Guid.NewGuid():N}";
        var prepared = await PrepareAsync(key);

        // The coordinator answers Pending: the prepared branch keeps its row for the whole test.
        var blocked = TransactionId.New();
        var reply = await _probe.SendRawWorkAsync(_participant, new PutItem { Key = key, Value = "second" }, Headers(blocked, branchTimeoutMs: 500));

        Assert.Multiple(() =>
        {
            Assert.That(reply.Succeeded, Is.False);
            Assert.That(reply.Reason, Does.Contain("branch timeout"));
        });
        Assert.That(await KeyValueParticipant.CountPreparedAsync(Database), Is.EqualTo(1), "only the first branch is prepared");
        _probe.Outcomes[prepared] = TransactionOutcome.Aborted;
        await Eventually.WaitForAsync(() => KeyValueParticipant.CountPreparedAsync(Database), n => n == 0, TimeSpan.FromSeconds(15), "the prepared branch rolled back");
        Assert.That(await KeyValueParticipant.ReadAsync(Database, key), Is.Null);
    }

    [Test]
    public async Task ResolutionPassWithOneBranchWhoseQuestionFaults_ResolvesTheOthers_AndReportsDegradedUntilItResolves()
    {
        var faulting = await PrepareAsync($"k-{Guid.NewGuid():N}"); // the oldest: asked first
        var committedKey = $"k-{Guid.NewGuid():N}";
        var committed = await PrepareAsync(committedKey);
        var aborted = await PrepareAsync($"k-{Guid.NewGuid():N}");
        _probe.Faults[faulting] = "journal row unreadable";
        _probe.Outcomes[committed] = TransactionOutcome.Committed;
        _probe.Outcomes[aborted] = TransactionOutcome.Aborted;

        await Eventually.WaitForAsync(
            () => KeyValueParticipant.CountPreparedAsync(Database), n => n == 1, TimeSpan.FromSeconds(20), "the two healthy branches resolved beside the faulting one");
        var runtime = _cluster.ParticipantRuntime(_participant);
        var degraded = await HealthAsync(runtime);
        Assert.Multiple(async () =>
        {
            Assert.That(await KeyValueParticipant.ReadAsync(Database, committedKey), Is.EqualTo("first"));
            Assert.That(degraded.Status, Is.EqualTo(HealthStatus.Degraded), degraded.Description);
            Assert.That(degraded.Data["failingBranches"], Is.EqualTo(1));
            Assert.That(degraded.Description, Does.Contain("failing to resolve"));
        });

        _probe.Faults.TryRemove(faulting, out _);
        _probe.Outcomes[faulting] = TransactionOutcome.Aborted;
        await Eventually.WaitForAsync(
            () => KeyValueParticipant.CountPreparedAsync(Database), n => n == 0, TimeSpan.FromSeconds(40), "the faulting branch resolved after its back-off");
        await Eventually.WaitForAsync(
            async () => (await HealthAsync(runtime)).Status, s => s == HealthStatus.Healthy, TimeSpan.FromSeconds(10), "healthy again");
    }

    private static Task<HealthCheckResult> HealthAsync(Participants.Participant.ParticipantRuntime participant) =>
        new Participants.Participant.ParticipantHealthCheck(participant).CheckHealthAsync(new HealthCheckContext
        {
            Registration = new HealthCheckRegistration("p", _ => null!, HealthStatus.Degraded, null),
        });

    /// <summary>Runs a branch that inserts <paramref name="key"/> and prepares it; returns its transaction id.</summary>
    private async Task<TransactionId> PrepareAsync(string key)
    {
        var id = TransactionId.New();
        var work = await _probe.SendRawWorkAsync(_participant, new PutItem { Key = key, Value = "first" }, Headers(id));
        Assert.That(work.Succeeded, Is.True, work.Reason);
        await _probe.SendAsync(_participant, new PrepareBranch { TransactionId = id, Coordinator = _probe.Id, Participant = new ParticipantId(_participant) });
        Assert.That((await _probe.NextAsync<BranchVoted>(id)).Vote, Is.EqualTo(Vote.Yes));
        return id;
    }

    private async Task WaitForLockWaiterAsync() =>
        await Eventually.WaitForAsync(
            async () =>
            {
                await using var connection = new NpgsqlConnection(Database);
                return await connection.ExecuteScalarAsync<long>(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
            },
            n => n >= 1, TimeSpan.FromSeconds(10), "the second handler to wait on the prepared branch's row");

    private Dictionary<string, object> Headers(TransactionId id, long? branchTimeoutMs = null)
    {
        var headers = new Dictionary<string, object>
        {
            [TxCoordHeaders.TransactionId] = id.Value.ToString(),
            [TxCoordHeaders.CoordinatorId] = _probe.Id.Value,
        };
        if (branchTimeoutMs is { } ms)
        {
            headers[TxCoordHeaders.BranchTimeoutMs] = ms;
        }

        return headers;
    }
}
