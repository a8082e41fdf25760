using System.Collections.Concurrent;
using MassTransit;
using TxCoord.Contracts;
using TxCoord.Participants;
using TxCoord.Participants.Initiator;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// Early prepare end to end (2PC): work and prepare in one message, the initiator relaying the
/// Yes votes with CommitTransaction, over the real RabbitMQ (and the in-memory bus) and PostgreSQL.
/// </summary>
[TestFixture(Transport.RabbitMq)]
[TestFixture(Transport.InMemory)]
[Parallelizable(ParallelScope.Fixtures)]
public sealed class EarlyPrepareTests(Transport transport)
{
    private TxCoordCluster _cluster = null!;
    private PrepareCounter _prepares = null!;
    private ConnectHandle _observer = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _cluster = await TxCoordCluster.StartAsync(new ClusterOptions { Transport = transport, VoteTimeout = TimeSpan.FromSeconds(5) });
        _prepares = new PrepareCounter();
        _observer = _cluster.CoordinatorBus.ConnectSendObserver(_prepares);
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        _observer.Dispose();
        await _cluster.DisposeAsync();
    }

    private TransactionOptions Declared => new() { Participants = [.. _cluster.ParticipantIds] };

    [Test]
    public async Task EarlyPrepareAtBothParticipants_Commits_WithoutAnyPrepareBranch()
    {
        var key = NewKey();
        await using var tx = _cluster.Initiator.Begin(Declared);
        foreach (var participant in _cluster.ParticipantIds)
        {
            var work = await tx.SendAsync(participant, new PutItem { Key = key, Value = "v1" }, prepare: true);
            Assert.That(work.Succeeded, Is.True, work.Reason);
            Assert.That(work.Prepared, Is.True, "the participant answers with its Yes vote");
        }

        Assert.That(await _cluster.CountPreparedAsync(), Is.EqualTo(2), "both branches are prepared before the commit is asked for");

        var result = await tx.CommitAsync();

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Committed), result.Reason);
        await Eventually.WaitForAsync(
            () => _cluster.ReadEverywhereAsync(key), values => values.All(v => v == "v1"), TimeSpan.FromSeconds(15), "the commit to reach both databases");
        await AssertQuiescentAsync();
        Assert.That(_prepares.Count(tx.Id), Is.Zero, "no PrepareBranch was sent for an early-prepared transaction");
    }

    [Test]
    public async Task EarlyPrepareAtOneParticipant_PlainWorkAtTheOther_OnlyTheOtherIsAskedToPrepare()
    {
        var key = NewKey();
        await using var tx = _cluster.Initiator.Begin(Declared);
        var early = await tx.SendAsync(_cluster.ParticipantIds[0], new PutItem { Key = key, Value = "v" }, prepare: true);
        var plain = await tx.SendAsync(_cluster.ParticipantIds[1], new PutItem { Key = key, Value = "v" });
        Assert.That((early.Prepared, plain.Prepared), Is.EqualTo((true, false)));

        var result = await tx.CommitAsync();

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Committed), result.Reason);
        await Eventually.WaitForAsync(
            () => _cluster.ReadEverywhereAsync(key), values => values.All(v => v == "v"), TimeSpan.FromSeconds(15), "the commit to reach both databases");
        await AssertQuiescentAsync();
        Assert.That(_prepares.Count(tx.Id), Is.EqualTo(1), "one PrepareBranch: to the participant that did not prepare early");
    }

    [Test]
    public async Task EarlyPrepareThenInitiatorVanishes_BranchesAskTheCoordinatorAndRollBack_AndALateCommitAborts()
    {
        var key = NewKey();
        var tx = _cluster.Initiator.Begin(Declared);
        foreach (var participant in _cluster.ParticipantIds)
        {
            Assert.That((await tx.SendAsync(participant, new PutItem { Key = key, Value = "v" }, prepare: true)).Prepared, Is.True);
        }

        // The initiator is gone: no commit. The prepared branches wait their decision timeout, ask
        // the coordinator, which does not know the transaction: presumed abort, recorded.
        await Eventually.WaitForAsync(
            () => CountOutcomeRowsAsync(tx.Id, "aborted"),
            n => n == _cluster.ParticipantIds.Count, TimeSpan.FromSeconds(30), "both prepared branches to roll back after asking");
        Assert.That(await _cluster.ReadEverywhereAsync(key), Is.All.Null);

        // The initiator comes back and commits after all: the aborted row wins.
        var late = await tx.CommitAsync();

        Assert.That(late.Outcome, Is.EqualTo(CommitOutcome.Aborted), late.Reason);
        Assert.That(await _cluster.ReadEverywhereAsync(key), Is.All.Null);
        await AssertQuiescentAsync();
    }

    [Test]
    public async Task EarlyPrepareThenRollback_BothPreparedBranchesRollBack()
    {
        var key = NewKey();
        await using var tx = _cluster.Initiator.Begin(Declared);
        foreach (var participant in _cluster.ParticipantIds)
        {
            await tx.SendAsync(participant, new PutItem { Key = key, Value = "v" }, prepare: true);
        }

        var result = await tx.RollbackAsync("changed my mind");

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted));
        await AssertQuiescentAsync();
        Assert.That(await _cluster.ReadEverywhereAsync(key), Is.All.Null);
    }

    [Test]
    public async Task WorkFailsWithEarlyPrepareAsked_NotPrepared_AndTheTransactionAborts()
    {
        var key = NewKey();
        await using var tx = _cluster.Initiator.Begin(Declared);
        var first = await tx.SendAsync(_cluster.ParticipantIds[0], new PutItem { Key = key, Value = "v" }, prepare: true);
        var failed = await tx.SendAsync(_cluster.ParticipantIds[1], new PutItem { Key = key, Value = "v", Mode = PutMode.Throw }, prepare: true);

        var result = await tx.CommitAsync();

        Assert.Multiple(() =>
        {
            Assert.That(first.Prepared, Is.True);
            Assert.That(failed.Succeeded, Is.False);
            Assert.That(failed.Prepared, Is.False);
            Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted));
        });
        await AssertQuiescentAsync();
        Assert.That(await _cluster.ReadEverywhereAsync(key), Is.All.Null);
    }

    [Test]
    public async Task WorkSucceedsButCannotPrepare_WithEarlyPrepare_IsAFailedWork_AndTheTransactionAborts()
    {
        var key = NewKey();
        await using var tx = _cluster.Initiator.Begin(Declared);
        var first = await tx.SendAsync(_cluster.ParticipantIds[0], new PutItem { Key = key, Value = "v" }, prepare: true);
        var unpreparable = await tx.SendAsync(_cluster.ParticipantIds[1], new PutItem { Key = key, Value = "x", Mode = PutMode.Unpreparable }, prepare: true);

        var result = await tx.CommitAsync();

        Assert.Multiple(() =>
        {
            Assert.That(first.Prepared, Is.True);
            Assert.That(unpreparable.Succeeded, Is.False);
            Assert.That(unpreparable.Reason, Does.Contain("could not prepare"));
            Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted));
        });
        await AssertQuiescentAsync();
        Assert.That(await _cluster.ReadEverywhereAsync(key), Is.All.Null);
    }

    [Test]
    public async Task DuplicateCommitRequests_DuringAndAfterAnEarlyPreparedCommit_AreHarmless()
    {
        var key = NewKey();
        await using var tx = _cluster.Initiator.Begin(Declared);
        foreach (var participant in _cluster.ParticipantIds)
        {
            await tx.SendAsync(participant, new PutItem { Key = key, Value = "v" }, prepare: true);
        }

        var participants = _cluster.ParticipantIds.Select(p => new ParticipantId(p)).ToList();
        var duplicate = new CommitTransaction { TransactionId = tx.Id, Participants = participants, Prepared = participants, Deadline = DateTimeOffset.UtcNow.AddMinutes(1) };
        var initiator = (TransactionInitiator)_cluster.Initiator;
        var raw = initiator.Request<CommitTransaction>(TimeSpan.FromSeconds(20)).GetResponse<TransactionCompleted>(duplicate);
        var result = await tx.CommitAsync();
        var rawDuring = (await raw).Message;
        var rawAfter = (await initiator.Request<CommitTransaction>(TimeSpan.FromSeconds(20)).GetResponse<TransactionCompleted>(duplicate)).Message;

        Assert.Multiple(() =>
        {
            Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Committed), result.Reason);
            Assert.That(rawDuring.Outcome, Is.EqualTo(TransactionOutcome.Committed));
            Assert.That(rawAfter.Outcome, Is.EqualTo(TransactionOutcome.Committed));
        });
        await Eventually.WaitForAsync(
            () => _cluster.ReadEverywhereAsync(key), values => values.All(v => v == "v"), TimeSpan.FromSeconds(15), "the commit to reach both databases");
        await AssertQuiescentAsync();
        Assert.That(_prepares.Count(tx.Id), Is.Zero);
    }

    [Test]
    public async Task EarlyPrepare_RefusedWhereItCannotBeSafe_WithClearErrors()
    {
        await using var undeclared = _cluster.Initiator.Begin();
        await using var threePhase = _cluster.Initiator.Begin(Declared with { Protocol = CommitProtocol.ThreePhase });
        await using var declared = _cluster.Initiator.Begin(Declared);
        var item = new PutItem { Key = NewKey(), Value = "v" };

        var noList = Assert.ThrowsAsync<InvalidOperationException>(() => undeclared.SendAsync(_cluster.ParticipantIds[0], item, prepare: true));
        var notTwoPhase = Assert.ThrowsAsync<InvalidOperationException>(() => threePhase.SendAsync(_cluster.ParticipantIds[0], item, prepare: true));
        var stranger = Assert.ThrowsAsync<InvalidOperationException>(() => declared.SendAsync("not-declared", item));

        Assert.Multiple(() =>
        {
            Assert.That(noList!.Message, Does.Contain("TransactionOptions.Participants"));
            Assert.That(notTwoPhase!.Message, Does.Contain("2PC only"));
            Assert.That(stranger!.Message, Does.Contain("not among the participants declared"));
            Assert.That(() => _cluster.Initiator.Begin(new TransactionOptions { Participants = [] }), Throws.ArgumentException);
            Assert.That(() => _cluster.Initiator.Begin(new TransactionOptions { Participants = ["bad name!"] }), Throws.ArgumentException);
        });
    }

    [Test]
    public async Task MoreWorkToAnEarlyPreparedParticipant_IsRefused_AndADeclaredParticipantWithoutWorkRollsBack()
    {
        var key = NewKey();
        await using var tx = _cluster.Initiator.Begin(Declared);
        var early = await tx.SendAsync(_cluster.ParticipantIds[0], new PutItem { Key = key, Value = "v" }, prepare: true);
        Assert.That(early.Prepared, Is.True);

        var more = Assert.ThrowsAsync<InvalidOperationException>(() => tx.SendAsync(_cluster.ParticipantIds[0], new PutItem { Key = key + "-2", Value = "v" }));
        Assert.That(more!.Message, Does.Contain("prepared its branch early"));

        // The second declared participant got no work: the prepared branch lists it as a peer, so
        // the transaction cannot commit without it.
        var result = await tx.CommitAsync();

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted));
        Assert.That(result.Reason, Does.Contain("sent no work").And.Contain(_cluster.ParticipantIds[1]));
        await AssertQuiescentAsync();
        Assert.That(await _cluster.ReadEverywhereAsync(key), Is.All.Null);
    }

    private async Task<long> CountOutcomeRowsAsync(TransactionId id, string outcome)
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

    private async Task AssertQuiescentAsync()
    {
        await Eventually.WaitForAsync(_cluster.CountPreparedAsync, n => n == 0, TimeSpan.FromSeconds(15), "no prepared transaction left");
        await Eventually.WaitForAsync(_cluster.CountOpenJournalEntriesAsync, n => n == 0, TimeSpan.FromSeconds(15), "no open journal entry");
    }

    private static string NewKey() => $"k-{Guid.NewGuid():N}";

    /// <summary>Counts the PrepareBranch messages the coordinator's bus sends, per transaction.</summary>
    private sealed class PrepareCounter : ISendObserver
    {
        private readonly ConcurrentDictionary<TransactionId, int> _counts = new();

        public int Count(TransactionId id) => _counts.GetValueOrDefault(id);

        public Task PreSend<T>(SendContext<T> context)
            where T : class => Task.CompletedTask;

        public Task PostSend<T>(SendContext<T> context)
            where T : class
        {
            if (context.Message is PrepareBranch prepare)
            {
                _counts.AddOrUpdate(prepare.TransactionId, 1, (_, n) => n + 1);
            }

            return Task.CompletedTask;
        }

        public Task SendFault<T>(SendContext<T> context, Exception exception)
            where T : class => Task.CompletedTask;
    }
}

