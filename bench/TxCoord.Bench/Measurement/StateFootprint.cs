using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TxCoord.Contracts;
using TxCoord.Coordinator;
using TxCoord.Coordinator.Runtime;

namespace TxCoord.Bench.Measurement;

/// <summary>
/// The coordinator's memory per transaction in flight: a real coordinator runtime (as
/// <c>AddTxCoordCoordinator</c> builds it, with the PostgreSQL journal) is handed N commit
/// requests whose participants never vote, so all N stay in memory in their prepare phase;
/// the managed heap before and after, divided by N, is what one in-flight transaction costs.
/// Only the bus is left out: its outgoing messages (PrepareBranch) are counted and dropped.
/// </summary>
internal static class StateFootprint
{
    public static async Task<FootprintResult> MeasureAsync(string journalConnectionString, int transactions, CancellationToken cancellationToken)
    {
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.SetMinimumLevel(LogLevel.Warning).AddProvider(NullLoggerProvider.Instance));
        var transport = new DroppingTransport();
        services.TryAddSingleton<ICoordinatorTransport>(transport); // before AddTxCoordCoordinator, whose TryAdd then keeps it
        services.AddTxCoordCoordinator(o =>
        {
            o.CoordinatorId = "bench-footprint";
            o.JournalConnectionString = journalConnectionString;
            o.VoteTimeout = TimeSpan.FromHours(1);
            o.DefaultTransactionTimeout = TimeSpan.FromHours(1);
        });
        await using var provider = services.BuildServiceProvider();
        var runtime = provider.GetRequiredService<CoordinatorRuntime>();
        ParticipantId[] participants = [new("bank-a"), new("bank-b")];
        var ids = Enumerable.Range(0, transactions).Select(_ => TransactionId.New()).ToArray();

        // Warm the code paths and the journal's connection pool first, outside the measurement.
        await runtime.CommitAsync(Request(TransactionId.New(), participants), ReplyTo(), cancellationToken);
        var baseline = Heap();
        await Parallel.ForEachAsync(ids, new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = cancellationToken }, async (id, token) =>
            await runtime.CommitAsync(Request(id, participants), ReplyTo(), token));
        var loaded = Heap();
        var inFlight = runtime.InFlightCount - 1;
        GC.KeepAlive(runtime);
        return new FootprintResult(transactions, inFlight, (double)(loaded - baseline) / transactions, transport.Sent);
    }

    private static CommitTransaction Request(TransactionId id, ParticipantId[] participants) =>
        new() { TransactionId = id, Participants = participants, Protocol = CommitProtocol.TwoPhase };

    /// <summary>Each request carries its reply address, as a real initiator's does.</summary>
    private static ReplyTarget ReplyTo() => new(new Uri($"rabbitmq://127.0.0.1/bench-initiator_bus_{Guid.NewGuid():N}?temporary=true"), NewId.NextGuid());

    private static long Heap()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    private sealed class DroppingTransport : ICoordinatorTransport
    {
        private long _sent;

        public long Sent => Interlocked.Read(ref _sent);

        public Task SendToParticipantAsync<T>(ParticipantId participant, T message, CancellationToken cancellationToken)
            where T : class
        {
            Interlocked.Increment(ref _sent);
            return Task.CompletedTask;
        }

        public Task ReplyAsync(ReplyTarget target, TransactionCompleted message, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _sent);
            return Task.CompletedTask;
        }
    }
}

/// <summary>Bytes of managed heap per transaction held in the coordinator's memory (prepare phase).</summary>
internal sealed record FootprintResult(int Transactions, int InFlight, double BytesPerTransaction, long MessagesDropped);
