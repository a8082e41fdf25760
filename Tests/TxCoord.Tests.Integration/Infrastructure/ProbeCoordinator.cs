using System.Collections.Concurrent;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using TxCoord.Contracts;
using TxCoord.Participants;

namespace TxCoord.Tests.Integration.Infrastructure;

/// <summary>
/// Stands in for a coordinator so a test can drive participants message by message: it sends
/// Prepare/Commit/Abort itself (duplicated, reordered, late), records every reply, and answers
/// outcome queries as told. Its initiator sends work stamped with the probe's coordinator id.
/// </summary>
internal sealed class ProbeCoordinator : IAsyncDisposable
{
    private readonly IHost _host;
    private readonly List<object> _replies;

    private ProbeCoordinator(
        IHost host, CoordinatorId id, ConcurrentDictionary<TransactionId, TransactionOutcome> outcomes, ConcurrentDictionary<TransactionId, string> faults, List<object> replies)
    {
        _host = host;
        Faults = faults;
        Id = id;
        Outcomes = outcomes;
        _replies = replies;
    }

    public CoordinatorId Id { get; }

    /// <summary>What the probe answers to GetTransactionOutcome; transactions not listed are Pending.</summary>
    public ConcurrentDictionary<TransactionId, TransactionOutcome> Outcomes { get; }

    /// <summary>Transactions whose outcome question the probe faults on (its handler throws this message), as a coordinator whose journal fails would.</summary>
    public ConcurrentDictionary<TransactionId, string> Faults { get; }


    public ITransactionInitiator Initiator => _host.Services.GetRequiredService<ITransactionInitiator>();

    public static async Task<ProbeCoordinator> StartAsync(TxCoordCluster cluster)
    {
        var id = new CoordinatorId($"probe-{Guid.NewGuid():N}"[..20]);
        var outcomes = new ConcurrentDictionary<TransactionId, TransactionOutcome>();
        var faults = new ConcurrentDictionary<TransactionId, string>();
        var replies = new List<object>();
        var host = await cluster.StartProbeAsync(
            (cfg, _) => cfg.ReceiveEndpoint(TxCoordQueues.Coordinator(id), e =>
            {
                ((IRabbitMqReceiveEndpointConfigurator)e).Bind(TxCoordQueues.CoordinatorInbox(id));
                e.Handler<BranchVoted>(c => Record(replies, c.Message));
                e.Handler<BranchCommitted>(c => Record(replies, c.Message));
                e.Handler<BranchesCommitted>(c => Record(replies, c.Message));
                e.Handler<BranchesVoted>(c => Record(replies, c.Message));
                e.Handler<BranchesPreCommitted>(c => Record(replies, c.Message));
                e.Handler<BranchAborted>(c => Record(replies, c.Message));
                e.Handler<GetTransactionOutcome>(c => faults.TryGetValue(c.Message.TransactionId, out var fault)
                    ? throw new InvalidOperationException(fault)
                    : c.RespondAsync(new TransactionOutcomeReported
                    {
                        TransactionId = c.Message.TransactionId,
                        Outcome = outcomes.TryGetValue(c.Message.TransactionId, out var o) ? o : TransactionOutcome.Pending,
                    }));
            }),
            services => services.AddTxCoordInitiator(o =>
            {
                o.CoordinatorId = id.Value;
                o.CommitTimeout = TimeSpan.FromSeconds(2);
            }));
        return new ProbeCoordinator(host, id, outcomes, faults, replies);
    }

    public async Task SendAsync<T>(string participant, T message)
        where T : class
    {
        var endpoint = await _host.Services.GetRequiredService<IBus>().GetSendEndpoint(TxCoordQueues.ParticipantAddress(new ParticipantId(participant)));
        await endpoint.Send(message);
    }

    /// <summary>Sends a work message with hand-made headers, as a buggy or hostile sender might.</summary>
    public async Task<WorkCompleted> SendRawWorkAsync<T>(string participant, T message, IReadOnlyDictionary<string, object> headers)
        where T : class
    {
        var client = _host.Services.GetRequiredService<IClientFactory>()
            .CreateRequestClient<T>(TxCoordQueues.ParticipantAddress(new ParticipantId(participant)), RequestTimeout.After(s: 10));
        var response = await client.GetResponse<WorkCompleted>(message, x => x.UseExecute(c =>
        {
            foreach (var (key, value) in headers)
            {
                c.Headers.Set(key, value);
            }
        }));
        return response.Message;
    }

    /// <summary>Waits for the next reply of type <typeparamref name="T"/> for <paramref name="id"/> and takes it; other replies stay.</summary>
    public async Task<T> NextAsync<T>(TransactionId id, TimeSpan? timeout = null)
        where T : class
    {
        var found = await Eventually.WaitForAsync(
            () => Task.FromResult(Take<T>(id)), r => r is not null, timeout ?? TimeSpan.FromSeconds(15), $"a {typeof(T).Name} for {id}");
        return found!;
    }

    /// <summary>How many replies of type <typeparamref name="T"/> for <paramref name="id"/> arrived and were not taken.</summary>
    public int Count<T>(TransactionId id)
    {
        lock (_replies)
        {
            return _replies.Count(r => r is T && IdOf(r) == id);
        }
    }

    private T? Take<T>(TransactionId id)
        where T : class
    {
        lock (_replies)
        {
            var index = _replies.FindIndex(r => r is T && IdOf(r) == id);
            if (index < 0)
            {
                return null;
            }

            var reply = (T)_replies[index];
            _replies.RemoveAt(index);
            return reply;
        }
    }

    private static Task Record(List<object> replies, object reply)
    {
        lock (replies)
        {
            replies.Add(reply);
        }

        return Task.CompletedTask;
    }

    private static TransactionId IdOf(object reply) => reply switch
    {
        BranchVoted v => v.TransactionId,
        BranchCommitted c => c.TransactionId,
        BranchesCommitted b => b.TransactionIds.FirstOrDefault(), // a batch is found by its first transaction
        BranchesVoted b => b.Votes.FirstOrDefault()?.TransactionId ?? default,
        BranchesPreCommitted b => b.TransactionIds.FirstOrDefault(),
        BranchAborted a => a.TransactionId,
        _ => default,
    };

    public async ValueTask DisposeAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
    }
}