/// <summary>
/// Early prepare at one participant, driven message by message by a probe standing in for the
/// coordinator: late PrepareBranch, AbortBranch, later work, wrong headers.
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class EarlyPrepareParticipantTests
{
    private TxCoordCluster _cluster = null!;
    private ProbeCoordinator _probe = null!;
    private string _participant = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _cluster = await TxCoordCluster.StartAsync(new ClusterOptions { Participants = 1, BranchTimeout = TimeSpan.FromSeconds(30) });
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
    public async Task EarlyPreparedBranch_LatePrepareVotesYes_LaterWorkIsRefused_AbortRollsItBack()
    {
        var key = $"k-{Guid.NewGuid():N}";
        await using var tx = _probe.Initiator.Begin(new TransactionOptions { Participants = [_participant] });
        var early = await tx.SendAsync(_participant, new PutItem { Key = key, Value = "v" }, prepare: true);
        Assert.That(early.Prepared, Is.True, early.Reason);
        Assert.That(await KeyValueParticipant.CountPreparedAsync(Database), Is.EqualTo(1));

        await _probe.SendAsync(_participant, new PrepareBranch
        {
            TransactionId = tx.Id, Coordinator = _probe.Id, Participant = new ParticipantId(_participant), Participants = [new ParticipantId(_participant)],
        });
        var vote = await _probe.NextAsync<BranchVoted>(tx.Id);

        var later = await _probe.SendRawWorkAsync(_participant, new PutItem { Key = key + "-2", Value = "v" }, new Dictionary<string, object>
        {
            [TxCoordHeaders.TransactionId] = tx.Id.Value.ToString(),
            [TxCoordHeaders.CoordinatorId] = _probe.Id.Value,
        });

        await _probe.SendAsync(_participant, new AbortBranch { TransactionId = tx.Id, Coordinator = _probe.Id, Participant = new ParticipantId(_participant) });
        await _probe.NextAsync<BranchAborted>(tx.Id);

        var prepared = await KeyValueParticipant.CountPreparedAsync(Database);
        var value = await KeyValueParticipant.ReadAsync(Database, key);
        Assert.Multiple(() =>
        {
            Assert.That(vote.Vote, Is.EqualTo(Vote.Yes), "a late Prepare finds the branch prepared");
            Assert.That(later.Succeeded, Is.False);
            Assert.That(later.Reason, Does.Contain("prepared"));
            Assert.That(prepared, Is.Zero, "AbortBranch rolled the prepared branch back");
            Assert.That(value, Is.Null);
        });
    }

    [TestCase("ThreePhase", "p", "2PC only")]
    [TestCase("Bogus", "p", "Protocol")]
    [TestCase("TwoPhase", "someone-else", "does not name this participant")]
    [TestCase("TwoPhase", "bad name!", "valid participant ids")]
    public async Task WorkAskingEarlyPrepareWrongly_IsRefusedBeforeAnyWork(string protocol, string participants, string expected)
    {
        var key = $"k-{Guid.NewGuid():N}";
        var reply = await _probe.SendRawWorkAsync(_participant, new PutItem { Key = key, Value = "v" }, new Dictionary<string, object>
        {
            [TxCoordHeaders.TransactionId] = TransactionId.New().Value.ToString(),
            [TxCoordHeaders.CoordinatorId] = _probe.Id.Value,
            [TxCoordHeaders.Prepare] = true,
            [TxCoordHeaders.Protocol] = protocol,
            [TxCoordHeaders.Participants] = participants == "p" ? _participant : participants,
        });

        var value = await KeyValueParticipant.ReadAsync(Database, key);
        Assert.Multiple(() =>
        {
            Assert.That(reply.Succeeded, Is.False);
            Assert.That(reply.Prepared, Is.False);
            Assert.That(reply.Reason, Does.Contain(expected));
            Assert.That(value, Is.Null);
        });
    }
}
