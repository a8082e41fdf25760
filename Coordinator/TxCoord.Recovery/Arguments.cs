using System.Globalization;
using Microsoft.Extensions.Configuration;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Coordinator;
using TxCoord.Coordinator.Monitoring;
using TxCoord.Coordinator.Recovery;

namespace TxCoord.Recovery;

/// <summary>Bad usage or configuration: the message says what to fix (exit code 2).</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>The parsed command line.</summary>
internal sealed record Arguments
{
    public required string Command { get; init; }
    public IReadOnlyList<string> Positional { get; init; } = [];
    public bool Json { get; init; }
    public bool DryRun { get; init; }
    public bool YesIKnow { get; init; }

    /// <summary>force abort: record the abort even while a coordinator with this id runs (the transaction may be live there).</summary>
    public bool EvenIfLive { get; init; }
    public bool? Progress { get; init; }
    public string? Reason { get; init; }
    public string? Operator { get; init; }
    public string? ConfigFile { get; init; }
    public TimeSpan MinimumAge { get; init; } = TimeSpan.Zero;
    public int Parallelism { get; init; } = 8;
    public TimeSpan LockTimeout { get; init; } = TimeSpan.FromSeconds(60);
    public Dictionary<string, string?> Settings { get; init; } = [];

    private static readonly HashSet<string> Commands = ["scan", "resolve", "force", "verify", "help"];

    /// <exception cref="UsageException">Unknown command or option, or a bad value.</exception>
    public static Arguments Parse(IReadOnlyList<string> args)
    {
        if (args.Count == 0 || args[0] is "-h" or "--help")
        {
            return new Arguments { Command = "help" };
        }

        if (!Commands.Contains(args[0]))
        {
            throw new UsageException($"unknown command '{args[0]}': use scan, resolve, force or verify (txcoord-recover help).");
        }

        var positional = new List<string>();
        var settings = new Dictionary<string, string?>();
        var result = new Arguments { Command = args[0] };
        for (var i = 1; i < args.Count; i++)
        {
            var arg = args[i];
            string Value()
            {
                if (i + 1 >= args.Count || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                {
                    throw new UsageException($"{arg} needs a value.");
                }

                return args[++i];
            }

            switch (arg)
            {
                case "--json": result = result with { Json = true }; break;
                case "--dry-run": result = result with { DryRun = true }; break;
                case "--yes-i-know": result = result with { YesIKnow = true }; break;
                case "--even-if-live": result = result with { EvenIfLive = true }; break;
                case "--progress": result = result with { Progress = true }; break;
                case "--no-progress": result = result with { Progress = false }; break;
                case "--reason": result = result with { Reason = Value() }; break;
                case "--operator": result = result with { Operator = Value() }; break;
                case "--config": result = result with { ConfigFile = Value() }; break;
                case "--min-age": result = result with { MinimumAge = Duration(arg, Value()) }; break;
                case "--lock-timeout": result = result with { LockTimeout = Duration(arg, Value()) }; break;
                case "--parallel":
                    var text = Value();
                    if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var parallel) || parallel is < 1 or > 64)
                    {
                        throw new UsageException($"--parallel '{text}': a whole number from 1 to 64.");
                    }

                    result = result with { Parallelism = parallel };
                    break;
                case "--coordinator": settings["TxCoord:CoordinatorId"] = Value(); break;
                case "--journal": settings["ConnectionStrings:Journal"] = WithoutPassword("--journal", "ConnectionStrings__Journal", Value()); break;
                case "--participant":
                    var pair = Value();
                    var equals = pair.IndexOf('=', StringComparison.Ordinal);
                    if (equals <= 0)
                    {
                        throw new UsageException($"--participant '{pair}': expected <participant id>=<connection string>.");
                    }

                    var participantId = pair[..equals];
                    settings[$"{ParticipantDatabaseSettings.Section}:{participantId}:{ParticipantDatabaseSettings.ConnectionStringKey}"] = WithoutPassword(
                        $"--participant {participantId}",
                        $"{ParticipantDatabaseSettings.Section.Replace(":", "__", StringComparison.Ordinal)}__{participantId}__{ParticipantDatabaseSettings.ConnectionStringKey}",
                        pair[(equals + 1)..]);
                    break;
                default:
                    if (arg.StartsWith("--", StringComparison.Ordinal))
                    {
                        throw new UsageException($"unknown option '{arg}' (txcoord-recover help).");
                    }

                    positional.Add(arg);
                    break;
            }
        }

        var expected = result.Command == "force" ? 2 : 0;
        if (positional.Count != expected)
        {
            throw new UsageException(result.Command == "force"
                ? "usage: txcoord-recover force commit|abort <gid> --reason <text> --yes-i-know"
                : $"{result.Command} takes no arguments, only options: unexpected '{string.Join(' ', positional)}'.");
        }

