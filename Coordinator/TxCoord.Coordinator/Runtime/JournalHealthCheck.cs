using Microsoft.Extensions.Diagnostics.HealthChecks;
using TxCoord.Coordinator.Journal;

namespace TxCoord.Coordinator.Runtime;

/// <summary>Healthy when the journal database answers <c>SELECT 1</c>.</summary>
internal sealed class JournalHealthCheck(ITransactionJournal journal) : IHealthCheck
{
    public const string Name = "txcoord-journal";

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            await journal.PingAsync(cancellationToken);
            return HealthCheckResult.Healthy("journal reachable");
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            return new HealthCheckResult(context.Registration.FailureStatus, "journal unreachable: " + ex.Message, ex);
        }
    }
}
