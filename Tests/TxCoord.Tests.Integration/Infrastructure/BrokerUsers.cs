using System.Diagnostics;

namespace TxCoord.Tests.Integration.Infrastructure;

/// <summary>
/// One RabbitMQ user per service (a coordinator, participants, an initiator) and an outsider,
/// "mallory", all with full permissions on the test vhost: what a shared vhost gives every service.
/// Created with <c>scripts/services.sh rabbitmqctl</c> on the node of the running test services
/// (TXCOORD_RUN_DIR, exported by <c>./run.sh test</c>), deleted on dispose. The password of each
/// user is its name: test users only.
/// </summary>
internal sealed class BrokerUsers : IAsyncDisposable
{
    private BrokerUsers(string suffix, int participants)
    {
        Coordinator = $"u-coord-{suffix}";
        Participants = [.. Enumerable.Range(1, participants).Select(i => $"u-p{i}-{suffix}")];
        Initiator = $"u-init-{suffix}";
        Mallory = $"mallory-{suffix}";
    }

    public string Coordinator { get; }

    /// <summary>The users of the cluster's participants, in the order of its participant ids.</summary>
    public IReadOnlyList<string> Participants { get; }

    public string Initiator { get; }

    public string Mallory { get; }

    private IEnumerable<string> All => [Coordinator, .. Participants, Initiator, Mallory];

    public static async Task<BrokerUsers> CreateAsync(int participants = 2)
    {
        var users = new BrokerUsers(Guid.NewGuid().ToString("N")[..8], participants);
        foreach (var user in users.All)
        {
            await RabbitMqCtlAsync("add_user", user, user);
            await RabbitMqCtlAsync("set_permissions", "-p", "/", user, ".*", ".*", ".*");
        }

        return users;
    }

    /// <summary>The test broker's URI with <paramref name="user"/>'s credentials.</summary>
    public static Uri UriFor(string user) => new UriBuilder(TestServers.RabbitMq) { UserName = user, Password = user }.Uri;

    public async ValueTask DisposeAsync()
    {
        foreach (var user in All)
        {
            await RabbitMqCtlAsync("delete_user", user);
        }
    }

    private static async Task RabbitMqCtlAsync(params string[] arguments)
    {
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("TXCOORD_RUN_DIR")))
        {
            Assert.Fail("TXCOORD_RUN_DIR is not set: the sender authentication tests create broker users on the node './run.sh test' starts. Run the suite with './run.sh test'.");
        }

        var script = Path.Combine(Crash.Infrastructure.Repository.Root, "scripts", "services.sh");
        var start = new ProcessStartInfo("bash", [script, "rabbitmqctl", .. arguments]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        await process.WaitForExitAsync(timeout.Token);
        if (process.ExitCode != 0)
        {
            Assert.Fail($"scripts/services.sh rabbitmqctl {string.Join(' ', arguments)} failed (exit {process.ExitCode}): {await output}{await error}");
        }
    }
}
