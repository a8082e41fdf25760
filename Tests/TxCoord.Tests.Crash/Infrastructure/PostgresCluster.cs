using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace TxCoord.Tests.Crash.Infrastructure;

/// <summary>
/// A PostgreSQL server of a test's own (initdb into a fresh directory under /tmp, a free loopback
/// port, trust authentication), for settings the shared servers cannot have, such as room for
/// 20,000 prepared transactions. Runs as the postgres user when the tests run as root. Stopped
/// (immediate) and deleted on dispose.
/// </summary>
internal sealed class PostgresCluster : IAsyncDisposable
{
    private readonly string _directory;
    private readonly string _bin;

    private PostgresCluster(string directory, string bin, int port)
    {
        _directory = directory;
        _bin = bin;
        Port = port;
    }

    public int Port { get; }

    /// <summary>The server's connection string, without Database=.</summary>
    public string ConnectionString => $"Host=127.0.0.1;Port={Port};Username=postgres";

    public static async Task<PostgresCluster> StartAsync(IReadOnlyDictionary<string, string> settings)
    {
        var bin = Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin"))
            .Where(d => File.Exists(Path.Combine(d, "initdb"))).OrderBy(d => d, StringComparer.Ordinal).LastOrDefault()
            ?? throw new InvalidOperationException("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin.");
        var directory = Path.Combine(Path.GetTempPath(), $"txcoord-pgtest-{Guid.NewGuid():N}");
        Directory.CreateDirectory(directory);
        var cluster = new PostgresCluster(directory, bin, FreePort());
        await RunAsync("chmod", ["755", directory]);
        if (Environment.UserName == "root")
        {
            await RunAsync("chown", ["postgres:", directory]);
        }

        await cluster.RunPgAsync("initdb", ["-D", cluster.Data, "--auth=trust", "-U", "postgres", "--locale=C", "--encoding=UTF8", "-N"]);
        var lines = new List<string>
        {
            "listen_addresses = '127.0.0.1'",
            $"port = {cluster.Port}",
            $"unix_socket_directories = '{directory}'",
            "logging_collector = off",
        };
        lines.AddRange(settings.Select(s => $"{s.Key} = {s.Value}"));
        await File.AppendAllLinesAsync(Path.Combine(cluster.Data, "postgresql.conf"), lines);
        await cluster.RunPgAsync("pg_ctl", ["-D", cluster.Data, "-l", Path.Combine(directory, "postgresql.log"), "-w", "-t", "120", "start"]);
        return cluster;
    }

    private string Data => Path.Combine(_directory, "data");

    public async Task<string> CreateDatabaseAsync(string name)
    {
        await using var connection = new NpgsqlConnection(CrashServices.ConnectionString(ConnectionString, "postgres"));
        await connection.OpenAsync();
        await using var create = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection);
        await create.ExecuteNonQueryAsync();
        return CrashServices.ConnectionString(ConnectionString, name);
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        try
        {
            await RunPgAsync("pg_ctl", ["-D", Data, "-m", "immediate", "-w", "-t", "60", "stop"]);
        }
        finally
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    private Task RunPgAsync(string program, string[] arguments) =>
        Environment.UserName == "root"
            ? RunAsync("runuser", ["-u", "postgres", "--", Path.Combine(_bin, program), .. arguments])
            : RunAsync(Path.Combine(_bin, program), arguments);

    private static async Task RunAsync(string program, string[] arguments)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = "/" };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{program} did not start");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} failed ({process.ExitCode}): {await output}{await error}");
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
