namespace TxCoord.Tests.Crash.Infrastructure;

/// <summary>
/// A PostgreSQL + RabbitMQ set of one fixture's own, started with <c>scripts/services.sh start
/// MODE</c> with extra environment variables that shape the servers (for example
/// <c>TXCOORD_RABBITMQ_CONSUMER_TIMEOUT_MS</c>), for tests that need servers configured unlike
/// everyone else's. A <see cref="BankSystem"/> uses it through <see cref="BankSystemOptions.Services"/>:
/// its journal and both banks live on this set's PostgreSQL and its processes talk over this
/// set's RabbitMQ.
/// </summary>
internal sealed class ServiceSet
{
    private readonly IReadOnlyDictionary<string, string> _startEnvironment;
    private Dictionary<string, string> _env = [];
    private bool _started;

    public ServiceSet(string mode, IReadOnlyDictionary<string, string> startEnvironment)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(mode);
        Mode = mode;
        _startEnvironment = startEnvironment;
    }

    public string Mode { get; }

    /// <summary>This set's PostgreSQL (no Database=).</summary>
    public string PostgreSql => Value("TXCOORD_PG");

    /// <summary>This set's RabbitMQ.</summary>
    public Uri RabbitMq => new(Value("TXCOORD_RABBITMQ"));

    /// <summary>This set's run directory (logs of the servers are under it).</summary>
    public string RunDirectory => Value("TXCOORD_RUN_DIR");

    public async Task StartAsync()
    {
        var started = await RunScriptAsync(TimeSpan.FromMinutes(4), "start", Mode);
        if (started.ExitCode != 0)
        {
            Assert.Fail($"scripts/services.sh start {Mode} failed (exit {started.ExitCode}):{Environment.NewLine}{started.Output}");
        }

        _started = true;
        var env = await RunScriptAsync(TimeSpan.FromMinutes(1), "env", Mode);
        _env = ServicesScript.ParseEnvironment(env.Output);
        if (!_env.ContainsKey("TXCOORD_PG") || !_env.ContainsKey("TXCOORD_RABBITMQ") || !_env.ContainsKey("TXCOORD_RUN_DIR"))
        {
            Assert.Fail($"scripts/services.sh env {Mode} did not print TXCOORD_PG, TXCOORD_RABBITMQ and TXCOORD_RUN_DIR:{Environment.NewLine}{env.Output}");
        }
    }

    public async Task StopAsync()
    {
        if (_started)
        {
            await RunScriptAsync(TimeSpan.FromMinutes(2), "stop", Mode);
            _started = false;
        }
    }

    /// <summary>Runs <c>rabbitmqctl</c> against this set's node and returns its output; fails the test when it fails.</summary>
    public async Task<string> RabbitMqCtlAsync(params string[] arguments)
    {
        var result = await RunScriptAsync(TimeSpan.FromMinutes(2), ["rabbitmqctl", .. arguments]);
        if (result.ExitCode != 0)
        {
            Assert.Fail($"scripts/services.sh rabbitmqctl {string.Join(' ', arguments)} (mode {Mode}) failed (exit {result.ExitCode}):{Environment.NewLine}{result.Output}");
        }

        return result.Output;
    }

    private string Value(string name) =>
        _env.TryGetValue(name, out var value) ? value : throw new InvalidOperationException($"The '{Mode}' services are not started.");

    private Task<(int ExitCode, string Output)> RunScriptAsync(TimeSpan timeout, params string[] arguments) =>
        ServicesScript.RunAsync(Mode, _startEnvironment, timeout, arguments);
}
