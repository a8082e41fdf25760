using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Diagnostics.Metrics;
using MassTransit;

namespace TxCoord.Bench.Measurement;

/// <summary>
/// Counts, in this process, the messages the observed MassTransit buses send (by message type)
/// and receive, and the commands Npgsql executes (from its own metrics). For B3e (everything in
/// this process) that is the whole transaction; for B3/B4 it is the initiator's side only.
/// </summary>
internal sealed class InProcessCounters : IDisposable, ISendObserver, IReceiveObserver
{
    private const string NpgsqlMeter = "Npgsql";
    private const string NpgsqlOperationInstrument = "db.client.operation.duration";

    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<string, long> _sentByType = new(StringComparer.Ordinal);
    private long _received;
    private long _sqlCommands;

    public InProcessCounters()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == NpgsqlMeter && instrument.Name == NpgsqlOperationInstrument)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<double>((_, _, _, _) => Interlocked.Increment(ref _sqlCommands));
        _listener.Start();
    }

    /// <summary>Counts what <paramref name="bus"/> sends and receives from now on.</summary>
    public void Observe(IBus bus)
    {
        bus.ConnectSendObserver(this);
        bus.ConnectReceiveObserver(this);
    }

    public Snapshot Take() => new(
        _sentByType.ToImmutableDictionary(StringComparer.Ordinal),
        Interlocked.Read(ref _received),
        Interlocked.Read(ref _sqlCommands));

    public void Dispose() => _listener.Dispose();

    Task ISendObserver.PreSend<T>(SendContext<T> context) => Task.CompletedTask;

    Task ISendObserver.PostSend<T>(SendContext<T> context)
    {
        _sentByType.AddOrUpdate(typeof(T).Name, 1, (_, n) => n + 1);
        return Task.CompletedTask;
    }

    Task ISendObserver.SendFault<T>(SendContext<T> context, Exception exception) => Task.CompletedTask;

    Task IReceiveObserver.PreReceive(ReceiveContext context) => Task.CompletedTask;

    Task IReceiveObserver.PostReceive(ReceiveContext context)
    {
        Interlocked.Increment(ref _received);
        return Task.CompletedTask;
    }

    Task IReceiveObserver.PostConsume<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType) => Task.CompletedTask;

    Task IReceiveObserver.ConsumeFault<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType, Exception exception) => Task.CompletedTask;

    Task IReceiveObserver.ReceiveFault(ReceiveContext context, Exception exception) => Task.CompletedTask;

    /// <summary>Cumulative counts at one moment.</summary>
    internal sealed record Snapshot(ImmutableDictionary<string, long> SentByType, long Received, long SqlCommands)
    {
        public long Sent => SentByType.Values.Sum();

        /// <summary>What happened between <paramref name="before"/> and this snapshot.</summary>
        public Snapshot Since(Snapshot before) => new(
            SentByType
                .Select(kv => (kv.Key, Value: kv.Value - before.SentByType.GetValueOrDefault(kv.Key)))
                .Where(kv => kv.Value != 0)
                .ToImmutableDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal),
            Received - before.Received,
            SqlCommands - before.SqlCommands);
    }
}