        return result with { Positional = positional, Settings = settings };
    }

    /// <summary>
    /// A connection string given as an argument, refused when it carries a password: every user
    /// of the machine can read a process's arguments (<c>ps</c>, <c>/proc/PID/cmdline</c>) while
    /// it runs. The password is not repeated in the message.
    /// </summary>
    private static string WithoutPassword(string option, string environmentName, string connectionString)
    {
        NpgsqlConnectionStringBuilder parsed;
        try
        {
            parsed = new NpgsqlConnectionStringBuilder(connectionString);
        }
        catch (ArgumentException)
        {
            // Not a connection string: the settings' check says so, naming the setting.
            return connectionString;
        }

        if (string.IsNullOrEmpty(parsed.Password))
        {
            return connectionString;
        }

        throw new UsageException(
            $"{option}: the connection string carries a password, and every user of this machine can read a program's arguments (ps) while it runs. " +
            $"Leave Password out of the argument and give it in the environment (env {environmentName}='...;Password=...' txcoord-recover ...), " +
            "in a --config file readable only by you, or in a PostgreSQL password file (PGPASSFILE or ~/.pgpass, which Npgsql reads).");
    }

    /// <summary>Reads appsettings.json beside the tool, the --config file, the environment and the command line (later wins) and checks them.</summary>
    /// <exception cref="UsageException">A missing or invalid setting, naming its key.</exception>
    public RecoverySettings ReadSettings(bool needParticipants, bool needCoordinator)
    {
        var builder = new ConfigurationBuilder()
            .AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json"), optional: true);
        if (ConfigFile is not null)
        {
            if (!File.Exists(ConfigFile))
            {
                throw new UsageException($"--config {ConfigFile}: no such file.");
            }

            builder.AddJsonFile(Path.GetFullPath(ConfigFile), optional: false);
        }

        IConfiguration configuration;
        try
        {
            configuration = builder.AddEnvironmentVariables().AddInMemoryCollection(Settings).Build();
        }
        catch (InvalidDataException e)
        {
            throw new UsageException($"--config {ConfigFile}: not valid JSON: {e.Message}");
        }

        var errors = new List<string>();
        var coordinator = configuration["TxCoord:CoordinatorId"];
        if (needCoordinator && !BranchGid.IsValidName(coordinator))
        {
            errors.Add(string.IsNullOrEmpty(coordinator)
                ? "TxCoord:CoordinatorId is missing: give --coordinator <id> (the coordinator whose GIDs to look at)."
                : $"TxCoord:CoordinatorId '{coordinator}' is invalid: 1 to {BranchGid.MaxNameLength} characters of letters, digits, '_', '.' or '-'.");
        }

        var journal = configuration["ConnectionStrings:Journal"];
        if (CoordinatorOptionsValidator.CheckConnectionString(journal) is { } problem)
        {
            errors.Add($"ConnectionStrings:Journal {problem} (--journal).");
        }

        IReadOnlyList<ParticipantDatabase> participants = [];
        if (!ParticipantDatabaseSettings.TryRead(configuration, out var databases, out var participantError))
        {
            errors.Add(participantError);
        }
        else
        {
            participants = databases;
            if (needParticipants && participants.Count == 0)
            {
                errors.Add($"no participant database configured: give --participant <id>=<connection string> ({ParticipantDatabaseSettings.Section}:<id>:{ParticipantDatabaseSettings.ConnectionStringKey}).");
            }
        }

        if (errors.Count > 0)
        {
            throw new UsageException(string.Join(Environment.NewLine, errors));
        }

        return new RecoverySettings(new CoordinatorId(coordinator ?? "-"), journal!, participants);
    }

    /// <summary>90s, 5m, 2h, 1d or a TimeSpan such as 00:05:00.</summary>
    public static TimeSpan Duration(string option, string text)
    {
        if (text.Length > 1 && char.IsAsciiLetter(text[^1])
            && double.TryParse(text[..^1], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var amount) && amount >= 0)
        {
            switch (text[^1])
            {
                case 's': return TimeSpan.FromSeconds(amount);
                case 'm': return TimeSpan.FromMinutes(amount);
                case 'h': return TimeSpan.FromHours(amount);
                case 'd': return TimeSpan.FromDays(amount);
            }
        }

        if (TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out var value) && value >= TimeSpan.Zero)
        {
            return value;
        }

        throw new UsageException($"{option} '{text}' is not a duration: use e.g. 90s, 5m, 2h or 00:05:00.");
    }
}
