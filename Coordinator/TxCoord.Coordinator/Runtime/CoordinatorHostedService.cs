using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TxCoord.Contracts;
using TxCoord.Coordinator.Journal;

namespace TxCoord.Coordinator.Runtime;

/// <summary>
/// Starts the coordinator: creates the journal schema (a failure stops the start), then runs
/// recovery and the timer loop in the background until the host stops.
/// </summary>
internal sealed class CoordinatorHostedService(
    CoordinatorRuntime runtime,
    ITransactionJournal journal,
    ILogger<CoordinatorHostedService> logger) : IHostedService, IDisposable
{
    private readonly CancellationTokenSource _stopping = new();
    private Task? _loop;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            await journal.EnsureSchemaAsync(cancellationToken);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            Log.SchemaFailed(logger, ex, runtime.Id.Value);
            throw;
        }

        Log.Started(logger, runtime.Id.Value, TxCoordQueues.Coordinator(runtime.Id));
        _loop = Task.Run(() => RunLoopAsync(_stopping.Token), CancellationToken.None);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_loop is null)
        {
            return;
        }

        Log.Stopping(logger, runtime.Id.Value, runtime.InFlightCount);
        await _stopping.CancelAsync();
        await _loop.WaitAsync(cancellationToken);
    }

    public void Dispose() => _stopping.Dispose();

    private async Task RunLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await runtime.RunAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }
}
