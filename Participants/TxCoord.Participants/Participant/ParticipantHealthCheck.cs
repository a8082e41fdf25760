using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace TxCoord.Participants.Participant;

/// <summary>
/// A participant's health: Degraded while some of its prepared branches keep failing to resolve
/// (event 2711), or are blocked (the
/// coordinator does not answer and the peers cannot finish them: in 2PC none of them knows the
/// outcome, in 3PC fewer than a majority answer). Blocked branches hold their locks until the
/// coordinator or enough peers return, so an operator should look.
/// </summary>
internal sealed class ParticipantHealthCheck(ParticipantRuntime participant) : IHealthCheck
{
    /// <summary>The health check's name for a participant: <c>txcoord-participant-&lt;id&gt;</c>.</summary>
    public static string NameOf(string participantId) => $"txcoord-participant-{participantId}";

    /// <summary>Registers the check of the participant <paramref name="participantId"/> (tags "txcoord", "participant").</summary>
    public static void Register(IServiceCollection services, string participantId) =>
        services.AddHealthChecks().Add(new HealthCheckRegistration(
            NameOf(participantId),
            sp => new ParticipantHealthCheck(sp.GetServices<ParticipantRuntime>().Single(p => p.Id.Value == participantId)),
            HealthStatus.Degraded,
            ["txcoord", "participant"]));

    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var blocked = participant.BlockedBranches;
        var failing = participant.FailingBranches;
        var data = new Dictionary<string, object>
        {
            ["blockedBranches"] = blocked,
            ["failingBranches"] = failing,
            ["workingBranches"] = participant.WorkingBranches,
            ["terminatingBranches"] = participant.TerminatingBranches,
        };
        if (blocked == 0 && failing == 0)
        {
            return Task.FromResult(HealthCheckResult.Healthy($"participant {participant.Id}: no blocked branch", data));
        }

        var problems = new List<string>();
        if (blocked > 0)
        {
            problems.Add($"{blocked} prepared branch(es) blocked: the coordinator does not answer and the peers cannot finish them; they stay prepared (holding their locks) until it or enough peers return");
        }

        if (failing > 0)
        {
            problems.Add($"{failing} prepared branch(es) failing to resolve (a coordinator fault or a database error, see event 2711); each is retried after its back-off");
        }

        return Task.FromResult(new HealthCheckResult(
            context.Registration.FailureStatus, $"participant {participant.Id}: {string.Join("; ", problems)}", data: data));
    }
}
