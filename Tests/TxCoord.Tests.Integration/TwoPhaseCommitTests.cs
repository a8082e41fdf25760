using TxCoord.Participants;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>2PC end to end: a coordinator, two participants and an initiator, each with its own bus, over the real RabbitMQ and PostgreSQL.</summary>
[TestFixture(Transport.RabbitMq)]
[TestFixture(Transport.InMemory)]
[Parallelizable(ParallelScope.Fixtures)]
public sealed class TwoPhaseCommitTests(Transport transport)
{
    private TxCoordCluster _cluster = null!;

    [OneTimeSetUp]
    public async Task StartAsync() =>
        _cluster = await TxCoordCluster.StartAsync(new ClusterOptions { Transport = transport, VoteTimeout = TimeSpan.FromSeconds(3) });

    [OneTimeTearDown]
    public async Task StopAsync() => await _cluster.DisposeAsync();

    [Test]
    public async Task WorkInTwoDatabases_Commits_AndBothSeeIt()
    {
        var key = NewKey();
        await using var tx = _cluster.Initiator.Begin();
        foreach (var participant in _cluster.ParticipantIds)
        {
            var work = await tx.SendAsync(participant, new PutItem { Key = key, Value = "v1" });
            Assert.That(work.Succeeded, Is.True, work.Reason);
        }

        var result = await tx.CommitAsync();

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Committed), result.Reason);
        // Committed means decided and durable; phase 2 reaches the databases just after.
        await Eventually.WaitForAsync(
            () => _cluster.ReadEverywhereAsync(key), values => values.All(v => v == "v1"), TimeSpan.FromSeconds(15), "the commit to reach both databases");
        await AssertQuiescentAsync();
    }

    [Test]
    public async Task ParticipantThatOnlyRead_VotesReadOnly_AndTheWriterAloneGoesThroughPhase2()
    {
        var key = NewKey();
        var (reader, writer) = (_cluster.ParticipantIds[0], _cluster.ParticipantIds[1]);
        await using var tx = _cluster.Initiator.Begin();
        Assert.That((await tx.SendAsync(reader, new ReadItem { Key = key })).Succeeded, Is.True);
        Assert.That((await tx.SendAsync(writer, new PutItem { Key = key, Value = "w" })).Succeeded, Is.True);

        var result = await tx.CommitAsync();

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Committed), result.Reason);
        await Eventually.WaitForAsync(
            () => _cluster.ReadEverywhereAsync(key), values => values.SequenceEqual([null, "w"]), TimeSpan.FromSeconds(15), "the writer's commit");
        Assert.That((await _cluster.Initiator.GetOutcomeAsync(tx.Id)).Outcome, Is.EqualTo(CommitOutcome.Committed));
        await AssertQuiescentAsync();
    }

    [Test]
    public async Task EveryParticipantOnlyRead_CommitsWithNothingPrepared()
    {
        await using var tx = _cluster.Initiator.Begin();
        foreach (var participant in _cluster.ParticipantIds)
        {
            Assert.That((await tx.SendAsync(participant, new ReadItem { Key = NewKey() })).Succeeded, Is.True);
        }

        var result = await tx.CommitAsync();

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Committed), result.Reason);
        Assert.That(await _cluster.CountPreparedAsync(), Is.Zero);
        await AssertQuiescentAsync();
    }

    [Test]
    public async Task OneParticipantCannotPrepare_VotesNo_AndBothAbort()
    {
        var key = NewKey();
        await using var tx = _cluster.Initiator.Begin();
        await SendAllAsync(tx, key);
        var last = _cluster.ParticipantIds[^1];
        var unpreparable = await tx.SendAsync(last, new PutItem { Key = key + "-tmp", Value = "x", Mode = PutMode.Unpreparable });
        Assert.That(unpreparable.Succeeded, Is.True, "the work itself succeeds; only PREPARE fails");

        var result = await tx.CommitAsync();

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted));
        Assert.That(result.Reason, Does.Contain("prepare").IgnoreCase);
        Assert.That(await _cluster.ReadEverywhereAsync(key), Is.All.Null);
        await AssertQuiescentAsync();
    }

    [Test]
    public async Task HandlerThrows_TransactionAborts_AndNothingIsApplied()
    {
        var key = NewKey();
        await using var tx = _cluster.Initiator.Begin();
        var first = await tx.SendAsync(_cluster.ParticipantIds[0], new PutItem { Key = key, Value = "v" });
        var second = await tx.SendAsync(_cluster.ParticipantIds[1], new PutItem { Key = key, Value = "v", Mode = PutMode.Throw });

        var result = await tx.CommitAsync();

        Assert.Multiple(() =>
        {
            Assert.That(first.Succeeded, Is.True);
            Assert.That(second.Succeeded, Is.False);
            Assert.That(second.Reason, Does.Contain("handler failure"));
            Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted));
        });
        Assert.That(await _cluster.ReadEverywhereAsync(key), Is.All.Null);
        await AssertQuiescentAsync();
    }

    [Test]
    public async Task WorkRefused_TransactionAborts_WithTheReason()
    {
        var key = NewKey();
        await using var tx = _cluster.Initiator.Begin();
        await tx.SendAsync(_cluster.ParticipantIds[0], new PutItem { Key = key, Value = "v" });
        var refused = await tx.SendAsync(_cluster.ParticipantIds[1], new PutItem { Key = key, Value = "v", Mode = PutMode.Refuse });

        var result = await tx.CommitAsync();

        Assert.Multiple(() =>
        {
            Assert.That(refused.Succeeded, Is.False);
            Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted));
            Assert.That(result.Reason, Does.Contain($"refused {key}"));
        });
        Assert.That(await _cluster.ReadEverywhereAsync(key), Is.All.Null);
        await AssertQuiescentAsync();
    }

    [Test]
    public async Task InitiatorRollsBack_NothingIsApplied()
    {
        var key = NewKey();
        await using var tx = _cluster.Initiator.Begin();
        await SendAllAsync(tx, key);

        var result = await tx.RollbackAsync("changed my mind");

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted));
        Assert.That(await _cluster.ReadEverywhereAsync(key), Is.All.Null);
        await AssertQuiescentAsync();
    }

    [Test]
    public async Task InitiatorVanishesBeforeCommit_BranchesRollBackAfterTheirTimeout()
    {
        var key = NewKey();
        var tx = _cluster.Initiator.Begin(new TransactionOptions { Timeout = TimeSpan.FromSeconds(2) });
        await SendAllAsync(tx, key);
        // The initiator is gone: no commit, no rollback, no dispose. Only the branches' own timeout can end them.

        await Eventually.WaitForAsync(
            () => CountOutcomeRowsAsync(tx.Id, "aborted"),
            n => n == _cluster.ParticipantIds.Count, TimeSpan.FromSeconds(30), "both branches to roll back on their timeout");

        Assert.That(await _cluster.ReadEverywhereAsync(key), Is.All.Null);
        var late = await _cluster.Initiator.GetOutcomeAsync(tx.Id);
        Assert.That(late.Outcome, Is.EqualTo(CommitOutcome.Aborted), "an unknown transaction is aborted: presumed abort");
        await AssertQuiescentAsync();
    }

    private async Task<long> CountOutcomeRowsAsync(Contracts.TransactionId id, string outcome)
    {
        long total = 0;
        foreach (var db in _cluster.ParticipantDatabases.Values)
        {
            await using var connection = new Npgsql.NpgsqlConnection(db);
            await connection.OpenAsync();
            await using var command = new Npgsql.NpgsqlCommand(
                "SELECT count(*) FROM txcoord.branch_outcomes WHERE transaction_id = @id AND outcome = @outcome", connection);
            command.Parameters.AddWithValue("id", id.Value);
            command.Parameters.AddWithValue("outcome", outcome);
            total += (long)(await command.ExecuteScalarAsync())!;
        }

        return total;
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
        await Eventually.WaitForAsync(_cluster.CountPreparedAsync, n => n == 0, TimeSpan.FromSeconds(15), "no prepared transaction left");
        await Eventually.WaitForAsync(_cluster.CountOpenJournalEntriesAsync, n => n == 0, TimeSpan.FromSeconds(15), "no open journal entry");
    }

    private static string NewKey() => $"k-{Guid.NewGuid():N}";
}
