using Npgsql;

namespace TxCoord.Bench;

/// <summary>
/// Where the benchmark's servers and files are: the environment that <c>./run.sh bench</c>
/// (scripts/services.sh) exports, and the repository the benchmark was built from.
/// </summary>
internal sealed record BenchEnvironment(string PostgreSql, Uri RabbitMq, string RunDirectory, string RepositoryRoot)
{
    public const string BankA = "bank_a";
    public const string BankB = "bank_b";
    public const string Journal = "txcoord_coordinator";

    /// <summary>Reads the environment; throws <see cref="BenchArgumentException"/> saying what to set.</summary>
    public static BenchEnvironment Read()
    {
        var pg = Require("TXCOORD_PG", "Host=127.0.0.1;Port=22432;Username=postgres");
        try
        {
            _ = new NpgsqlConnectionStringBuilder(pg);
        }
        catch (ArgumentException e)
        {
            throw new BenchArgumentException($"TXCOORD_PG is not a valid Npgsql connection string ({e.Message})");
        }

        var rabbitText = Require("TXCOORD_RABBITMQ", "amqp://guest:guest@127.0.0.1:22672/");
        if (!Uri.TryCreate(rabbitText, UriKind.Absolute, out var rabbit) || rabbit.Scheme is not ("amqp" or "amqps"))
        {
            throw new BenchArgumentException($"TXCOORD_RABBITMQ '{rabbitText}' is not an AMQP URI such as amqp://guest:guest@127.0.0.1:22672/");
        }

        var runDirectory = Require("TXCOORD_RUN_DIR", "/tmp/txcoord-bench");
        if (!Directory.Exists(runDirectory))
        {
            throw new BenchArgumentException($"TXCOORD_RUN_DIR '{runDirectory}' does not exist: start the services with ./run.sh bench (or scripts/services.sh start bench)");
        }

        return new BenchEnvironment(pg, rabbit, runDirectory, FindRepositoryRoot());
    }

    /// <summary>The connection string of one database on the benchmark's PostgreSQL, as a service is given it (Npgsql's defaults).</summary>
    public string Database(string name) => new NpgsqlConnectionStringBuilder(PostgreSql) { Database = name }.ConnectionString;

    /// <summary>The benchmark's own connections to one database: one per transfer in flight, never pruned mid-run.</summary>
    public string BenchDatabase(string name, bool enlist = false, int maxPoolSize = 200) =>
        new NpgsqlConnectionStringBuilder(PostgreSql)
        {
            Database = name,
            Enlist = enlist,
            MaxPoolSize = maxPoolSize,
            ConnectionIdleLifetime = 3600,
        }.ConnectionString;

    /// <summary>The data directory of the PostgreSQL server (for its postmaster pid), as services.sh lays it out.</summary>
    public string PostgreSqlDataDirectory => Path.Combine(RunDirectory, "pg", "data");

    /// <summary>The RabbitMQ node's mnesia base, by which services.sh finds the node's process.</summary>
    public string RabbitMqMnesiaBase => Path.Combine(RunDirectory, "rabbitmq", "mnesia");

    public string LogDirectory => Path.Combine(RunDirectory, "logs");

    /// <summary>The build output of a project of the solution (Release, as run.sh builds it).</summary>
    public string BuiltDll(string projectDirectory, string assembly) =>
        Path.Combine(RepositoryRoot, projectDirectory, "bin", "Release", "net10.0", assembly + ".dll");

    private static string Require(string variable, string example) =>
        Environment.GetEnvironmentVariable(variable) is { Length: > 0 } value
            ? value
            : throw new BenchArgumentException(
                $"{variable} is not set: run the benchmark with ./run.sh bench, or start the services with scripts/services.sh start bench " +
                $"and export what it prints (e.g. {variable}={example})");

    /// <summary>The directory holding TxCoord.sln, found upwards from the current directory or the program's own.</summary>
    private static string FindRepositoryRoot()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var directory = new DirectoryInfo(start); directory is not null; directory = directory.Parent)
            {
                if (File.Exists(Path.Combine(directory.FullName, "TxCoord.sln")))
                {
                    return directory.FullName;
                }
            }
        }

        throw new BenchArgumentException("cannot find the repository (TxCoord.sln) above the current directory: run the benchmark from the repository with ./run.sh bench");
    }
}
