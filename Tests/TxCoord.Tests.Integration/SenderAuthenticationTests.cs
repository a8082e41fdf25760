using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using TxCoord.Contracts;
using TxCoord.Participants;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// Forged protocol messages (issue 16, "What was seen" 1) against a cluster over the real RabbitMQ
/// and PostgreSQL. The authenticated clusters run each service as its own broker user with
/// Security:SenderAuthentication BrokerUser; the forger is "mallory" (any user of the vhost) or a
/// participant's user claiming to be someone else. Rules that hold with authentication off too run
/// on an unauthenticated cluster.
/// </summary>
[NonParallelizable]
public sealed class SenderAuthenticationTests
{
    private BrokerUsers _users = null!;

    [OneTimeSetUp]
    public async Task CreateUsersAsync() => _users = await BrokerUsers.CreateAsync();

    [OneTimeTearDown]
    public async Task DeleteUsersAsync() => await _users.DisposeAsync();

    private ClusterOptions Authenticated => new() { BrokerUsers = _users, VoteTimeout = TimeSpan.FromSeconds(6), CommitTimeout = TimeSpan.FromSeconds(15) };

    // ---- coordinator -> participant ---------------------------------------------------------

    [Test]
    public async Task ForgedCommitBranch_WhileTheCoordinatorWaitsForVotes_IsRefused_TheBranchStaysPreparedUntilTheRealAbort()
    {
        await using var cluster = await TxCoordCluster.StartAsync(Authenticated);
        var (a, b) = (cluster.ParticipantIds[0], cluster.ParticipantIds[1]);
        var (tx, key, commit) = await PrepareOneWhileTheOtherIsDownAsync(cluster, CommitProtocol.TwoPhase);
        using var refused = new RefusedCounter();

        var forged = new CommitBranch { TransactionId = tx, Coordinator = new CoordinatorId(cluster.CoordinatorId), Participant = new ParticipantId(a) };
        await using (var mallory = await ForgerAsync(cluster, _users.Mallory))
        {
            await mallory.SendAsync(TxCoordQueues.ParticipantAddress(new ParticipantId(a)), forged);
        }

        await using (var peer = await ForgerAsync(cluster, cluster.UserOf(b)!))
        {
            await peer.SendAsync(TxCoordQueues.ParticipantAddress(new ParticipantId(a)), forged);
        }

        await using (var unstamped = await ForgerAsync(cluster, _users.Mallory, stamp: false))
        {
            await unstamped.SendAsync(TxCoordQueues.ParticipantAddress(new ParticipantId(a)), forged);
        }

        // Three forged commits had time to arrive; the branch must still be prepared.
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.Multiple(async () =>
        {
            Assert.That(await KeyValueParticipant.ReadAsync(cluster.ParticipantDatabases[a], key), Is.Null, "a forged CommitBranch committed the branch");
            Assert.That(await KeyValueParticipant.CountPreparedAsync(cluster.ParticipantDatabases[a]), Is.EqualTo(1), "the branch waits for the coordinator's decision");
            Assert.That(refused.Of("CommitBranch", "wrong_user"), Is.GreaterThanOrEqualTo(2), "mallory's and the peer's, counted");
            Assert.That(refused.Of("CommitBranch", "no_user_id"), Is.GreaterThanOrEqualTo(1), "the unstamped one, counted");
        });

        var result = await commit;
        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted), result.Reason);
        await Eventually.WaitForAsync(() => KeyValueParticipant.CountPreparedAsync(cluster.ParticipantDatabases[a]), n => n == 0, TimeSpan.FromSeconds(20), "the real abort to roll the branch back");
        Assert.That(await KeyValueParticipant.ReadAsync(cluster.ParticipantDatabases[a], key), Is.Null);
    }

    // ---- participant -> coordinator ---------------------------------------------------------

    [Test]
    public async Task ForgedVote_NamingOneParticipant_FromAnotherParticipantsUser_DoesNotCount()
    {
        await using var cluster = await TxCoordCluster.StartAsync(Authenticated);
        var (a, b) = (cluster.ParticipantIds[0], cluster.ParticipantIds[1]);
        var (tx, key, commit) = await PrepareOneWhileTheOtherIsDownAsync(cluster, CommitProtocol.TwoPhase);

        // b is down: a's user votes Yes in b's name.
        await using (var liar = await ForgerAsync(cluster, cluster.UserOf(a)!))
        {
            await liar.SendAsync(
                TxCoordQueues.CoordinatorAddress(new CoordinatorId(cluster.CoordinatorId)),
                new BranchVoted { TransactionId = tx, Participant = new ParticipantId(b), Vote = Vote.Yes });
        }

        var result = await commit;
        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted), $"the forged vote counted: {result.Reason}");
        Assert.That(result.Reason, Does.Contain("no vote from " + b));
        await Eventually.WaitForAsync(() => KeyValueParticipant.CountPreparedAsync(cluster.ParticipantDatabases[a]), n => n == 0, TimeSpan.FromSeconds(20), "a's branch to roll back");
        Assert.That(await KeyValueParticipant.ReadAsync(cluster.ParticipantDatabases[a], key), Is.Null);
    }

    // ---- participant <-> participant, and the coordinator's engine rule ----------------------

    [Test]
    public async Task ForgedTerminationDecided_FromANonPeer_IsRefused_EvenWithAuthenticationOff()
    {
        await using var cluster = await TxCoordCluster.StartAsync(new ClusterOptions { VoteTimeout = TimeSpan.FromSeconds(6) });
        var a = cluster.ParticipantIds[0];
        var (tx, key, commit) = await PrepareOneWhileTheOtherIsDownAsync(cluster, CommitProtocol.ThreePhase);

        await using (var nobody = await ForgerAsync(cluster, brokerUser: null))
        {
            await nobody.SendAsync(TxCoordQueues.ParticipantAddress(new ParticipantId(a)), new TerminationDecided
            {
                TransactionId = tx, Coordinator = new CoordinatorId(cluster.CoordinatorId), Leader = new ParticipantId("sec-nobody"), Round = 1, Outcome = TransactionOutcome.Committed,
            });
        }

        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.That(await KeyValueParticipant.ReadAsync(cluster.ParticipantDatabases[a], key), Is.Null, "a TerminationDecided from a non-peer committed the branch");

        var result = await commit;
        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted), result.Reason);
        await Eventually.WaitForAsync(() => KeyValueParticipant.CountPreparedAsync(cluster.ParticipantDatabases[a]), n => n == 0, TimeSpan.FromSeconds(20), "a's branch to roll back");
        Assert.That(await KeyValueParticipant.ReadAsync(cluster.ParticipantDatabases[a], key), Is.Null);
    }

    [Test]
    public async Task ForgedTerminationDecided_FromAPeersNameButMallorysUser_IsRefused()
    {
        await using var cluster = await TxCoordCluster.StartAsync(Authenticated);
        var (a, b) = (cluster.ParticipantIds[0], cluster.ParticipantIds[1]);
        var (tx, key, commit) = await PrepareOneWhileTheOtherIsDownAsync(cluster, CommitProtocol.ThreePhase);

        await using (var mallory = await ForgerAsync(cluster, _users.Mallory))
        {
            await mallory.SendAsync(TxCoordQueues.ParticipantAddress(new ParticipantId(a)), new TerminationDecided
            {
                TransactionId = tx, Coordinator = new CoordinatorId(cluster.CoordinatorId), Leader = new ParticipantId(b), Round = 1, Outcome = TransactionOutcome.Committed,
            });
        }

        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.That(await KeyValueParticipant.ReadAsync(cluster.ParticipantDatabases[a], key), Is.Null, "mallory's TerminationDecided committed the branch");
        Assert.That((await commit).Outcome, Is.EqualTo(CommitOutcome.Aborted));
    }

    [Test]
    public async Task TerminationDecidedCommitted_WhileTheCoordinatorIsStillPreparing_IsRefusedByTheCoordinator()
    {
        await using var cluster = await TxCoordCluster.StartAsync(new ClusterOptions { VoteTimeout = TimeSpan.FromSeconds(6) });
        var a = cluster.ParticipantIds[0];
        var (tx, key, commit) = await PrepareOneWhileTheOtherIsDownAsync(cluster, CommitProtocol.ThreePhase);

        // a is a real participant of the transaction; but nobody can be PreCommitted before the coordinator's PreCommit.
        await using (var forger = await ForgerAsync(cluster, brokerUser: null))
        {
            await forger.SendAsync(TxCoordQueues.CoordinatorAddress(new CoordinatorId(cluster.CoordinatorId)), new TerminationDecided
            {
                TransactionId = tx, Coordinator = new CoordinatorId(cluster.CoordinatorId), Leader = new ParticipantId(a), Round = 1, Outcome = TransactionOutcome.Committed,
            });
        }

        var result = await commit;
        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted), "the coordinator adopted a termination commit while preparing");
        await Eventually.WaitForAsync(() => KeyValueParticipant.CountPreparedAsync(cluster.ParticipantDatabases[a]), n => n == 0, TimeSpan.FromSeconds(20), "a's branch to roll back");
        Assert.That(await KeyValueParticipant.ReadAsync(cluster.ParticipantDatabases[a], key), Is.Null);
    }

    // ---- relayed early-prepare votes --------------------------------------------------------

    [Test]
    public async Task RelayedVotes_WithoutOrWithAWrongProof_AreNotTrusted_TheCoordinatorAsksTheParticipant()
    {
        await using var cluster = await TxCoordCluster.StartAsync(Authenticated);
        var a = cluster.ParticipantIds[0];
        var coordinator = TxCoordQueues.CoordinatorAddress(new CoordinatorId(cluster.CoordinatorId));
        await using var mallory = await ForgerAsync(cluster, _users.Mallory);

        // a did no work in these transactions: asked to prepare, it votes No.
        foreach (var proofs in new[] { Array.Empty<string?>(), ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="] })
        {
            var tx = TransactionId.New();
            var answer = await mallory.RequestAsync<CommitTransaction, TransactionCompleted>(coordinator, new CommitTransaction
            {
                TransactionId = tx, Participants = [new ParticipantId(a)], Prepared = [new ParticipantId(a)], PreparedProofs = proofs, WorkCounts = [1],
            });
            Assert.That(answer.Outcome, Is.EqualTo(TransactionOutcome.Aborted), $"a relayed vote with proofs [{string.Join(", ", proofs)}] was trusted");
            // Asked instead of trusted: a votes No, or (it knows no work of this coordinator, so it
            // answers none of its messages) stays silent until the vote timeout.
            Assert.That(answer.Reason, Does.Contain($"participant {a} voted No").Or.Contain($"no vote from {a}"));
        }

        // A ghost: relayed as prepared and the only participant. Asked to prepare, it never answers: vote timeout.
        var ghostTx = TransactionId.New();
        var ghost = await mallory.RequestAsync<CommitTransaction, TransactionCompleted>(coordinator, new CommitTransaction
        {
            TransactionId = ghostTx, Participants = [new ParticipantId("sec-ghost-7")], Prepared = [new ParticipantId("sec-ghost-7")],
        });
        Assert.Multiple(async () =>
        {
            Assert.That(ghost.Outcome, Is.EqualTo(TransactionOutcome.Aborted), "a ghost's relayed vote decided a commit");
            Assert.That(await cluster.CountOpenJournalEntriesAsync(), Is.Zero, "a commit decision is left committing for ever");
        });
    }

    [Test]
    public async Task RelayedVote_ForAParticipantOutsideTheTransaction_NeverDecidesACommit()
    {
        await using var cluster = await TxCoordCluster.StartAsync(new ClusterOptions { VoteTimeout = TimeSpan.FromSeconds(4) });
        var a = cluster.ParticipantIds[0];
        await using var forger = await ForgerAsync(cluster, brokerUser: null);
        var answer = await forger.RequestAsync<CommitTransaction, TransactionCompleted>(
            TxCoordQueues.CoordinatorAddress(new CoordinatorId(cluster.CoordinatorId)),
            new CommitTransaction { TransactionId = TransactionId.New(), Participants = [new ParticipantId(a)], Prepared = [new ParticipantId("sec-ghost-7")] });
        Assert.Multiple(async () =>
        {
            Assert.That(answer.Outcome, Is.EqualTo(TransactionOutcome.Aborted), "only a, which did no work, decides: it votes No");
            Assert.That(await cluster.CountOpenJournalEntriesAsync(), Is.Zero);
        });
    }

    // ---- coordinator -> initiator -----------------------------------------------------------

    [Test]
    public async Task ForgedTransactionCompleted_ToTheInitiator_IsIgnored()
    {
        await using var cluster = await TxCoordCluster.StartAsync(Authenticated with { CommitTimeout = TimeSpan.FromSeconds(6) });
        var a = cluster.ParticipantIds[0];
        await using var tx = cluster.Initiator.Begin();
        Assert.That((await tx.SendAsync(a, new PutItem { Key = $"init-{tx.Id}", Value = "v" })).Succeeded, Is.True);

        // Mallory reads the coordinator's queue (the vhost lets her) and answers the commit request first: Committed.
        await cluster.StopCoordinatorAsync();
        await using var mallory = await ForgerAsync(cluster, _users.Mallory, consumeCoordinatorQueue: true);
        var result = await tx.CommitAsync();

        Assert.Multiple(() =>
        {
            Assert.That(mallory.Answered, Is.GreaterThan(0), "mallory's endpoint got the commit request");
            Assert.That(result.Outcome, Is.Not.EqualTo(CommitOutcome.Committed), "the initiator believed a forged Committed");
            Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.InDoubt), result.Reason);
        });
    }

    // ---- everything configured right ----------------------------------------------------------

    [Test]
    public async Task WithEveryServiceItsOwnBrokerUser_TwoPhaseThreePhaseAndEarlyPrepare_Commit()
    {
        await using var cluster = await TxCoordCluster.StartAsync(Authenticated);
        var declared = new TransactionOptions { Participants = [.. cluster.ParticipantIds] };
        foreach (var (protocol, early) in new[] { (CommitProtocol.TwoPhase, false), (CommitProtocol.ThreePhase, false), (CommitProtocol.TwoPhase, true) })
        {
            await using var tx = cluster.Initiator.Begin(early ? declared : new TransactionOptions { Protocol = protocol });
            var key = $"ok-{tx.Id}";
            foreach (var participant in cluster.ParticipantIds)
            {
                var work = await tx.SendAsync(participant, new PutItem { Key = key, Value = "v" }, prepare: early);
                Assert.That(work.Succeeded, Is.True, work.Reason);
                Assert.That(work.Prepared, Is.EqualTo(early));
            }

            var result = await tx.CommitAsync();
            Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Committed), $"{protocol}{(early ? " early prepare" : "")}: {result.Reason}");
            await Eventually.WaitForAsync(() => cluster.ReadEverywhereAsync(key), v => v.All(x => x == "v"), TimeSpan.FromSeconds(20), $"{protocol} to commit everywhere");
        }
    }

    [Test]
    public async Task WithEveryServiceItsOwnBrokerUser_ThreePhaseTerminationWithoutTheCoordinator_StillDecides()
    {
        await using var cluster = await TxCoordCluster.StartAsync(Authenticated);
        var participants = cluster.ParticipantIds.Select(p => new ParticipantId(p)).ToArray();
        await using var tx = cluster.Initiator.Begin(new TransactionOptions { Protocol = CommitProtocol.ThreePhase });
        var key = $"term-{tx.Id}";
        foreach (var participant in cluster.ParticipantIds)
        {
            Assert.That((await tx.SendAsync(participant, new PutItem { Key = key, Value = "v" })).Succeeded, Is.True);
        }

        // The coordinator prepares both (played by a bus of its broker user), then is gone: no PreCommit, no answer.
        await cluster.StopCoordinatorAsync();
        await using (var coordinator = await ForgerAsync(cluster, _users.Coordinator))
        {
            foreach (var participant in participants)
            {
                await coordinator.SendAsync(TxCoordQueues.ParticipantAddress(participant), new PrepareBranch
                {
                    TransactionId = tx.Id, Coordinator = new CoordinatorId(cluster.CoordinatorId), Participant = participant,
                    Protocol = CommitProtocol.ThreePhase, Participants = participants, WorkCount = 1,
                });
            }

            await Eventually.WaitForAsync(cluster.CountPreparedAsync, n => n == 2, TimeSpan.FromSeconds(15), "both branches to prepare");
        }

        // The peers' questions, proposals and decision between their own broker users must pass: they abort (none PreCommitted).
        await Eventually.WaitForAsync(cluster.CountPreparedAsync, n => n == 0, TimeSpan.FromSeconds(60), "the participants' termination to finish both branches");
        Assert.That(await cluster.ReadEverywhereAsync(key), Is.All.Null);
    }

    [Test]
    public void BrokerUser_WithTheInMemoryTransport_IsRefusedAtStart()
    {
        var failure = Assert.ThrowsAsync<InvalidOperationException>(async () =>
        {
            await using var cluster = await TxCoordCluster.StartAsync(Authenticated with { Transport = Transport.InMemory });
        });
        Assert.That(failure!.Message, Does.Contain("BrokerUser").And.Contain("in-memory"));
    }

    // ---- helpers ------------------------------------------------------------------------------

    /// <summary>
    /// A transaction with work at both participants; the second is stopped before the commit, so the
    /// coordinator waits for its vote while the first is prepared.
    /// </summary>
    private static async Task<(TransactionId Id, string Key, Task<CommitResult> Commit)> PrepareOneWhileTheOtherIsDownAsync(TxCoordCluster cluster, CommitProtocol protocol)
    {
        var (a, b) = (cluster.ParticipantIds[0], cluster.ParticipantIds[1]);
        var tx = cluster.Initiator.Begin(new TransactionOptions { Protocol = protocol });
        var key = $"forged-{tx.Id}";
        foreach (var participant in new[] { a, b })
        {
            var work = await tx.SendAsync(participant, new PutItem { Key = key, Value = "v" });
            Assert.That(work.Succeeded, Is.True, work.Reason);
        }

        await cluster.StopParticipantAsync(b);
        var commit = tx.CommitAsync();
        await Eventually.WaitForAsync(() => KeyValueParticipant.CountPreparedAsync(cluster.ParticipantDatabases[a]), n => n == 1, TimeSpan.FromSeconds(10), "a's branch to prepare");
        return (tx.Id, key, commit);
    }

    private static async Task<Forger> ForgerAsync(TxCoordCluster cluster, string? brokerUser, bool stamp = true, bool consumeCoordinatorQueue = false)
    {
        var forger = new Forger();
        forger.Host = await cluster.StartProbeAsync(
            (cfg, _) =>
            {
                if (brokerUser is not null && stamp)
                {
                    // Claims its own user, which RabbitMQ lets through: the check must look at who that user is.
                    cfg.ConfigureSend(send => send.UseExecute(context =>
                    {
                        if (context.TryGetPayload<RabbitMqSendContext>(out var rabbit))
                        {
                            rabbit.BasicProperties.UserId = brokerUser;
                        }
                    }));
                }

                if (consumeCoordinatorQueue)
                {
                    cfg.ReceiveEndpoint(TxCoordQueues.Coordinator(new CoordinatorId(cluster.CoordinatorId)), endpoint =>
                    {
                        endpoint.ConfigureConsumeTopology = false;
                        ((IRabbitMqReceiveEndpointConfigurator)endpoint).Bind(TxCoordQueues.CoordinatorInbox(new CoordinatorId(cluster.CoordinatorId)));
                        endpoint.Handler<CommitTransaction>(async context =>
                        {
                            Interlocked.Increment(ref forger.AnsweredCount);
                            await context.RespondAsync(new TransactionCompleted { TransactionId = context.Message.TransactionId, Outcome = TransactionOutcome.Committed });
                        });
                    });
                }
            },
            _ => { },
            brokerUser);
        return forger;
    }

    /// <summary>Listens to txcoord_messages_refused_total (every host of the cluster runs in this process).</summary>
    private sealed class RefusedCounter : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly ConcurrentDictionary<(string Type, string Reason), long> _counts = new();

        public RefusedCounter()
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == "TxCoord" && instrument.Name == "txcoord_messages_refused_total")
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
            {
                string type = "", reason = "";
                foreach (var tag in tags)
                {
                    if (tag.Key == "type")
                    {
                        type = tag.Value as string ?? "";
                    }
                    else if (tag.Key == "reason")
                    {
                        reason = tag.Value as string ?? "";
                    }
                }

                _counts.AddOrUpdate((type, reason), value, (_, total) => total + value);
            });
            _listener.Start();
        }

        public long Of(string type, string reason) => _counts.GetValueOrDefault((type, reason));

        public void Dispose() => _listener.Dispose();
    }

    private sealed class Forger : IAsyncDisposable
    {
        public int AnsweredCount;

        public IHost Host { get; set; } = null!;

        public int Answered => Volatile.Read(ref AnsweredCount);

        private IBus Bus => Host.Services.GetRequiredService<IBus>();

        public async Task SendAsync<T>(Uri address, T message)
            where T : class
        {
            var endpoint = await Bus.GetSendEndpoint(address);
            await endpoint.Send(message);
        }

        public async Task<TResponse> RequestAsync<TRequest, TResponse>(Uri address, TRequest message)
            where TRequest : class
            where TResponse : class
        {
            var client = Bus.CreateRequestClient<TRequest>(address, RequestTimeout.After(s: 30));
            return (await client.GetResponse<TResponse>(message)).Message;
        }

        public async ValueTask DisposeAsync()
        {
            await Host.StopAsync();
            Host.Dispose();
        }
    }
}
