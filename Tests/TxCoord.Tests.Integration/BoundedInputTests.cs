using Dapper;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;
using TxCoord.Contracts;
using TxCoord.Participants;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// Hostile input from anything that can publish on the vhost (issue 16, "What was seen" 2 and 3):
/// one message must not multiply into hundreds of queues, text must stay bounded in the journal,
/// the replies and the log, and a newline must not forge a log line. Over the real RabbitMQ and
/// PostgreSQL.
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class BoundedInputTests
{
    private readonly CapturedLogs _coordinatorLogs = new();
    private readonly CapturedLogs _participantLogs = new();
    private TxCoordCluster _cluster = null!;
    private IHost _probe = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _cluster = await TxCoordCluster.StartAsync(new ClusterOptions
        {
            Participants = 1,
            CoordinatorServices = services => CaptureEverything(services, _coordinatorLogs),
            ParticipantServices = (services, _, _) => CaptureEverything(services, _participantLogs),
        });
        _probe = await _cluster.StartProbeAsync((_, _) => { }, _ => { });
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        await _probe.StopAsync();
        _probe.Dispose();
        await _cluster.DisposeAsync();
    }

    [Test]
    public async Task CommitNaming300Participants_IsAbortedNamingTheCap_BeforeAnyQueueOrPrepareExists()
    {
        var id = TransactionId.New();
        var ghosts = Enumerable.Range(1, 300).Select(i => new ParticipantId($"ghost-{id.ToString()[..12]}-{i}")).ToArray();

        var answer = await RequestAsync(new CommitTransaction { TransactionId = id, Participants = ghosts });

        var existing = await ExistingQueuesAsync(ghosts.Select(TxCoordQueues.Participant));
        var row = await JournalRowAsync(id);
        Assert.Multiple(() =>
        {
            Assert.That(existing, Is.Empty, "queues of participants named only by the oversized request");
            Assert.That(answer.Outcome, Is.EqualTo(TransactionOutcome.Aborted));
            Assert.That(answer.Reason, Does.Contain("300 participants").And.Contain("32").And.Contain("MaxParticipantsPerTransaction"));
            Assert.That(row.State, Is.EqualTo("aborted"));
            Assert.That(row.Participants, Is.Empty, "the journal row keeps none of the 300 names");
        });
    }

    [Test]
    public async Task RollbackNaming300Participants_TellsNone_AndIsAbortedNamingTheCap()
    {
        var id = TransactionId.New();
        var ghosts = Enumerable.Range(1, 300).Select(i => new ParticipantId($"ghost-{id.ToString()[..12]}-{i}")).ToArray();

        var answer = await RequestAsync(new RollbackTransaction { TransactionId = id, Participants = ghosts, Reason = "bye" });

        Assert.Multiple(async () =>
        {
            Assert.That(await ExistingQueuesAsync(ghosts.Select(TxCoordQueues.Participant)), Is.Empty);
            Assert.That(answer.Outcome, Is.EqualTo(TransactionOutcome.Aborted));
            Assert.That(answer.Reason, Does.Contain("MaxParticipantsPerTransaction"));
        });
    }

    [Test]
    public async Task CommitNamingAHugeParticipantId_EchoesOnlyItsStartInTheReasonAndTheLog()
    {
        var id = TransactionId.New();
        var huge = new string('h', 200_000);

        var answer = await RequestAsync(new CommitTransaction { TransactionId = id, Participants = [new ParticipantId(huge)] });

        var row = await JournalRowAsync(id);
        var logged = _coordinatorLogs.Entries.Where(e => e.Message.Contains(id.ToString())).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(answer.Outcome, Is.EqualTo(TransactionOutcome.Aborted));
            Assert.That(answer.Reason, Does.Contain("invalid participant id").And.Contain("chars cut"));
            Assert.That(answer.Reason!, Has.Length.LessThan(400), "the reply's reason");
            Assert.That(row.Reason, Has.Length.LessThan(400), "the journal's reason");
            Assert.That(logged, Is.Not.Empty);
            Assert.That(logged.Max(e => e.Message.Length), Is.LessThan(2_000), "the longest log line about the transaction");
        });
    }

    [Test]
    public async Task RollbackWithA600KilobyteReason_IsStoredAnsweredAndLoggedCut()
    {
        var id = TransactionId.New();
        // Below the broker's max_message_size, which scripts/services.sh sets to 1 MiB for the test modes.
        var reason = "start " + new string('r', 600_000);

        var answer = await RequestAsync(new RollbackTransaction { TransactionId = id, Participants = [], Reason = reason });

        var row = await JournalRowAsync(id);
        var events = await JournalEventDetailsAsync(id);
        var logged = _coordinatorLogs.Entries.Where(e => e.Message.Contains(id.ToString())).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(answer.Outcome, Is.EqualTo(TransactionOutcome.Aborted));
            Assert.That(answer.Reason, Does.StartWith("rollback requested: start rrr").And.Contain("chars cut)"));
            Assert.That(answer.Reason!, Has.Length.LessThan(2_100), "the reply's reason");
            Assert.That(row.Reason, Has.Length.LessThan(2_100), "the journal's reason");
            Assert.That(events.Max(e => e?.Length ?? 0), Is.LessThan(2_100), "the longest event detail");
            Assert.That(logged.Max(e => e.Message.Length), Is.LessThan(2_300), "the longest log line about the transaction");
        });
    }

    [Test]
    public async Task ReasonWithANewline_IsLoggedAsOneLine_AndStoredEscaped()
    {
        var id = TransactionId.New();
        const string forged = "x\n[12:00:00.000 FTL] fake";

        var answer = await RequestAsync(new RollbackTransaction { TransactionId = id, Participants = [], Reason = forged });

        var row = await JournalRowAsync(id);
        var events = await JournalEventDetailsAsync(id);
        var logged = _coordinatorLogs.Entries.Where(e => e.Message.Contains(id.ToString())).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(answer.Reason, Is.EqualTo(@"rollback requested: x\n[12:00:00.000 FTL] fake"));
            Assert.That(row.Reason, Is.EqualTo(@"rollback requested: x\n[12:00:00.000 FTL] fake"));
            Assert.That(events, Has.None.Contains("\n"));
            Assert.That(logged.Where(e => e.Message.Contains("fake")), Is.Not.Empty);
            Assert.That(logged.Select(e => e.Message), Has.None.Contains("\n").And.None.Contains("\r"), "a log line split in two");
        });
    }

    [Test]
    public async Task NoVoteWithAHostileReason_AbortsWithTheReasonCutAndEscaped()
    {
        // A participant that runs nowhere: the only vote the coordinator gets is the one sent here.
        var id = TransactionId.New();
        var silent = new ParticipantId($"silent-{id.ToString()[..12]}");
        var endpoint = await _probe.Services.GetRequiredService<IBus>().GetSendEndpoint(TxCoordQueues.CoordinatorAddress(new CoordinatorId(_cluster.CoordinatorId)));
        var committing = RequestAsync(new CommitTransaction { TransactionId = id, Participants = [silent] });
        var vote = new BranchVoted { TransactionId = id, Participant = silent, Vote = Vote.No, Reason = "no\r\n[12:00:00.000 FTL] fake " + new string('n', 50_000) };
        while (!committing.IsCompleted)
        {
            // Until the coordinator holds the transaction, a No vote for it is ignored: send it again.
            await endpoint.Send(vote);
            await Task.WhenAny(committing, Task.Delay(TimeSpan.FromMilliseconds(100)));
        }

        var answer = await committing;
        var row = await JournalRowAsync(id);
        Assert.Multiple(() =>
        {
            Assert.That(answer.Outcome, Is.EqualTo(TransactionOutcome.Aborted));
            Assert.That(answer.Reason, Does.StartWith($"participant {silent} voted No: no\\r\\n[12:00:00.000 FTL] fake nnn"));
            Assert.That(row.Reason, Does.Not.Contain("\n").And.Not.Contain("\r"));
            Assert.That(row.Reason, Has.Length.LessThan(2_200));
        });
    }

    [Test]
    public async Task ProtocolMessagesNamingAnUnknownCoordinator_CreateNoCoordinatorQueue()
    {
        var participant = new ParticipantId(_cluster.ParticipantIds[0]);
        var stray = new CoordinatorId($"stray-{Guid.NewGuid():N}"[..24]);
        var id = TransactionId.New();
        var endpoint = await _probe.Services.GetRequiredService<IBus>().GetSendEndpoint(TxCoordQueues.ParticipantAddress(participant));

        await endpoint.Send(new PrepareBranch { TransactionId = id, Coordinator = stray, Participant = participant, Participants = [participant] });
        await endpoint.Send(new AbortBranch { TransactionId = TransactionId.New(), Coordinator = stray, Participant = participant });
        await endpoint.Send(new PrepareBranches
        {
            Coordinator = stray, Participant = participant,
            Branches = [new PrepareBranch { TransactionId = TransactionId.New(), Coordinator = stray, Participant = participant }],
        });

        // Either the queue appears (the participant answered the stray coordinator) or all three refusals are logged.
        await Eventually.WaitForAsync(
            async () => (await ExistingQueuesAsync([TxCoordQueues.Coordinator(stray)])).Count > 0 || Refusals(stray) >= 3,
            found => found,
            TimeSpan.FromSeconds(15),
            "the stray coordinator's queue or three refusals");

        Assert.Multiple(async () =>
        {
            Assert.That(await ExistingQueuesAsync([TxCoordQueues.Coordinator(stray)]), Is.Empty, "a queue for a coordinator the participant does not know");
            Assert.That(Refusals(stray), Is.GreaterThanOrEqualTo(3));
        });
    }

    [Test]
    public void InitiatorDeclaringMoreParticipantsThanTheCap_IsRefusedAtBegin()
    {
        var names = Enumerable.Range(1, 33).Select(i => $"peer-{i}").ToArray();

        var refused = Assert.Throws<ArgumentException>(() => _cluster.Initiator.Begin(new TransactionOptions { Participants = names }));

        Assert.That(refused!.Message, Does.Contain("33 participants").And.Contain("MaxParticipantsPerTransaction").And.Contain("32"));
    }

    [Test]
    public async Task InitiatorWithSmallCaps_RefusesTheWorkAboveThem_AndTheParticipantAboveThem()
    {
        var participant = _cluster.ParticipantIds[0];
        var host = await _cluster.StartProbeAsync((_, _) => { }, services => services.AddTxCoordInitiator(o =>
        {
            o.CoordinatorId = _cluster.CoordinatorId;
            o.MaxWorksPerParticipant = 2;
            o.MaxParticipantsPerTransaction = 1;
        }));
        try
        {
            await using var tx = host.Services.GetRequiredService<ITransactionInitiator>().Begin();
            for (var i = 1; i <= 2; i++)
            {
                var work = await tx.SendAsync(participant, new PutItem { Key = $"k{i}-{tx.Id}", Value = "v" });
                Assert.That(work.Succeeded, Is.True, work.Reason);
            }

            var thirdWork = Assert.ThrowsAsync<InvalidOperationException>(() => tx.SendAsync(participant, new PutItem { Key = $"k3-{tx.Id}", Value = "v" }));
            var secondParticipant = Assert.ThrowsAsync<InvalidOperationException>(() => tx.SendAsync("another", new PutItem { Key = $"k4-{tx.Id}", Value = "v" }));
            Assert.Multiple(() =>
            {
                Assert.That(thirdWork!.Message, Does.Contain("MaxWorksPerParticipant"));
                Assert.That(secondParticipant!.Message, Does.Contain("MaxParticipantsPerTransaction"));
            });

            // What was sent still commits.
            Assert.That((await tx.CommitAsync()).Outcome, Is.EqualTo(CommitOutcome.Committed));
        }
        finally
        {
            await host.StopAsync();
            host.Dispose();
        }
    }

    [Test]
    public async Task WorkNumberedAboveTheParticipantsCap_IsRefused()
    {
        var participant = _cluster.ParticipantIds[0];
        var client = _probe.Services.GetRequiredService<IClientFactory>()
            .CreateRequestClient<PutItem>(TxCoordQueues.ParticipantAddress(new ParticipantId(participant)), RequestTimeout.After(s: 10));
        var id = TransactionId.New();

        var answer = await client.GetResponse<WorkCompleted>(new PutItem { Key = $"k-{id}", Value = "v" }, x => x.UseExecute(c =>
        {
            c.Headers.Set(TxCoordHeaders.TransactionId, id.ToString());
            c.Headers.Set(TxCoordHeaders.CoordinatorId, _cluster.CoordinatorId);
            c.Headers.Set(TxCoordHeaders.WorkSequence, 1_001);
        }));

        Assert.That(answer.Message.Succeeded, Is.False);
        Assert.That(answer.Message.Reason, Does.Contain("MaxWorksPerTransaction"));
    }

    [Test]
    public async Task MessageOfAnUnknownType_IsLoggedWithItsTypeAndQueue_WhenItIsMovedToSkipped()
    {
        var bus = _probe.Services.GetRequiredService<IBus>();
        var coordinatorQueue = TxCoordQueues.Coordinator(new CoordinatorId(_cluster.CoordinatorId));
        var participantQueue = TxCoordQueues.Participant(new ParticipantId(_cluster.ParticipantIds[0]));
        var marker = Guid.NewGuid().ToString("N");
        await (await bus.GetSendEndpoint(new Uri($"queue:{coordinatorQueue}"))).Send(new NobodyHandlesThis { Marker = marker });
        await (await bus.GetSendEndpoint(new Uri($"queue:{participantQueue}"))).Send(new NobodyHandlesThis { Marker = marker });

        static bool Names(CapturedLog e, string queue) =>
            e.Level == LogLevel.Warning && e.Message.Contains(nameof(NobodyHandlesThis)) && e.Message.Contains(queue);
        await Eventually.WaitForAsync(
            async () => await ExistingQueuesAsync([$"{coordinatorQueue}_skipped", $"{participantQueue}_skipped"]),
            found => found.Count == 2,
            TimeSpan.FromSeconds(15),
            "both _skipped queues");
        var logged = await Eventually.WaitForAsync(
            () => Task.FromResult(_coordinatorLogs.Entries.Any(e => Names(e, coordinatorQueue)) && _participantLogs.Entries.Any(e => Names(e, participantQueue))),
            found => found,
            TimeSpan.FromSeconds(5),
            "a warning naming the type and the queue on each side: " + string.Join(" | ", _coordinatorLogs.Entries.Concat(_participantLogs.Entries).Where(e => e.Message.Contains("skipped")).Select(e => e.Message)));

        Assert.That(logged, Is.True);
    }

    [Test]
    public async Task MessageAboveTheBrokersMaxMessageSize_IsRefusedByTheBroker()
    {
        // scripts/services.sh sets max_message_size = 1 MiB for every mode; RabbitMQ's default would take 128 MiB.
        var factory = new ConnectionFactory { Uri = TestServers.RabbitMq };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        var queue = TxCoordQueues.Coordinator(new CoordinatorId(_cluster.CoordinatorId));

        var refused = Assert.CatchAsync<Exception>(async () =>
            await channel.BasicPublishAsync(exchange: "", routingKey: queue, mandatory: false, body: new byte[2 * 1024 * 1024]));

        Assert.That(refused!.ToString(), Does.Contain("larger than configured max size").Or.Contain("PRECONDITION_FAILED"));
    }

    private int Refusals(CoordinatorId coordinator) =>
        _participantLogs.Entries.Count(e => e.Level >= LogLevel.Warning && e.Message.Contains(coordinator.Value) && e.Message.Contains("unknown coordinator"));

    private async Task<TransactionCompleted> RequestAsync<T>(T request)
        where T : class
    {
        var client = _probe.Services.GetRequiredService<IClientFactory>()
            .CreateRequestClient<T>(TxCoordQueues.CoordinatorAddress(new CoordinatorId(_cluster.CoordinatorId)), RequestTimeout.After(s: 30));
        return (await client.GetResponse<TransactionCompleted>(request)).Message;
    }

    private async Task<JournalRow> JournalRowAsync(TransactionId id)
    {
        await using var connection = new NpgsqlConnection(_cluster.JournalConnectionString);
        return await connection.QuerySingleAsync<JournalRow>(
            "SELECT state AS State, participants AS Participants, reason AS Reason FROM txcoord.transactions WHERE transaction_id = @id",
            new { id = id.Value });
    }

    private async Task<List<string?>> JournalEventDetailsAsync(TransactionId id)
    {
        await using var connection = new NpgsqlConnection(_cluster.JournalConnectionString);
        return [.. await connection.QueryAsync<string?>("SELECT detail FROM txcoord.transaction_events WHERE transaction_id = @id", new { id = id.Value })];
    }

    /// <summary>Which of <paramref name="queues"/> the broker holds (a passive declare of each: it never creates one).</summary>
    private static async Task<List<string>> ExistingQueuesAsync(IEnumerable<string> queues)
    {
        var factory = new ConnectionFactory { Uri = TestServers.RabbitMq };
        await using var connection = await factory.CreateConnectionAsync();
        var existing = new List<string>();
        foreach (var queue in queues)
        {
            // A 404 closes the channel: one per question.
            await using var channel = await connection.CreateChannelAsync();
            try
            {
                await channel.QueueDeclarePassiveAsync(queue);
                existing.Add(queue);
            }
            catch (OperationInterruptedException e) when (e.ShutdownReason?.ReplyCode == 404)
            {
            }
        }

        return existing;
    }

    private static void CaptureEverything(IServiceCollection services, CapturedLogs logs)
    {
        services.AddSingleton<ILoggerProvider>(logs);
        services.Configure<LoggerFilterOptions>(o => o.MinLevel = LogLevel.Debug);
    }

    /// <summary>A message type no TxCoord endpoint handles: MassTransit moves it to the endpoint's _skipped queue.</summary>
    public sealed record NobodyHandlesThis
    {
        public required string Marker { get; init; }
    }

    private sealed class JournalRow
    {
        public string State { get; init; } = "";

        public string[] Participants { get; init; } = [];

        public string? Reason { get; init; }
    }
}
