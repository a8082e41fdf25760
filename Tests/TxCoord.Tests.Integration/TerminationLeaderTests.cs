using System.Collections.Concurrent;
using Dapper;
using MassTransit;
using Microsoft.Extensions.Hosting;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Participants.PostgreSql;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// A 3PC termination leader joins its own round durably before it asks anyone (finding 4 of
/// <c>Coordinator/models/README.md</c>, <c>threepc.pml -DLEADER_JOINS_FIRST</c>). One real participant
/// (PostgreSQL, RabbitMQ) leads; its two peers are played by the test on the real bus, and each reads
/// the leader's <c>branch_states</c> row the moment a question reaches it. The test holds a row lock on
/// the leader's row, so the leader's join waits on it in PostgreSQL, where the test can see it waiting.
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class TerminationLeaderTests
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(60);

    // pg_stat_activity shows the statement as sent: the leader's join (BranchStateStore.JoinRoundSql) waiting on a row lock.
    private const string JoinWaitingSql = """
        SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'
          AND query LIKE 'UPDATE txcoord.branch_states SET last_elected = %'
        """;

    [Test]
    public async Task Leader_AsksNoPeerUntilItsOwnJoinOfTheRoundIsDurable_AndCountsThatJoinAsItsOwnAnswer()
    {
        await using var run = await LeaderRun.StartAsync();
        await using (var hold = await run.LockLeaderRowAsync())
        {
            await run.StopCoordinatorAsync();
            await run.WaitForJoinWaitingAsync();
            Assert.That(run.Questions, Is.Empty, "no peer is asked while the leader's own join of the round is not durable");
            await hold.CommitAsync();
        }

        Assert.That(await run.WaitUntilFinishedAsync(), Is.EqualTo(BranchStatus.Aborted), "all prepared, none PreCommitted: abort");
        Assert.Multiple(() =>
        {
            Assert.That(run.Questions.Select(q => q.Round), Is.All.EqualTo(1));
            Assert.That(run.Questions.Select(q => q.Peer), Is.EquivalentTo(run.Peers), "each peer asked once, in one round");
            Assert.That(run.Questions.Select(q => q.LeaderLastElected), Is.All.EqualTo(1), "the leader's row said last_elected = 1 when each question arrived");
            Assert.That(run.Proposals, Is.EquivalentTo(run.Peers.Select(p => (p, 1, TransactionOutcome.Aborted))));
        });
    }

    [Test]
    public async Task LeaderThatJoinedAHigherRoundMeanwhile_GivesItsRoundUp_AsksNoOneInIt_AndLeadsTheNextOneItLeads()
    {
        await using var run = await LeaderRun.StartAsync();
        await using (var hold = await run.LockLeaderRowAsync())
        {
            await run.StopCoordinatorAsync();
            await run.WaitForJoinWaitingAsync();

            // A later round's leader reached this branch first: it joined round 5 while its own join of round 1 waited.
            await hold.SetLastElectedAsync(5);
            await hold.CommitAsync();
        }

        // Round 7 is the next one the lowest of three leads above round 5.
        await Eventually.WaitForAsync(() => Task.FromResult(run.Questions.Count), n => n > 0, Generous, "the leader to ask its peers in a later round");
        Assert.That(await run.WaitUntilFinishedAsync(), Is.EqualTo(BranchStatus.Aborted));
        Assert.Multiple(() =>
        {
            Assert.That(run.Questions.Select(q => q.Round), Is.All.EqualTo(7), "round 1 was given up before anyone was asked");
            Assert.That(run.Questions.Select(q => q.LeaderLastElected), Is.All.EqualTo(7));
            Assert.That(run.Proposals.Select(p => p.Round), Is.All.EqualTo(7));
        });
    }

    /// <summary>A transaction holding the row lock of one branch's row in <c>txcoord.branch_states</c>.</summary>
    private sealed class RowLock(NpgsqlConnection connection, NpgsqlTransaction transaction, BranchGid gid) : IAsyncDisposable
    {
        public Task SetLastElectedAsync(int round) =>
            connection.ExecuteAsync("UPDATE txcoord.branch_states SET last_elected = @Round WHERE gid = @Gid", new { Round = round, Gid = gid.Value }, transaction);

        public Task CommitAsync() => transaction.CommitAsync();

        public async ValueTask DisposeAsync()
        {
            await transaction.DisposeAsync();
            await connection.DisposeAsync();
        }
    }

    /// <summary>One leader (a real participant), two peers played by the test, a coordinator that goes silent.</summary>
    private sealed class LeaderRun : IAsyncDisposable
    {
        private readonly TxCoordCluster _cluster;
        private readonly ProbeCoordinator _coordinator;
        private readonly IHost _peers;
        private readonly string _database;
        private readonly ConcurrentQueue<(ParticipantId Peer, int Round, int LeaderLastElected)> _questions;
        private readonly ConcurrentQueue<(ParticipantId Peer, int Round, TransactionOutcome Outcome)> _proposals;
        private bool _coordinatorStopped;

        private LeaderRun(
            TxCoordCluster cluster, ProbeCoordinator coordinator, IHost peers, BranchGid gid, ParticipantId[] peerIds,
            ConcurrentQueue<(ParticipantId, int, int)> questions, ConcurrentQueue<(ParticipantId, int, TransactionOutcome)> proposals)
        {
            _cluster = cluster;
            _coordinator = coordinator;
            _peers = peers;
            Gid = gid;
            Peers = peerIds;
            _questions = questions;
            _proposals = proposals;
            _database = cluster.ParticipantDatabases[cluster.ParticipantIds[0]];
        }

        public BranchGid Gid { get; }

        public ParticipantId[] Peers { get; }

        /// <summary>The GetBranchState questions that reached the peers, with the leader's last_elected read when each arrived.</summary>
        public List<(ParticipantId Peer, int Round, int LeaderLastElected)> Questions => [.. _questions];

        public List<(ParticipantId Peer, int Round, TransactionOutcome Outcome)> Proposals => [.. _proposals];

        public static async Task<LeaderRun> StartAsync()
        {
            var cluster = await TxCoordCluster.StartAsync(new ClusterOptions
            {
                Participants = 1,
                DecisionTimeout = TimeSpan.FromSeconds(1),
                Handlers = o =>
                {
                    KeyValueParticipant.Configure(o);
                    o.TerminationTimeout = TimeSpan.FromSeconds(3); // the leader's request timeout too: room for a loaded machine
                },
            });
            var leader = new ParticipantId(cluster.ParticipantIds[0]);
            ParticipantId[] peers = [new($"q1-{leader.Value}"), new($"q2-{leader.Value}")]; // sorted after the leader: it leads round 1
            var database = cluster.ParticipantDatabases[leader.Value];
            var coordinator = await ProbeCoordinator.StartAsync(cluster);
            var id = TransactionId.New();
            var gid = BranchGid.Create(coordinator.Id, id, leader);

            var questions = new ConcurrentQueue<(ParticipantId, int, int)>();
            var proposals = new ConcurrentQueue<(ParticipantId, int, TransactionOutcome)>();
            var host = await cluster.StartProbeAsync(
                (cfg, _) =>
                {
                    foreach (var peer in peers)
                    {
                        cfg.ReceiveEndpoint(TxCoordQueues.Participant(peer), e =>
                        {
                            ((IRabbitMqReceiveEndpointConfigurator)e).Bind(TxCoordQueues.ParticipantInbox(peer));
                            e.Handler<GetBranchState>(async c =>
                            {
                                questions.Enqueue((peer, c.Message.Round, await LastElectedAsync(database, gid)));
                                await c.RespondAsync(new BranchStateReported
                                {
                                    TransactionId = c.Message.TransactionId, Participant = peer, State = BranchState.Prepared,
                                    Round = c.Message.Round, Joined = true, LastElected = c.Message.Round,
                                });
                            });
                            e.Handler<ProposeTermination>(async c =>
                            {
                                proposals.Enqueue((peer, c.Message.Round, c.Message.Outcome));
                                await c.RespondAsync(new TerminationProposalAnswered
                                {
                                    TransactionId = c.Message.TransactionId, Participant = peer, Round = c.Message.Round, Accepted = true, LastElected = c.Message.Round,
                                });
                            });
                            e.Handler<TerminationDecided>(_ => Task.CompletedTask);
                        });
                    }
                },
                _ => { });

            var run = new LeaderRun(cluster, coordinator, host, gid, peers, questions, proposals);
            var work = await coordinator.SendRawWorkAsync(leader.Value, new PutItem { Key = $"k-{id}", Value = "v" }, new Dictionary<string, object>
            {
                [TxCoordHeaders.TransactionId] = id.Value.ToString(),
                [TxCoordHeaders.CoordinatorId] = coordinator.Id.Value,
            });
            Assert.That(work.Succeeded, Is.True, work.Reason);
            await coordinator.SendAsync(leader.Value, new PrepareBranch
            {
                TransactionId = id, Coordinator = coordinator.Id, Participant = leader, Protocol = CommitProtocol.ThreePhase, Participants = [leader, .. peers],
            });
            var vote = await coordinator.NextAsync<BranchVoted>(id);
            Assert.That(vote.Vote, Is.EqualTo(Vote.Yes), vote.Reason);
            return run;
        }

        /// <summary>Holds a row lock on the leader's row (SELECT ... FOR UPDATE) until it is committed or disposed; reads are not blocked.</summary>
        public async Task<RowLock> LockLeaderRowAsync()
        {
            var connection = new NpgsqlConnection(_database);
            await connection.OpenAsync();
            var transaction = await connection.BeginTransactionAsync();
            var held = new RowLock(connection, transaction, Gid);
            var lastElected = await connection.ExecuteScalarAsync<int>(
                "SELECT last_elected FROM txcoord.branch_states WHERE gid = @Gid FOR UPDATE", new { Gid = Gid.Value }, transaction);
            Assert.That(lastElected, Is.Zero, "the branch has joined no round yet");
            return held;
        }

        /// <summary>The coordinator goes silent: the leader's outcome questions time out and it terminates.</summary>
        public async Task StopCoordinatorAsync()
        {
            _coordinatorStopped = true;
            await _coordinator.DisposeAsync();
        }

        public Task WaitForJoinWaitingAsync() =>
            Eventually.WaitForAsync(
                async () =>
                {
                    await using var connection = new NpgsqlConnection(_database);
                    return await connection.ExecuteScalarAsync<long>(JoinWaitingSql);
                },
                n => n > 0,
                Generous,
                "the leader's join of its round to wait on the row lock");

        public async Task<BranchStatus> WaitUntilFinishedAsync()
        {
            var store = _cluster.ParticipantRuntime(_cluster.ParticipantIds[0]).Store;
            return await Eventually.WaitForAsync(
                () => store.GetStatusAsync(Gid, CancellationToken.None), s => s is BranchStatus.Committed or BranchStatus.Aborted, Generous, "the leader's branch to finish");
        }

        private static async Task<int> LastElectedAsync(string database, BranchGid gid)
        {
            await using var connection = new NpgsqlConnection(database);
            return await connection.ExecuteScalarAsync<int>("SELECT last_elected FROM txcoord.branch_states WHERE gid = @Gid", new { Gid = gid.Value });
        }

        public async ValueTask DisposeAsync()
        {
            await _peers.StopAsync();
            _peers.Dispose();
            if (!_coordinatorStopped)
            {
                await _coordinator.DisposeAsync();
            }

            await _cluster.DisposeAsync();
        }
    }
}
