using Npgsql;

namespace TxCoord.Tests.Crash.Infrastructure;

/// <summary>
/// The PostgreSQL and RabbitMQ the crash tests kill and restart: a set of their own, started with
/// <c>scripts/services.sh start crash</c> (mode from <c>TXCOORD_CRASH_SERVICES</c>, default
/// <c>crash</c>), so restarting a server never disturbs the other test assemblies that
/// <c>dotnet test</c> runs at the same time. The coordinator journals live on the PostgreSQL of
/// <c>TXCOORD_TEST_PG</c> (started by <c>./run.sh test</c>), which nothing restarts, unless a test
/// puts them here on purpose.
/// </summary>
internal static class CrashServices
{
    public const string ModeVariable = "TXCOORD_CRASH_SERVICES";

    private static string? _mode;
    private static Dictionary<string, string> _env = [];

    public static string Mode => _mode ?? throw new InvalidOperationException("The crash services are not started.");

    /// <summary>The crash set's PostgreSQL (no Database=).</summary>
    public static string PostgreSql => _env["TXCOORD_PG"];

    /// <summary>The crash set's RabbitMQ.</summary>
    public static Uri RabbitMq => new(_env["TXCOORD_RABBITMQ"]);

    /// <summary>The crash set's RabbitMQ TLS listener (amqps://, a certificate for localhost).</summary>
    public static Uri RabbitMqTls => new(_env["TXCOORD_RABBITMQ_TLS"]);

    /// <summary>The PEM file of the CA that signed the crash set's server certificates.</summary>
    public static string TlsCertificateAuthority => _env["TXCOORD_TLS_CA"];

    /// <summary>The PostgreSQL nobody restarts: the one <c>./run.sh test</c> started (TXCOORD_TEST_PG).</summary>
    public static string StablePostgreSql =>
        Environment.GetEnvironmentVariable("TXCOORD_TEST_PG") is { Length: > 0 } value
            ? value
            : throw new InvalidOperationException("TXCOORD_TEST_PG is not set: run the crash tests with './run.sh test' (or export the env of 'scripts/services.sh start dev1').");

    public static async Task StartAsync()
    {
        _mode = Environment.GetEnvironmentVariable(ModeVariable) is { Length: > 0 } mode ? mode : "crash";
        var started = await RunScriptAsync(TimeSpan.FromMinutes(4), "start", _mode);
        if (started.ExitCode != 0)
        {
            Assert.Fail($"scripts/services.sh start {_mode} failed (exit {started.ExitCode}):{Environment.NewLine}{started.Output}");
        }

        var env = await RunScriptAsync(TimeSpan.FromMinutes(1), "env", _mode);
        _env = ServicesScript.ParseEnvironment(env.Output);
        if (!_env.ContainsKey("TXCOORD_PG") || !_env.ContainsKey("TXCOORD_RABBITMQ"))
        {
            Assert.Fail($"scripts/services.sh env {_mode} did not print TXCOORD_PG and TXCOORD_RABBITMQ:{Environment.NewLine}{env.Output}");
        }
    }

    public static async Task StopAsync()
    {
        if (_mode is not null)
        {
            await RunScriptAsync(TimeSpan.FromMinutes(2), "stop", _mode);
        }
    }

    /// <summary>
    /// Restarts the crash set's PostgreSQL: <c>immediate</c> is a crash (no shutdown checkpoint,
    /// WAL recovery at start). A checkpoint first keeps the replay short: the many test databases
    /// created since the last one (CREATE DATABASE logs its whole template) would otherwise take
    /// minutes to replay on two busy cores; the transactions in flight are torn all the same.
    /// </summary>
    public static async Task RestartPostgreSqlAsync(string how = "immediate")
    {
        await using (var connection = new NpgsqlConnection(ConnectionString(PostgreSql, "postgres")))
        {
            await connection.OpenAsync();
            await using var checkpoint = new NpgsqlCommand("CHECKPOINT", connection) { CommandTimeout = 120 };
            await checkpoint.ExecuteNonQueryAsync();
        }

        await RunOrFailAsync("pg-restart", how);
        NpgsqlConnection.ClearAllPools();
    }

