using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using TxCoord.Contracts;

namespace TxCoord.Coordinator.Host;

/// <summary>
/// The service's configuration, read and checked before anything starts. Keys:
/// <c>ConnectionStrings:Journal</c> (Npgsql), <c>ConnectionStrings:RabbitMq</c>
/// (<c>amqp://user:password@host:port/vhost</c>), <c>TxCoord:CoordinatorId</c>, and optional
/// <c>TxCoord:VoteTimeout</c>, <c>TxCoord:DefaultTransactionTimeout</c>,
/// <c>TxCoord:RedriveInitialInterval</c>, <c>TxCoord:RedriveMaxInterval</c>,
/// <c>TxCoord:TickInterval</c>, <c>TxCoord:BatchWindow</c> (TimeSpan strings such as
/// <c>00:00:10</c>; the batch window may be <c>00:00:00</c>: no batching), the caps
/// <c>TxCoord:MaxParticipantsPerTransaction</c>, <c>TxCoord:MaxWorksPerParticipant</c>,
/// <c>TxCoord:MaxReasonLength</c> (whole numbers), and sender authentication under
/// <c>TxCoord:Security</c> (<c>SenderAuthentication</c> Off or BrokerUser,
/// <c>Coordinators:&lt;id&gt;</c> and <c>Participants:&lt;id&gt;</c> broker users,
/// <c>VoteProofKeys:&lt;participant&gt;</c>; see docs/security.md).
/// </summary>
internal sealed record CoordinatorHostSettings(CoordinatorOptions Coordinator, RabbitMqEndpoint RabbitMq)
{
    public const string JournalKey = "ConnectionStrings:Journal";
    public const string RabbitMqKey = "ConnectionStrings:RabbitMq";
    public const string Section = "TxCoord";

    /// <summary>Reads and checks the configuration; on failure <paramref name="error"/> is one line naming the setting to fix.</summary>
    public static bool TryRead(
        IConfiguration configuration,
        [NotNullWhen(true)] out CoordinatorHostSettings? settings,
        [NotNullWhen(false)] out string? error)
    {
        settings = null;
        var errors = new List<string>();
        var options = new CoordinatorOptions
        {
            CoordinatorId = configuration[$"{Section}:{nameof(CoordinatorOptions.CoordinatorId)}"] ?? "",
            JournalConnectionString = configuration[JournalKey] ?? "",
        };

        if (!BranchGid.IsValidName(options.CoordinatorId))
        {
            errors.Add(string.IsNullOrEmpty(options.CoordinatorId)
                ? $"set {Section}:{nameof(CoordinatorOptions.CoordinatorId)} (1 to {BranchGid.MaxNameLength} characters of letters, digits, '_', '.' or '-')"
                : $"{Section}:{nameof(CoordinatorOptions.CoordinatorId)} '{options.CoordinatorId}' is invalid: use 1 to {BranchGid.MaxNameLength} characters of letters, digits, '_', '.' or '-'");
        }

        if (CoordinatorOptionsValidator.CheckConnectionString(options.JournalConnectionString) is { } journalProblem)
        {
            errors.Add($"{JournalKey} {journalProblem}");
        }

        if (!RabbitMqEndpoint.TryParse(configuration[RabbitMqKey], out var rabbitMq, out var rabbitProblem))
        {
            errors.Add($"{RabbitMqKey} {rabbitProblem}");
        }

        options.VoteTimeout = ReadTimeSpan(configuration, nameof(CoordinatorOptions.VoteTimeout), options.VoteTimeout, errors);
        options.DefaultTransactionTimeout = ReadTimeSpan(configuration, nameof(CoordinatorOptions.DefaultTransactionTimeout), options.DefaultTransactionTimeout, errors);
        options.RedriveInitialInterval = ReadTimeSpan(configuration, nameof(CoordinatorOptions.RedriveInitialInterval), options.RedriveInitialInterval, errors);
        options.RedriveMaxInterval = ReadTimeSpan(configuration, nameof(CoordinatorOptions.RedriveMaxInterval), options.RedriveMaxInterval, errors);
        options.TickInterval = ReadTimeSpan(configuration, nameof(CoordinatorOptions.TickInterval), options.TickInterval, errors);
        options.BatchWindow = ReadTimeSpan(configuration, nameof(CoordinatorOptions.BatchWindow), options.BatchWindow, errors, allowZero: true);
        ReadSecurity(configuration.GetSection($"{Section}:Security"), options.Security, errors);
        if (options.Security.SenderAuthentication == SenderAuthentication.BrokerUser && rabbitMq is not null
            && options.Security.Coordinators.TryGetValue(options.CoordinatorId, out var ownUser) && ownUser != rabbitMq.Username)
        {
            errors.Add($"{Section}:Security:Coordinators:{options.CoordinatorId} is '{ownUser}' but {RabbitMqKey} connects as '{rabbitMq.Username}': RabbitMQ refuses a user_id that is not the connection's user");
        }
        options.MaxParticipantsPerTransaction = ReadInt(configuration, nameof(CoordinatorOptions.MaxParticipantsPerTransaction), options.MaxParticipantsPerTransaction, errors);
        options.MaxWorksPerParticipant = ReadInt(configuration, nameof(CoordinatorOptions.MaxWorksPerParticipant), options.MaxWorksPerParticipant, errors);
        options.MaxReasonLength = ReadInt(configuration, nameof(CoordinatorOptions.MaxReasonLength), options.MaxReasonLength, errors);

        if (errors.Count == 0 && CoordinatorOptionsValidator.Check(options) is { Count: > 0 } remaining)
        {
            errors.AddRange(remaining.Select(e => $"{Section}:{e}"));
        }

        if (errors.Count > 0 || rabbitMq is null)
        {
            error = string.Join("; ", errors);
            return false;
        }

        settings = new CoordinatorHostSettings(options, rabbitMq);
        error = null;
        return true;
    }

