using System.Diagnostics;
using TxCoord.Contracts;

namespace TxCoord.Bench.Variants;

/// <summary>
/// B3/B3p/B4 with sender authentication on (docs/security.md), to measure its cost: with
/// <c>TXCOORD_BENCH_SENDER_AUTH=BrokerUser</c> each service of the bus cluster connects as its own
/// RabbitMQ user (created on the bench node with <c>scripts/services.sh rabbitmqctl</c>, deleted at
/// the end) and runs with <c>Security:SenderAuthentication BrokerUser</c>, the map of ids to users
/// and the banks' vote proof keys. Unset: off, as deployed by default.
/// </summary>
internal sealed class BenchSenderAuthentication
{
    public const string Variable = "TXCOORD_BENCH_SENDER_AUTH";

    private static readonly string[] Services = ["coordinator", TxCoordTransfer.DebitParticipant, TxCoordTransfer.CreditParticipant, "initiator"];

    private readonly BenchEnvironment _environment;

    private BenchSenderAuthentication(BenchEnvironment environment) => _environment = environment;

    /// <summary>Null unless the variable asks for BrokerUser; throws on any other value.</summary>
    public static BenchSenderAuthentication? FromEnvironment(BenchEnvironment environment) =>
        Environment.GetEnvironmentVariable(Variable) switch
        {
            null or "" or "Off" => null,
            "BrokerUser" => new BenchSenderAuthentication(environment),
            var other => throw new InvalidOperationException($"{Variable} '{other}' is invalid: use BrokerUser or Off"),
        };

    public static string UserOf(string service) => $"bench-{service}";

    public static string ProofKeyOf(string participant) => $"bench-vote-proof-key-{participant}-0123456789";

    /// <summary>The bench broker's URI with <paramref name="service"/>'s credentials (its password is its name: bench users only).</summary>
    public Uri UriFor(string service) => new UriBuilder(_environment.RabbitMq) { UserName = UserOf(service), Password = UserOf(service) }.Uri;

    public async Task CreateUsersAsync()
    {
        foreach (var service in Services)
        {
            await RabbitMqCtlAsync("add_user", UserOf(service), UserOf(service));
            await RabbitMqCtlAsync("set_permissions", "-p", "/", UserOf(service), ".*", ".*", ".*");
        }
    }

    public async Task DeleteUsersAsync()
    {
        foreach (var service in Services)
        {
            await RabbitMqCtlAsync("delete_user", UserOf(service));
        }
    }

    /// <summary>The services' settings, as environment variables of the coordinator host and the bank participant sample.</summary>
    public Dictionary<string, string> Settings(string? ownParticipant)
    {
        var settings = new Dictionary<string, string>
        {
            ["TxCoord__Security__SenderAuthentication"] = "BrokerUser",
            [$"TxCoord__Security__Coordinators__{BusCluster.CoordinatorId}"] = UserOf("coordinator"),
        };
        foreach (var participant in new[] { TxCoordTransfer.DebitParticipant, TxCoordTransfer.CreditParticipant })
        {
            settings[$"TxCoord__Security__Participants__{participant}"] = UserOf(participant);
            if (ownParticipant is null)
            {
                settings[$"TxCoord__Security__VoteProofKeys__{participant}"] = ProofKeyOf(participant);
            }
        }

        if (ownParticipant is not null)
        {
            settings["TxCoord__Security__VoteProofKey"] = ProofKeyOf(ownParticipant);
        }

        return settings;
    }

    public static void ConfigureInitiator(TxCoordSecurityOptions security)
    {
        security.SenderAuthentication = SenderAuthentication.BrokerUser;
        security.Coordinators[BusCluster.CoordinatorId] = UserOf("coordinator");
        security.Participants[TxCoordTransfer.DebitParticipant] = UserOf(TxCoordTransfer.DebitParticipant);
        security.Participants[TxCoordTransfer.CreditParticipant] = UserOf(TxCoordTransfer.CreditParticipant);
    }

    private async Task RabbitMqCtlAsync(params string[] arguments)
    {
        var start = new ProcessStartInfo("bash", [Path.Combine(_environment.RepositoryRoot, "scripts", "services.sh"), "rabbitmqctl", .. arguments])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["TXCOORD_RUN_DIR"] = _environment.RunDirectory;
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not run scripts/services.sh");
        var output = await process.StandardOutput.ReadToEndAsync();
        var error = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"scripts/services.sh rabbitmqctl {string.Join(' ', arguments)} failed (exit {process.ExitCode}): {output}{error}");
        }
    }
}