    /// <summary>Restarts the crash set's RabbitMQ: <c>kill</c> is a crash (SIGKILL), <c>graceful</c> a clean stop.</summary>
    public static Task RestartRabbitMqAsync(string how = "kill") => RunOrFailAsync("rabbitmq-restart", how);

    /// <summary>
    /// Makes the crash set's PostgreSQL check <paramref name="role"/>'s password (scram) over TCP,
    /// where everyone else keeps trust authentication, and waits until the server applies it.
    /// </summary>
    public static async Task RequirePasswordAsync(string role)
    {
        var hba = Path.Combine(_env["TXCOORD_RUN_DIR"], "pg", "data", "pg_hba.conf");
        var lines = await File.ReadAllLinesAsync(hba);
        await File.WriteAllLinesAsync(hba, [$"host all {role} 127.0.0.1/32 scram-sha-256", .. lines]);
        await using (var connection = new NpgsqlConnection(ConnectionString(PostgreSql, "postgres")))
        {
            await connection.OpenAsync();
            await using var reload = new NpgsqlCommand("SELECT pg_reload_conf()", connection);
            await reload.ExecuteScalarAsync();
        }

        await Eventually.WaitForAsync(async () =>
        {
            try
            {
                await using var probe = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(ConnectionString(PostgreSql, "postgres")) { Username = role, Password = "not-the-password", Pooling = false }.ConnectionString);
                await probe.OpenAsync();
                return false;
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InvalidPassword)
            {
                return true;
            }
        }, checkedNow => checkedNow, TimeSpan.FromSeconds(30), $"the server to check {role}'s password");
    }

    /// <summary>A connection string to <paramref name="database"/> on <paramref name="server"/>.</summary>
    public static string ConnectionString(string server, string database) =>
        new NpgsqlConnectionStringBuilder(server) { Database = database, MaxPoolSize = 20, Timeout = 5, CommandTimeout = 30 }.ConnectionString;

    /// <summary>Creates (or re-creates) a database and returns its connection string.</summary>
    public static async Task<string> CreateDatabaseAsync(string server, string name)
    {
        await using var connection = new NpgsqlConnection(ConnectionString(server, "postgres"));
        await connection.OpenAsync();
        await using (var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", connection))
        {
            await drop.ExecuteNonQueryAsync();
        }

        await using (var create = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection))
        {
            await create.ExecuteNonQueryAsync();
        }

        return ConnectionString(server, name);
    }

    /// <summary>Runs <c>rabbitmqctl</c> against the crash set's node and returns its output; fails the test when it fails.</summary>
    public static async Task<string> RabbitMqCtlAsync(params string[] arguments)
    {
        var result = await RunScriptAsync(TimeSpan.FromMinutes(2), ["rabbitmqctl", .. arguments]);
        if (result.ExitCode != 0)
        {
            Assert.Fail($"scripts/services.sh rabbitmqctl {string.Join(' ', arguments)} (mode {Mode}) failed (exit {result.ExitCode}):{Environment.NewLine}{result.Output}");
        }

        return result.Output;
    }

    private static async Task RunOrFailAsync(string command, string argument)
    {
        var result = await RunScriptAsync(TimeSpan.FromMinutes(3), command, argument);
        if (result.ExitCode != 0)
        {
            Assert.Fail($"scripts/services.sh {command} {argument} (mode {Mode}) failed (exit {result.ExitCode}):{Environment.NewLine}{result.Output}");
        }
    }

    private static Task<(int ExitCode, string Output)> RunScriptAsync(TimeSpan timeout, params string[] arguments) =>
        ServicesScript.RunAsync(Mode, null, timeout, arguments);
}