    /// <summary>Binds <c>TxCoord:Security</c>; a bad value adds an error naming its key.</summary>
    public static void ReadSecurity(IConfigurationSection section, TxCoordSecurityOptions security, List<string> errors)
    {
        var mode = section[nameof(TxCoordSecurityOptions.SenderAuthentication)];
        if (!string.IsNullOrWhiteSpace(mode))
        {
            if (Enum.TryParse<SenderAuthentication>(mode, ignoreCase: true, out var parsed) && Enum.IsDefined(parsed) && !int.TryParse(mode, out _))
            {
                security.SenderAuthentication = parsed;
            }
            else
            {
                errors.Add($"{section.Path}:{nameof(TxCoordSecurityOptions.SenderAuthentication)} '{mode}' is invalid: use Off or BrokerUser");
            }
        }

        foreach (var (name, map) in new[] { ("Coordinators", security.Coordinators), ("Participants", security.Participants), ("VoteProofKeys", security.VoteProofKeys) })
        {
            foreach (var entry in section.GetSection(name).GetChildren())
            {
                map[entry.Key] = entry.Value ?? "";
            }
        }

        if (section[nameof(TxCoordSecurityOptions.VoteProofKey)] is { Length: > 0 } key)
        {
            security.VoteProofKey = key;
        }
    }

    private static int ReadInt(IConfiguration configuration, string name, int fallback, List<string> errors)
    {
        var key = $"{Section}:{name}";
        var text = configuration[key];
        if (string.IsNullOrWhiteSpace(text))
        {
            return fallback;
        }

        if (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value))
        {
            return value;
        }

        errors.Add($"{key} '{UntrustedText.Bound(text, 100)}' is not a whole number");
        return fallback;
    }

    private static TimeSpan ReadTimeSpan(IConfiguration configuration, string name, TimeSpan fallback, List<string> errors, bool allowZero = false)
    {
        var key = $"{Section}:{name}";
        var text = configuration[key];
        if (string.IsNullOrWhiteSpace(text))
        {
            return fallback;
        }

        if (TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out var value) && (value > TimeSpan.Zero || (allowZero && value == TimeSpan.Zero)))
        {
            return value;
        }

        errors.Add(allowZero
            ? $"{key} '{text}' is not a TimeSpan of zero or more such as 00:00:00.010"
            : $"{key} '{text}' is not a positive TimeSpan such as 00:00:10");
        return fallback;
    }
}

/// <summary>A RabbitMQ broker, from an <c>amqp://user:password@host:port/vhost</c> URI.</summary>
internal sealed record RabbitMqEndpoint(string Host, ushort Port, string VirtualHost, string Username, string Password, bool UseTls)
{
    public const ushort DefaultPort = 5672;
    public const ushort DefaultTlsPort = 5671;

    /// <summary>
    /// Parses an AMQP URI. The user and password default to guest/guest, the port to 5672
    /// (5671 for amqps) and the virtual host to "/" (an empty path; "%2F" also means "/").
    /// </summary>
    public static bool TryParse(string? text, [NotNullWhen(true)] out RabbitMqEndpoint? endpoint, [NotNullWhen(false)] out string? problem)
    {
        endpoint = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            problem = "is required: an AMQP URI such as amqp://guest:guest@127.0.0.1:5672/";
            return false;
        }

        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme is not ("amqp" or "amqps") || string.IsNullOrEmpty(uri.Host))
        {
            problem = "must be an AMQP URI such as amqp://guest:guest@127.0.0.1:5672/";
            return false;
        }

        var tls = uri.Scheme == "amqps";
        var port = uri.Port is > 0 and <= ushort.MaxValue ? (ushort)uri.Port : tls ? DefaultTlsPort : DefaultPort;
        var path = uri.AbsolutePath.TrimStart('/');
        var virtualHost = path.Length == 0 ? "/" : Uri.UnescapeDataString(path);

        var username = "guest";
        var password = "guest";
        if (uri.UserInfo.Length > 0)
        {
            var separator = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
            username = Uri.UnescapeDataString(separator < 0 ? uri.UserInfo : uri.UserInfo[..separator]);
            password = separator < 0 ? "" : Uri.UnescapeDataString(uri.UserInfo[(separator + 1)..]);
        }

        endpoint = new RabbitMqEndpoint(uri.Host, port, virtualHost, username, password, tls);
        problem = null;
        return true;
    }

    /// <summary>For logs: never shows the password.</summary>
    public override string ToString() => $"{(UseTls ? "amqps" : "amqp")}://{Username}@{Host}:{Port}/{Uri.EscapeDataString(VirtualHost)}";
}
