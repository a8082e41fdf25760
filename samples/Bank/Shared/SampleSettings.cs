using Microsoft.Extensions.Configuration;
using Npgsql;
using Serilog;
using Serilog.Events;
using TxCoord.Contracts;

namespace TxCoord.Samples.Bank;

// Shared by the sample's executables (linked into each, not a public API).

/// <summary>A setting is missing or invalid. The message names it and says what to fix.</summary>
internal sealed class SettingsException(string message) : Exception(message);

/// <summary>Reads and checks the samples' settings (environment variables, command line, appsettings).</summary>
internal static class SampleSettings
{
    /// <summary>Exit code for missing or invalid configuration or arguments.</summary>
    public const int ConfigurationErrorExitCode = 2;

    public static string ConnectionString(IConfiguration configuration, string name, string what)
    {
        var key = $"ConnectionStrings:{name}";
        var value = configuration[key];
        if (string.IsNullOrWhiteSpace(value))
        {
            throw new SettingsException(
                $"{key} is missing: set it (environment variable {EnvironmentName(key)}) to the Npgsql connection string of {what}, " +
                "e.g. Host=127.0.0.1;Port=20432;Username=postgres;Database=bank_a");
        }

        try
        {
            _ = new NpgsqlConnectionStringBuilder(value);
        }
        catch (ArgumentException e)
        {
            throw new SettingsException($"{key} is not a valid Npgsql connection string ({e.Message}): fix {EnvironmentName(key)}");
        }

        return value;
    }

