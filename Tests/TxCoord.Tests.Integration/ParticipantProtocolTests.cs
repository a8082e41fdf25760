using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using TxCoord.Contracts;
using TxCoord.Participants;
using TxCoord.Participants.Participant;
using TxCoord.Participants.PostgreSql;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// The participant SDK driven message by message by a probe standing in for the coordinator:
/// duplicates, reordering, late messages and hostile input, over the real RabbitMQ and PostgreSQL.
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class ParticipantProtocolTests
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
    public async Task DuplicatedPrepareAndCommit_AreHarmless_AndTheWorkIsAppliedOnce()
    {
        var (id, key) = await StartBranchAsync();

        await _probe.SendAsync(_participant, Prepare(id));
        await _probe.SendAsync(_participant, Prepare(id));
        var votes = new[] { await _probe.NextAsync<BranchVoted>(id), await _probe.NextAsync<BranchVoted>(id) };
        Assert.That(votes.Select(v => v.Vote), Is.All.EqualTo(Vote.Yes));
        Assert.That(await KeyValueParticipant.CountPreparedAsync(Database), Is.EqualTo(1));

        await _probe.SendAsync(_participant, Commit(id));
        await _probe.SendAsync(_participant, Commit(id));
        await _probe.NextAsync<BranchCommitted>(id);
        await _probe.NextAsync<BranchCommitted>(id);

        // A Prepare that arrives after the commit changes nothing either.
        await _probe.SendAsync(_participant, Prepare(id));
        Assert.That((await _probe.NextAsync<BranchVoted>(id)).Vote, Is.EqualTo(Vote.Yes));

        Assert.That(await KeyValueParticipant.ReadAsync(Database, key), Is.EqualTo("v"));
        Assert.That(await KeyValueParticipant.CountPreparedAsync(Database), Is.Zero);
    }

    [Test]
    public async Task AbortBeforeWork_TheLateWorkIsRefused_AndALatePrepareVotesNo()
    {
        // A participant answers only coordinators it knows: one work of another transaction makes the probe known.
        await StartBranchAsync();
        var id = TransactionId.New();
        await _probe.SendAsync(_participant, new AbortBranch { TransactionId = id, Coordinator = _probe.Id, Participant = new ParticipantId(_participant) });
        await _probe.NextAsync<BranchAborted>(id);

        var late = await _probe.SendRawWorkAsync(_participant, new PutItem { Key = $"late-{id}", Value = "v" }, Headers(id));
        await _probe.SendAsync(_participant, Prepare(id));
        var vote = await _probe.NextAsync<BranchVoted>(id);

        Assert.Multiple(() =>
        {
            Assert.That(late.Succeeded, Is.False);
            Assert.That(late.Reason, Does.Contain("aborted"));
            Assert.That(vote.Vote, Is.EqualTo(Vote.No));
        });
        Assert.That(await KeyValueParticipant.ReadAsync(Database, $"late-{id}"), Is.Null);
    }

    [Test]
    public async Task PrepareThatOvertakesItsWork_VotesNo_AndFencesTheWork()
    {
        var id = TransactionId.New();
        await _probe.SendAsync(_participant, Prepare(id));
        Assert.That((await _probe.NextAsync<BranchVoted>(id)).Vote, Is.EqualTo(Vote.No));

        var late = await _probe.SendRawWorkAsync(_participant, new PutItem { Key = $"late-{id}", Value = "v" }, Headers(id));

        Assert.That(late.Succeeded, Is.False);
        Assert.That(await KeyValueParticipant.ReadAsync(Database, $"late-{id}"), Is.Null);
    }

    [Test]
    public async Task AbortOfAPreparedBranch_RollsItBack_AndADuplicateAbortIsHarmless()
    {
        var (id, key) = await StartBranchAsync();
        await _probe.SendAsync(_participant, Prepare(id));
        Assert.That((await _probe.NextAsync<BranchVoted>(id)).Vote, Is.EqualTo(Vote.Yes));

        var abort = new AbortBranch { TransactionId = id, Coordinator = _probe.Id, Participant = new ParticipantId(_participant) };
        await _probe.SendAsync(_participant, abort);
        await _probe.SendAsync(_participant, abort);
        await _probe.NextAsync<BranchAborted>(id);
        await _probe.NextAsync<BranchAborted>(id);

        Assert.That(await KeyValueParticipant.ReadAsync(Database, key), Is.Null);
        Assert.That(await KeyValueParticipant.CountPreparedAsync(Database), Is.Zero);
    }

    [Test]
    public async Task CommitForABranchThatNeverPrepared_IsNotAcknowledged_AndCommitsNothing()
    {
        var id = TransactionId.New();
        await _probe.SendAsync(_participant, Commit(id));
        await _probe.SendAsync(_participant, Prepare(id)); // a marker that the Commit was handled: replies come in order

        Assert.That((await _probe.NextAsync<BranchVoted>(id)).Vote, Is.EqualTo(Vote.No));
        Assert.That(_probe.Count<BranchCommitted>(id), Is.Zero);
    }

    [Test]
    public async Task PreparedBranchWhoseCommitWasLost_AsksTheCoordinator_AndCommits()
    {
        var (id, key) = await StartBranchAsync();
        await _probe.SendAsync(_participant, Prepare(id));
        Assert.That((await _probe.NextAsync<BranchVoted>(id)).Vote, Is.EqualTo(Vote.Yes));

        // The Commit message is "lost": the probe never sends it, but answers the participant's question.
        _probe.Outcomes[id] = TransactionOutcome.Committed;

        await Eventually.WaitForAsync(() => KeyValueParticipant.ReadAsync(Database, key), v => v == "v", TimeSpan.FromSeconds(20), "the branch to commit after asking");
        Assert.That(await KeyValueParticipant.CountPreparedAsync(Database), Is.Zero);
    }

    [Test]
    public async Task ParticipantRestartedWithPreparedBranches_ResolvesThemByAskingTheCoordinator()
    {
        var (committed, committedKey) = await StartBranchAsync();
        var (aborted, abortedKey) = await StartBranchAsync();
        await _probe.SendAsync(_participant, Prepare(committed));
        await _probe.SendAsync(_participant, Prepare(aborted));
        await _probe.NextAsync<BranchVoted>(committed);
        await _probe.NextAsync<BranchVoted>(aborted);

        await _cluster.StopParticipantAsync(_participant);
        Assert.That(await KeyValueParticipant.CountPreparedAsync(Database), Is.EqualTo(2), "prepared branches survive their process");
        _probe.Outcomes[committed] = TransactionOutcome.Committed;
        _probe.Outcomes[aborted] = TransactionOutcome.Aborted;
        await _cluster.StartParticipantAsync(_participant);

        await Eventually.WaitForAsync(() => KeyValueParticipant.CountPreparedAsync(Database), n => n == 0, TimeSpan.FromSeconds(20), "both prepared branches resolved");
        Assert.Multiple(async () =>
        {
            Assert.That(await KeyValueParticipant.ReadAsync(Database, committedKey), Is.EqualTo("v"));
            Assert.That(await KeyValueParticipant.ReadAsync(Database, abortedKey), Is.Null);
        });
    }

    [TestCase("x'; DROP TABLE items; --")]
    [TestCase("c1\0")]
    [TestCase("dépôt")]
    [TestCase("a:b")]
    public async Task WorkWithAHostileCoordinatorId_IsRefused_AndNeverReachesSql(string coordinatorId)
    {
        var id = TransactionId.New();
        var headers = new Dictionary<string, object>(Headers(id)) { [TxCoordHeaders.CoordinatorId] = coordinatorId };

        var reply = await _probe.SendRawWorkAsync(_participant, new PutItem { Key = $"hostile-{id}", Value = "v" }, headers);

        Assert.That(reply.Succeeded, Is.False);
        Assert.That(reply.Reason, Does.Contain(TxCoordHeaders.CoordinatorId));
        Assert.That(await KeyValueParticipant.ReadAsync(Database, $"hostile-{id}"), Is.Null, "the items table is intact and untouched");
    }

    [Test]
    public async Task WorkWithoutTransactionHeaders_IsRefusedWithAClearReason()
    {
        var reply = await _probe.SendRawWorkAsync(_participant, new PutItem { Key = "no-headers", Value = "v" }, new Dictionary<string, object>());

        Assert.That(reply.Succeeded, Is.False);
        Assert.That(reply.Reason, Does.Contain(TxCoordHeaders.TransactionId));
    }

    [Test]
    public async Task ParticipantOnAServerWithoutPreparedTransactions_FailsAtStart_NamingTheSetting()
    {
        var connectionString = await TestServers.CreateDatabaseAsync($"noprep_{Guid.NewGuid():N}"[..20], TestServers.PostgreSqlWithoutPreparedTransactions);
        var options = new TxCoordParticipantOptions { ParticipantId = "noprep", ConnectionString = connectionString };
        KeyValueParticipant.Configure(options);
        await using var services = new ServiceCollection().BuildServiceProvider();
        await using var runtime = new ParticipantRuntime(options, services, TimeProvider.System, NullLogger<ParticipantRuntime>.Instance);

        var error = Assert.ThrowsAsync<PreparedTransactionsDisabledException>(runtime.InitializeAsync);

        Assert.That(error!.Message, Does.Contain("max_prepared_transactions = 0").And.Contains("restart PostgreSQL"));
    }

    [Test]
    public async Task PrepareBranchesAndCommitBranches_HandleEachBranchAsAloneMessageWould_AndAnswerInOneMessageEach()
    {
        var (first, firstKey) = await StartBranchAsync();
        var (second, secondKey) = await StartBranchAsync();
        var neverWorked = TransactionId.New();
        var participant = new ParticipantId(_participant);
        await _probe.SendAsync(_participant, new PrepareBranches
        {
            Coordinator = _probe.Id, Participant = participant, Branches = [Prepare(first), Prepare(neverWorked), Prepare(second)],
        });
        var voted = await _probe.NextAsync<BranchesVoted>(first);
        Assert.Multiple(async () =>
        {
            Assert.That(voted.Participant, Is.EqualTo(participant));
            Assert.That(voted.Votes.Select(v => (v.TransactionId, v.Vote)), Is.EqualTo(new[] { (first, Vote.Yes), (neverWorked, Vote.No), (second, Vote.Yes) }),
                "one vote per branch, in the order asked; no work, no Yes");
            Assert.That(await KeyValueParticipant.CountPreparedAsync(Database), Is.EqualTo(2));
        });

        var batch = new CommitBranches { Coordinator = _probe.Id, Participant = new ParticipantId(_participant), TransactionIds = [first, neverWorked, second] };
        await _probe.SendAsync(_participant, batch);
        var acknowledged = await _probe.NextAsync<BranchesCommitted>(first);
        Assert.Multiple(async () =>
        {
            Assert.That(acknowledged.TransactionIds, Is.EquivalentTo(new[] { first, second }), "a branch that never prepared is not acknowledged");
            Assert.That(acknowledged.Participant.Value, Is.EqualTo(_participant));
            Assert.That(await KeyValueParticipant.ReadAsync(Database, firstKey), Is.EqualTo("v"));
            Assert.That(await KeyValueParticipant.ReadAsync(Database, secondKey), Is.EqualTo("v"));
            Assert.That(await KeyValueParticipant.CountPreparedAsync(Database), Is.Zero);
        });

        // Redelivered or re-driven: the committed branches are acknowledged again, nothing else changes.
        await _probe.SendAsync(_participant, batch with { TransactionIds = [first, second] });
        Assert.That((await _probe.NextAsync<BranchesCommitted>(first)).TransactionIds, Is.EquivalentTo(new[] { first, second }));
    }

    [Test]
    public async Task PreCommitBranches_RecordsEveryBranchPreCommitted_AndAcknowledgesThemInOneMessage()
    {
        var (first, _) = await StartBranchAsync();
        var (second, _) = await StartBranchAsync();
        var participant = new ParticipantId(_participant);
        var threePhase = new[] { first, second }.Select(id => Prepare(id) with { Protocol = CommitProtocol.ThreePhase, Participants = [participant] }).ToArray();
        await _probe.SendAsync(_participant, new PrepareBranches { Coordinator = _probe.Id, Participant = participant, Branches = threePhase });
        Assert.That((await _probe.NextAsync<BranchesVoted>(first)).Votes.Select(v => v.Vote), Is.All.EqualTo(Vote.Yes));

        await _probe.SendAsync(_participant, new PreCommitBranches { Coordinator = _probe.Id, Participant = participant, TransactionIds = [first, second] });
        var acknowledged = await _probe.NextAsync<BranchesPreCommitted>(first);
        Assert.That(acknowledged.TransactionIds, Is.EqualTo(new[] { first, second }));

        await _probe.SendAsync(_participant, new CommitBranches { Coordinator = _probe.Id, Participant = participant, TransactionIds = [first, second] });
        Assert.That((await _probe.NextAsync<BranchesCommitted>(first)).TransactionIds, Is.EqualTo(new[] { first, second }));

        // A late PreCommit for finished branches is answered with their outcome, one by one.
        await _probe.SendAsync(_participant, new PreCommitBranches { Coordinator = _probe.Id, Participant = participant, TransactionIds = [first, second] });
        await _probe.NextAsync<BranchCommitted>(first);
        await _probe.NextAsync<BranchCommitted>(second);
        Assert.That(await KeyValueParticipant.CountPreparedAsync(Database), Is.Zero);
    }

    [Test]
    public async Task BranchThatOnlyRead_VotesReadOnly_FinishesWithoutPreparing_AndTellsAPeerNothingItCouldActOn()
    {
        var id = TransactionId.New();
        var reply = await _probe.SendRawWorkAsync(_participant, new ReadItem { Key = "nobody" }, Headers(id));
        Assert.That(reply.Succeeded, Is.True, reply.Reason);

        await _probe.SendAsync(_participant, Prepare(id));
        Assert.That((await _probe.NextAsync<BranchVoted>(id)).Vote, Is.EqualTo(Vote.ReadOnly));
        await _probe.SendAsync(_participant, Prepare(id));
        var gid = BranchGid.Create(_probe.Id, id, new ParticipantId(_participant));
        var runtime = _cluster.ParticipantRuntime(_participant);
        Assert.Multiple(async () =>
        {
            Assert.That((await _probe.NextAsync<BranchVoted>(id)).Vote, Is.EqualTo(Vote.ReadOnly), "a duplicate Prepare gets the same vote");
            Assert.That(await KeyValueParticipant.CountPreparedAsync(Database), Is.Zero, "nothing prepared, nothing to hold");
            // A prepared peer asking must not hear "aborted" (the coordinator may commit without it): it voted, and knows nothing.
            Assert.That((await runtime.ReportStateAsync(gid, new ParticipantId("peer-x"), 0, CancellationToken.None)).State, Is.EqualTo(BranchState.Prepared));
        });

        // Told the outcome, it knows it.
        await _probe.SendAsync(_participant, new AbortBranch { TransactionId = id, Coordinator = _probe.Id, Participant = new ParticipantId(_participant) });
        await _probe.NextAsync<BranchAborted>(id);
        Assert.That((await runtime.ReportStateAsync(gid, new ParticipantId("peer-x"), 0, CancellationToken.None)).State, Is.EqualTo(BranchState.Aborted));
    }

    [TestCase(CommitProtocol.TwoPhase, PutMode.ClaimReadOnly, TestName = "A handler that claims read-only but wrote: the branch prepares")]
    [TestCase(CommitProtocol.ThreePhase, PutMode.Normal, TestName = "3PC never votes ReadOnly: a read-only branch prepares")]
    public async Task ReadOnlyVote_OnlyWhenTheBranchWroteNothing_AndOnlyIn2PC(CommitProtocol protocol, PutMode mode)
    {
        var id = TransactionId.New();
        var key = $"k-{id}";
        var work = mode == PutMode.ClaimReadOnly
            ? await _probe.SendRawWorkAsync(_participant, new PutItem { Key = key, Value = "v", Mode = mode }, Headers(id))
            : await _probe.SendRawWorkAsync(_participant, new ReadItem { Key = key }, Headers(id));
        Assert.That(work.Succeeded, Is.True, work.Reason);

        await _probe.SendAsync(_participant, Prepare(id) with { Protocol = protocol, Participants = [new ParticipantId(_participant)] });
        Assert.That((await _probe.NextAsync<BranchVoted>(id)).Vote, Is.EqualTo(Vote.Yes));
        await _probe.SendAsync(_participant, Commit(id));
        await _probe.NextAsync<BranchCommitted>(id);
        Assert.That(await KeyValueParticipant.ReadAsync(Database, key), Is.EqualTo(mode == PutMode.ClaimReadOnly ? "v" : null));
    }

    [Test]
    public void InvalidParticipantOptions_AreRejectedWithWhatToFix()
    {
        var services = new ServiceCollection();
        Assert.Multiple(() =>
        {
            Assert.That(() => services.AddTxCoordParticipant(o => { o.ParticipantId = "bad id"; o.ConnectionString = "Host=x"; KeyValueParticipant.Configure(o); }),
                Throws.ArgumentException.With.Message.Contains("participant id"));
            Assert.That(() => services.AddTxCoordParticipant(o => { o.ParticipantId = "p"; KeyValueParticipant.Configure(o); }),
                Throws.InvalidOperationException.With.Message.Contains("ConnectionString"));
            Assert.That(() => services.AddTxCoordParticipant(o => { o.ParticipantId = "p"; o.ConnectionString = "Host=x"; }),
                Throws.InvalidOperationException.With.Message.Contains("no work handler"));
            Assert.That(() => services.AddTxCoordInitiator(o => o.CoordinatorId = "a b"),
                Throws.ArgumentException.With.Message.Contains("coordinator id"));
        });
    }

    [Test]
    public async Task WorkDeliveredTwiceWithTheSameNumber_RunsOnce_AndTheBranchPrepares()
    {
        var id = TransactionId.New();
        var key = $"twice-{id}";
        var headers = new Dictionary<string, object>(Headers(id)) { [TxCoordHeaders.WorkSequence] = 1 };
        var first = await _probe.SendRawWorkAsync(_participant, new PutItem { Key = key, Value = "v" }, headers);
        // Run again, the insert of the same key would fail and roll the branch back.
        var again = await _probe.SendRawWorkAsync(_participant, new PutItem { Key = key, Value = "v" }, headers);

        await _probe.SendAsync(_participant, Prepare(id) with { WorkCount = 1 });
        var vote = await _probe.NextAsync<BranchVoted>(id);
        Assert.Multiple(() =>
        {
            Assert.That(first.Succeeded, Is.True, first.Reason);
            Assert.That(again.Succeeded, Is.True, again.Reason);
            Assert.That(vote.Vote, Is.EqualTo(Vote.Yes), vote.Reason);
        });

        await _probe.SendAsync(_participant, Commit(id));
        await _probe.NextAsync<BranchCommitted>(id);
        Assert.That(await KeyValueParticipant.ReadAsync(Database, key), Is.EqualTo("v"));
    }

    [Test]
    public async Task PrepareExpectingMoreWorksThanTheBranchHolds_VotesNo_AndRollsTheBranchBack()
    {
        var id = TransactionId.New();
        var key = $"short-{id}";
        var headers = new Dictionary<string, object>(Headers(id)) { [TxCoordHeaders.WorkSequence] = 2 };
        var work = await _probe.SendRawWorkAsync(_participant, new PutItem { Key = key, Value = "v" }, headers);
        Assert.That(work.Succeeded, Is.True, work.Reason);

        await _probe.SendAsync(_participant, Prepare(id) with { WorkCount = 2 });
        var vote = await _probe.NextAsync<BranchVoted>(id);

        Assert.Multiple(() =>
        {
            Assert.That(vote.Vote, Is.EqualTo(Vote.No));
            Assert.That(vote.Reason, Does.Contain("work 1 was lost"));
        });
        Assert.That(await KeyValueParticipant.ReadAsync(Database, key), Is.Null);
        Assert.That(await KeyValueParticipant.CountPreparedAsync(Database), Is.Zero);
    }

    private async Task<(TransactionId Id, string Key)> StartBranchAsync()
    {
        var id = TransactionId.New();
        var key = $"k-{id}";
        var reply = await _probe.SendRawWorkAsync(_participant, new PutItem { Key = key, Value = "v" }, Headers(id));
        Assert.That(reply.Succeeded, Is.True, reply.Reason);
        return (id, key);
    }

    private Dictionary<string, object> Headers(TransactionId id) => new()
    {
        [TxCoordHeaders.TransactionId] = id.Value.ToString(),
        [TxCoordHeaders.CoordinatorId] = _probe.Id.Value,
    };

    private PrepareBranch Prepare(TransactionId id) =>
        new() { TransactionId = id, Coordinator = _probe.Id, Participant = new ParticipantId(_participant) };

    private CommitBranch Commit(TransactionId id) =>
        new() { TransactionId = id, Coordinator = _probe.Id, Participant = new ParticipantId(_participant) };
}
