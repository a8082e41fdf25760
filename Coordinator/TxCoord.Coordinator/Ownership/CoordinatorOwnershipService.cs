using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using TxCoord.Contracts;

namespace TxCoord.Coordinator.Ownership;

/// <summary>
/// Makes this process the one owner of its coordinator id on the journal before anything else of
/// the coordinator starts (it is registered before the coordinator's other services and before the
/// bus, and the host starts them in order): while another live process owns the id, the start
/// waits, logging who holds it, instead of running a second coordinator over the same transactions.
/// Afterwards it checks its lock every <see cref="CheckInterval"/>; when the lock's connection is
/// lost (the journal restarted) it takes the lock again, and if someone else took it meanwhile it
/// stops the application rather than run as a second owner.
/// </summary>
internal sealed partial class CoordinatorOwnershipService(
    IOptions<CoordinatorOptions> options,
    IHostApplicationLifetime lifetime,
    TimeProvider time,
    ILogger<CoordinatorOwnershipService> logger) : IHostedService, IAsyncDisposable
{
    /// <summary>How often the held lock is checked, and how often a waiting start tries again.</summary>
    public static readonly TimeSpan CheckInterval = TimeSpan.FromSeconds(1);

    private readonly CancellationTokenSource _stopping = new();
    private readonly CoordinatorId _coordinator = new(options.Value.CoordinatorId);
    private OwnershipLock? _lock;
    private Task? _watch;

    private string ApplicationName => CoordinatorOwnership.CoordinatorApplicationPrefix + _coordinator.Value;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _lock = await AcquireAsync(cancellationToken, stopIfTaken: false)
            ?? throw new OperationCanceledException("The start was cancelled while waiting for the coordinator id's ownership.");
        LogAcquired(logger, _coordinator.Value);
        _watch = Task.Run(() => WatchAsync(_stopping.Token), CancellationToken.None);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        if (_watch is not null)
        {
            await _watch.WaitAsync(cancellationToken);
        }

        if (_lock is { } held)
        {
            _lock = null;
            await held.DisposeAsync();
            LogReleased(logger, _coordinator.Value);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_lock is { } held)
        {
            await held.DisposeAsync();
        }

        _stopping.Dispose();
    }

    /// <summary>
    /// Takes the lock, waiting while someone else holds it. Null when cancelled, or (with
    /// <paramref name="stopIfTaken"/>) when another process holds it.
    /// </summary>
    private async Task<OwnershipLock?> AcquireAsync(CancellationToken cancellationToken, bool stopIfTaken)
    {
        var journal = options.Value.JournalConnectionString;
        string? reportedHolder = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                var (held, holder) = await OwnershipLock.TryAcquireAsync(journal, _coordinator, ApplicationName, cancellationToken);
                if (held is not null)
                {
                    return held;
                }

                if (holder is not null && stopIfTaken && holder.IsCoordinator)
                {
                    LogTakenOver(logger, _coordinator.Value, holder.ToString());
                    return null;
                }

                if (holder is not null && holder.ToString() != reportedHolder)
                {
                    reportedHolder = holder.ToString();
                    LogWaiting(logger, _coordinator.Value, reportedHolder);
                }
            }
            catch (NpgsqlException e) when (stopIfTaken)
            {
                // While running, a journal that is away is waited for; at start it fails the start.
                LogJournalAway(logger, e, _coordinator.Value, e.Message);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return null;
            }

            try
            {
                await Task.Delay(CheckInterval, time, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return null;
            }
        }

        return null;
    }

    private async Task WatchAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(CheckInterval, time, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            if (_lock is not { } held || await held.IsHeldAsync(cancellationToken))
            {
                continue;
            }

            LogLost(logger, _coordinator.Value);
            await held.DisposeAsync();
            _lock = await AcquireAsync(cancellationToken, stopIfTaken: true);
            if (_lock is not null)
            {
                LogAcquired(logger, _coordinator.Value);
            }
            else if (!cancellationToken.IsCancellationRequested)
            {
                lifetime.StopApplication();
                return;
            }
        }
    }

    [LoggerMessage(1300, LogLevel.Information, "Coordinator {Coordinator}: this process owns the coordinator id on the journal")]
    private static partial void LogAcquired(ILogger logger, string coordinator);

    [LoggerMessage(1301, LogLevel.Warning, "Coordinator {Coordinator}: the coordinator id is owned by {Holder}; waiting for it to stop before starting (two processes must never run one coordinator id)")]
    private static partial void LogWaiting(ILogger logger, string coordinator, string holder);

    [LoggerMessage(1302, LogLevel.Error, "Coordinator {Coordinator}: the connection that holds the coordinator id's ownership was lost; taking it again")]
    private static partial void LogLost(ILogger logger, string coordinator);

    [LoggerMessage(1303, LogLevel.Critical, "Coordinator {Coordinator}: while this process had lost its connection, {Holder} took the coordinator id: stopping, so that only one process runs it")]
    private static partial void LogTakenOver(ILogger logger, string coordinator, string holder);

    [LoggerMessage(1304, LogLevel.Warning, "Coordinator {Coordinator}: the journal cannot be reached to take the ownership back ({Error}); retrying")]
    private static partial void LogJournalAway(ILogger logger, Exception exception, string coordinator, string error);

    [LoggerMessage(1305, LogLevel.Information, "Coordinator {Coordinator}: released the coordinator id's ownership")]
    private static partial void LogReleased(ILogger logger, string coordinator);
}
