using Dapper;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Participants;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// 3PC end to end across three participants, each in its own host with its own bus, over the real
/// RabbitMQ and PostgreSQL (and the embedded mode): CanCommit, PreCommit, DoCommit, and the aborts.
/// The coordinator and participant crashes are in <see cref="ThreePhaseTerminationTests"/>.
/// </summary>
[TestFixture(Transport.RabbitMq)]
[TestFixture(Transport.InMemory)]
[Parallelizable(ParallelScope.Fixtures)]
public sealed class ThreePhaseCommitTests(Transport transport)
{
    private static readonly TransactionOptions ThreePhase = new() { Protocol = CommitProtocol.ThreePhase };

    private TxCoordCluster _cluster = null!;

    [OneTimeSetUp]
    public async Task StartAsync() =>
        _cluster = await TxCoordCluster.StartAsync(new ClusterOptions { Transport = transport, Participants = 3, VoteTimeout = TimeSpan.FromSeconds(3) });

    [OneTimeTearDown]
    public async Task StopAsync() => await _cluster.DisposeAsync();

    [Test]
    public async Task ThreeParticipants_ThreePhaseCommit_CommitsEverywhere_AndEveryoneWasPreCommittedFirst()
    {
        var key = NewKey();
        await using var tx = _cluster.Initiator.Begin(ThreePhase);
        await SendAllAsync(tx, key);

        var result = await tx.CommitAsync();

        Assert.Multiple(() =>
        {
            Assert.That(tx.Protocol, Is.EqualTo(CommitProtocol.ThreePhase));
            Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Committed), result.Reason);
        });
        await Eventually.WaitForAsync(
            () => _cluster.ReadEverywhereAsync(key), values => values.All(v => v == "v"), TimeSpan.FromSeconds(20), "the commit to reach the three databases");
        await AssertQuiescentAsync();
        Assert.That(await JournalAsync(tx.Id), Is.EqualTo(("committed", (short)CommitProtocol.ThreePhase)));
        Assert.That((await JournalEventsAsync(tx.Id)).Where(e => e != "acknowledged"), Is.EqualTo(new[] { "precommit", "commit-decided", "committed" }));
    }

    [Test]
    public async Task ThreeParticipants_OneCannotPrepare_VotesNo_AndAllAbortWithoutPreCommit()
    {
        var key = NewKey();
        await using var tx = _cluster.Initiator.Begin(ThreePhase);
        await SendAllAsync(tx, key);
        var unpreparable = await tx.SendAsync(_cluster.ParticipantIds[1], new PutItem { Key = key + "-tmp", Value = "x", Mode = PutMode.Unpreparable });
        Assert.That(unpreparable.Succeeded, Is.True, "the work itself succeeds; only PREPARE fails");

        var result = await tx.CommitAsync();

        Assert.Multiple(() =>
        {
            Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted));
            Assert.That(result.Reason, Does.Contain("prepare").IgnoreCase);
        });
        await AssertQuiescentAsync();
        Assert.That(await _cluster.ReadEverywhereAsync(key), Is.All.Null);
        Assert.That(await JournalEventsAsync(tx.Id), Does.Not.Contain("precommit"), "an abort before PreCommit forces nothing");
    }

    [Test]
    public async Task ThreeParticipants_InitiatorRollsBack_NothingIsApplied_AndTheJournalShowsThreePhase()
    {
        var key = NewKey();
        await using var tx = _cluster.Initiator.Begin(ThreePhase);
        await SendAllAsync(tx, key);

        var result = await tx.RollbackAsync("changed my mind");

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted));
        await AssertQuiescentAsync();
        Assert.That(await _cluster.ReadEverywhereAsync(key), Is.All.Null);
        Assert.That(await JournalAsync(tx.Id), Is.EqualTo(("aborted", (short)CommitProtocol.ThreePhase)));
    }

    private async Task SendAllAsync(IGlobalTransaction tx, string key)
    {
        foreach (var participant in _cluster.ParticipantIds)
        {
            var work = await tx.SendAsync(participant, new PutItem { Key = key, Value = "v" });
            Assert.That(work.Succeeded, Is.True, work.Reason);
        }
    }

    private async Task AssertQuiescentAsync()
    {
        await Eventually.WaitForAsync(_cluster.CountPreparedAsync, n => n == 0, TimeSpan.FromSeconds(20), "no prepared transaction left");
        await Eventually.WaitForAsync(
            async () =>
            {
                await using var connection = new NpgsqlConnection(_cluster.JournalConnectionString);
                return await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM txcoord.transactions WHERE state IN ('committing', 'precommitting')");
            },
            n => n == 0,
            TimeSpan.FromSeconds(20),
            "no open journal entry");
    }

    private async Task<(string? State, short Protocol)> JournalAsync(TransactionId id)
    {
        await using var connection = new NpgsqlConnection(_cluster.JournalConnectionString);
        return await Eventually.WaitForAsync(
            () => connection.QuerySingleOrDefaultAsync<(string?, short)>(
                "SELECT state, protocol FROM txcoord.transactions WHERE transaction_id = @Id", new { Id = id.Value }),
            row => row.Item1 is "committed" or "aborted",
            TimeSpan.FromSeconds(20),
            $"the journal to close {id}");
    }

    private async Task<string[]> JournalEventsAsync(TransactionId id)
    {
        await using var connection = new NpgsqlConnection(_cluster.JournalConnectionString);
        return [.. await connection.QueryAsync<string>(
            "SELECT kind FROM txcoord.transaction_events WHERE transaction_id = @Id ORDER BY id", new { Id = id.Value })];
    }

    private static string NewKey() => $"k3-{Guid.NewGuid():N}";
}
