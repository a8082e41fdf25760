using System.Collections.Concurrent;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TxCoord.Contracts;

namespace TxCoord.Tests.Dashboard.Infrastructure;

/// <summary>
/// Participants played by the test over the real RabbitMQ: each listens on its real participant
/// queue and records the protocol messages the coordinator sends it, and the test sends the
/// votes and acknowledgements itself, when it wants, to put a transaction in the state a test
/// needs (in doubt, stuck, ...). The coordinator cannot tell them from SDK participants.
/// </summary>
internal sealed class ScriptedParticipants : IAsyncDisposable
{
    private readonly IHost _host;
    private readonly ConcurrentDictionary<string, ConcurrentQueue<object>> _received = new(StringComparer.Ordinal);

    private ScriptedParticipants(IHost host, string coordinatorId)
    {
        _host = host;
        Coordinator = new CoordinatorId(coordinatorId);
    }

    public CoordinatorId Coordinator { get; }

    public static async Task<ScriptedParticipants> StartAsync(string coordinatorId)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddMassTransit(x => x.UsingRabbitMq((_, cfg) => cfg.Host(new Uri(TestServers.RabbitMq))));
        builder.Services.Configure<MassTransitHostOptions>(o =>
        {
            o.WaitUntilStarted = true;
            o.StartTimeout = TimeSpan.FromSeconds(30);
            o.StopTimeout = TimeSpan.FromSeconds(10);
        });
        var host = builder.Build();
        await host.StartAsync();
        return new ScriptedParticipants(host, coordinatorId);
    }

    /// <summary>Listens on the queue of participant <paramref name="participant"/>, recording what arrives (once: a second call does nothing).</summary>
    public async Task ListenAsync(string participant)
    {
        if (_received.ContainsKey(participant))
        {
            return;
        }

        var queue = _received.GetOrAdd(participant, _ => new ConcurrentQueue<object>());
        var connector = _host.Services.GetRequiredService<IReceiveEndpointConnector>();
        var handle = connector.ConnectReceiveEndpoint(TxCoordQueues.Participant(new ParticipantId(participant)), (_, cfg) =>
        {
            cfg.ConfigureConsumeTopology = false;
            ((IRabbitMqReceiveEndpointConfigurator)cfg).Bind(TxCoordQueues.ParticipantInbox(new ParticipantId(participant)));
            cfg.Handler<PrepareBranch>(c => Record(queue, c.Message));
            cfg.Handler<CommitBranch>(c => Record(queue, c.Message));
            cfg.Handler<AbortBranch>(c => Record(queue, c.Message));
        });
        await handle.Ready;
    }

    /// <summary>Every protocol message participant <paramref name="participant"/> has received so far.</summary>
    public IReadOnlyList<object> Received(string participant) =>
        _received.TryGetValue(participant, out var queue) ? [.. queue] : [];

    public Task CommitAsync(TransactionId id, params string[] participants) =>
        SendAsync(new CommitTransaction { TransactionId = id, Participants = [.. participants.Select(p => new ParticipantId(p))] });

    public Task VoteAsync(TransactionId id, string participant, Vote vote) =>
        SendAsync(new BranchVoted { TransactionId = id, Participant = new ParticipantId(participant), Vote = vote });

    public Task AcknowledgeCommitAsync(TransactionId id, string participant) =>
        SendAsync(new BranchCommitted { TransactionId = id, Participant = new ParticipantId(participant) });

    public async Task SendAsync<T>(T message)
        where T : class
    {
        var endpoint = await _host.Services.GetRequiredService<IBus>().GetSendEndpoint(TxCoordQueues.CoordinatorAddress(Coordinator));
        await endpoint.Send(message);
    }

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await _host.StopAsync(timeout.Token);
        _host.Dispose();
    }

    private static Task Record(ConcurrentQueue<object> queue, object message)
    {
        queue.Enqueue(message);
        return Task.CompletedTask;
    }
}
