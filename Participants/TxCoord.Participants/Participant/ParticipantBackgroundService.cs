using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TxCoord.Contracts;

namespace TxCoord.Participants.Participant;

/// <summary>
/// Starts every participant of this process (schema, server checks: a misconfigured database
/// stops the host at start with a message that says what to fix), resolves the prepared branches
/// left by an earlier run, then keeps rolling back expired branches and asking about prepared
/// ones whose decision is late.
/// </summary>
internal sealed class ParticipantBackgroundService(
    IEnumerable<ParticipantRuntime> participants, IServiceProvider services, TimeProvider time, ILogger<ParticipantBackgroundService> logger)
    : IHostedService, IAsyncDisposable
{
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Task> _loops = [];

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var participant in participants)
        {
            await participant.InitializeAsync().WaitAsync(cancellationToken);
            Log.ParticipantReady(logger, participant.Id.Value, TxCoordQueues.Participant(participant.Id));
            _loops.Add(Task.Run(() => RunAsync(participant, _stopping.Token), CancellationToken.None));
        }
    }

    private async Task RunAsync(ParticipantRuntime participant, CancellationToken cancellationToken)
    {
        // Every pass, the first after a restart included, asks only about branches prepared at least
        // DecisionTimeout ago. The age is PostgreSQL's (pg_prepared_xacts.prepared), so it survives
        // the restart: what an earlier run left prepared long ago is asked about at once, but a branch
        // prepared a moment ago (early prepare: its initiator's commit request may be on its way) is
        // not presumed aborted before its decision had time to come.
        var minimumAge = participant.Options.DecisionTimeout;
        while (!cancellationToken.IsCancellationRequested)
        {
            // Expiry and resolution each on their own: a failure of one never skips the other.
            // Expiry never waits on a running work handler (it only tries a branch's lock), so
            // prepared branches are resolved even while handlers wait on their rows.
            try
            {
                await participant.ExpireBranchesAsync(cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                Log.BackgroundPassFailed(logger, e, participant.Id.Value);
            }

            try
            {
                await participant.ResolvePreparedAsync(services.GetRequiredService<IClientFactory>(), minimumAge, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                Log.BackgroundPassFailed(logger, e, participant.Id.Value);
            }

            try
            {
                await Task.Delay(participant.Options.ResolveInterval, time, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        await Task.WhenAll(_loops).WaitAsync(cancellationToken);
    }

    public ValueTask DisposeAsync()
    {
        _stopping.Dispose();
        return ValueTask.CompletedTask;
    }
}