    /// <summary>An AMQP URI with the credentials in it, e.g. amqp://guest:guest@127.0.0.1:20672/ (MassTransit reads them from the URI).</summary>
    public static Uri RabbitMq(IConfiguration configuration)
    {
        const string key = "ConnectionStrings:RabbitMq";
        var value = configuration[key];
        if (string.IsNullOrWhiteSpace(value))
        {
            throw new SettingsException(
                $"{key} is missing: set it (environment variable {EnvironmentName(key)}) to the broker's AMQP URI, e.g. amqp://guest:guest@127.0.0.1:20672/");
        }

        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri)
            || uri.Scheme is not ("amqp" or "amqps" or "rabbitmq" or "rabbitmqs")
            || string.IsNullOrEmpty(uri.Host)
            || uri.AbsolutePath.Split('/', StringSplitOptions.RemoveEmptyEntries).Length > 1)
        {
            throw new SettingsException(
                $"{key} is not an AMQP URI: fix {EnvironmentName(key)}; expected amqp://user:password@host:port/[virtual-host]");
        }

        return uri;
    }

    /// <summary>A coordinator or participant id: 1 to 40 characters of letters, digits, '_', '.', '-'.</summary>
    public static string Name(IConfiguration configuration, string key, string what, string example)
    {
        var value = configuration[key];
        if (string.IsNullOrWhiteSpace(value))
        {
            throw new SettingsException($"{key} is missing: set it (environment variable {EnvironmentName(key)}) to {what}, e.g. {example}");
        }

        if (!BranchGid.IsValidName(value))
        {
            throw new SettingsException(
                $"{key} '{value}' is invalid: {what} must be 1 to {BranchGid.MaxNameLength} characters of letters, digits, '_', '.' or '-'");
        }

        return value;
    }

    /// <summary>
    /// Applies the participant SDK's optional settings: <c>TxCoord:Participant:BranchTimeout</c>,
    /// <c>DecisionTimeout</c>, <c>ResolveInterval</c>, <c>OutcomeQueryTimeout</c>, <c>CoordinatorRetryMaxInterval</c> and <c>TerminationTimeout</c> (positive
    /// TimeSpans such as 00:00:05), and <c>TxCoord:CoordinatorId</c> or a comma-separated
    /// <c>TxCoord:Coordinators</c>, the coordinators whose prepared branches this participant
    /// finishes (none given: every coordinator). Unset settings keep the SDK's defaults.
    /// </summary>
    public static void ParticipantOptions(IConfiguration configuration, Participants.TxCoordParticipantOptions options)
    {
        options.BranchTimeout = TimeSpanSetting(configuration, "TxCoord:Participant:BranchTimeout", options.BranchTimeout);
        options.DecisionTimeout = TimeSpanSetting(configuration, "TxCoord:Participant:DecisionTimeout", options.DecisionTimeout);
        options.ResolveInterval = TimeSpanSetting(configuration, "TxCoord:Participant:ResolveInterval", options.ResolveInterval);
        options.OutcomeQueryTimeout = TimeSpanSetting(configuration, "TxCoord:Participant:OutcomeQueryTimeout", options.OutcomeQueryTimeout);
        options.CoordinatorRetryMaxInterval = TimeSpanSetting(configuration, "TxCoord:Participant:CoordinatorRetryMaxInterval", options.CoordinatorRetryMaxInterval);
        options.TerminationTimeout = TimeSpanSetting(configuration, "TxCoord:Participant:TerminationTimeout", options.TerminationTimeout);
        Security(configuration, options.Security);
        var coordinators = configuration["TxCoord:Coordinators"] is { Length: > 0 } list ? list : configuration["TxCoord:CoordinatorId"];
        foreach (var coordinator in (coordinators ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!BranchGid.IsValidName(coordinator))
            {
                throw new SettingsException($"TxCoord:Coordinators names an invalid coordinator id '{coordinator}': use 1 to {BranchGid.MaxNameLength} characters of letters, digits, '_', '.' or '-'");
            }

            options.Coordinators.Add(coordinator);
        }
    }

    /// <summary>
    /// Sender authentication (docs/security.md) from <c>TxCoord:Security</c>: <c>SenderAuthentication</c>
    /// (Off or BrokerUser), <c>Coordinators:&lt;id&gt;</c> and <c>Participants:&lt;id&gt;</c> (broker
    /// users), <c>VoteProofKey</c> and <c>VoteProofKeys:&lt;id&gt;</c>. Unset: off.
    /// </summary>
    public static void Security(IConfiguration configuration, TxCoordSecurityOptions security)
    {
        const string section = "TxCoord:Security";
        var mode = configuration[$"{section}:SenderAuthentication"];
        if (!string.IsNullOrWhiteSpace(mode))
        {
            security.SenderAuthentication = Enum.TryParse<SenderAuthentication>(mode, ignoreCase: true, out var parsed) && Enum.IsDefined(parsed) && !int.TryParse(mode, out _)
                ? parsed
                : throw new SettingsException($"{section}:SenderAuthentication '{mode}' is invalid: use Off or BrokerUser (fix {EnvironmentName($"{section}:SenderAuthentication")})");
        }

        foreach (var (name, map) in new[] { ("Coordinators", security.Coordinators), ("Participants", security.Participants), ("VoteProofKeys", security.VoteProofKeys) })
        {
            foreach (var entry in configuration.GetSection($"{section}:{name}").GetChildren())
            {
                map[entry.Key] = entry.Value ?? "";
            }
        }

        if (configuration[$"{section}:VoteProofKey"] is { Length: > 0 } key)
        {
            security.VoteProofKey = key;
        }
    }

    private static TimeSpan TimeSpanSetting(IConfiguration configuration, string key, TimeSpan fallback)
    {
        var text = configuration[key];
        if (string.IsNullOrWhiteSpace(text))
        {
            return fallback;
        }

        if (TimeSpan.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var value) && value > TimeSpan.Zero)
        {
            return value;
        }

        throw new SettingsException($"{key} '{text}' is not a positive TimeSpan such as 00:00:05: fix {EnvironmentName(key)}");
    }

    /// <summary>The database name of a connection string, for messages.</summary>
    public static string DatabaseName(string connectionString, string fallback) =>
        new NpgsqlConnectionStringBuilder(connectionString).Database is { Length: > 0 } database ? database : fallback;

    private static string EnvironmentName(string key) => key.Replace(":", "__", StringComparison.Ordinal);
}

/// <summary>The samples' Serilog set-up: console, time, level and message; MassTransit only from Warning.</summary>
internal static class SampleLogging
{
    public const string Template = "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {Message:lj}{NewLine}{Exception}";

    public static LoggerConfiguration Configure(LoggerConfiguration configuration, LogEventLevel minimum, bool toStandardError = false) =>
        configuration
            .MinimumLevel.Is(minimum)
            .MinimumLevel.Override("MassTransit", LogEventLevel.Warning)
            .MinimumLevel.Override("Microsoft", LogEventLevel.Warning)
            .MinimumLevel.Override("Microsoft.Hosting.Lifetime", minimum)
            .Enrich.FromLogContext()
            .Enrich.With<TxCoord.Logging.EscapeControlCharactersEnricher>()
            .WriteTo.Console(
                outputTemplate: Template,
                formatProvider: System.Globalization.CultureInfo.InvariantCulture,
                standardErrorFromLevel: toStandardError ? LogEventLevel.Verbose : null);
}
