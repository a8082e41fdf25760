using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using TxCoord.Coordinator.Monitoring;

namespace TxCoord.Coordinator.Host.Dashboard;

/// <summary>
/// The dashboard's configuration, checked at start. Keys (all optional):
/// <list type="bullet">
/// <item><c>TxCoord:Dashboard:AdminApiKey</c>: the key of the admin actions. No default: without it they are off.
/// Keys must be random: at least 24 characters, 10 different ones, an estimated 80 bits.</item>
/// <item><c>TxCoord:Dashboard:ReadApiKey</c>: a key that may read but not act.</item>
/// <item><c>TxCoord:Dashboard:OpenOnLoopback</c>: read without a key from 127.0.0.1/::1 (default true).</item>
/// <item><c>TxCoord:Dashboard:AllowedHosts</c>: host names besides localhost, 127.0.0.1 and [::1] that a keyless
/// loopback read may name in its Host header (comma-separated, no ports).</item>
/// <item><c>TxCoord:Dashboard:FailedKeyLimit</c>, <c>TxCoord:Dashboard:FailedKeyWindow</c>: after this many wrong keys
/// from one address within the window (default 10 in 00:01:00), it is refused with 429 for one window.</item>
/// <item><c>TxCoord:Dashboard:InDoubtAfter</c>, <c>TxCoord:Dashboard:StuckAfter</c>: attention thresholds (TimeSpan).</item>
/// <item><c>TxCoord:Participants:&lt;id&gt;:ConnectionString</c>: participant databases, for the prepared-transaction panel.</item>
/// </list>
/// Not a record: its text form must never show the keys.
/// </summary>
internal sealed class DashboardSettings
{
    public const string Section = "TxCoord:Dashboard";

    public const string AdminApiKeyKey = Section + ":AdminApiKey";

    public const string ReadApiKeyKey = Section + ":ReadApiKey";

    public const string OpenOnLoopbackKey = Section + ":OpenOnLoopback";

    public const string AllowedHostsKey = Section + ":AllowedHosts";

    public const string FailedKeyLimitKey = Section + ":FailedKeyLimit";

    public const string FailedKeyWindowKey = Section + ":FailedKeyWindow";

    public const int DefaultFailedKeyLimit = 10;

    public static readonly TimeSpan DefaultFailedKeyWindow = TimeSpan.FromMinutes(1);

    /// <summary>Longer lock-outs would let one guesser shut the operators out for that long.</summary>
    public static readonly TimeSpan MaxFailedKeyWindow = TimeSpan.FromHours(1);

    public const string InDoubtAfterKey = Section + ":InDoubtAfter";

    public const string StuckAfterKey = Section + ":StuckAfter";

    /// <summary>Keys shorter than this are refused: they could be guessed.</summary>
    public const int MinimumKeyLength = 24;

    /// <summary>Keys with fewer different characters are refused: "aaaa..." or "abab..." are long but guessable.</summary>
    public const int MinimumDistinctKeyCharacters = 10;

    /// <summary>
    /// Keys whose estimated entropy (the key's length times the Shannon entropy of its own
    /// character frequencies) is below this are refused. The estimate is a floor against keys
    /// that a person typed, not a measure of randomness: a key from <see cref="KeyAdvice"/> has
    /// about 200 bits by it, a random 24-character base64 key never less than about 85.
    /// </summary>
    public const double MinimumKeyEntropyBits = 80;

    public const string KeyAdvice = "generate one with 'openssl rand -base64 32'";

    public DashboardSettings(
        string? adminApiKey,
        string? readApiKey,
        bool openOnLoopback,
        AttentionThresholds thresholds,
        IReadOnlyList<ParticipantDatabase> participantDatabases)
    {
        AdminApiKey = adminApiKey;
        ReadApiKey = readApiKey;
        OpenOnLoopback = openOnLoopback;
        Thresholds = thresholds;
        ParticipantDatabases = participantDatabases;
    }

    public string? AdminApiKey { get; }

    public string? ReadApiKey { get; }

    public bool OpenOnLoopback { get; }

    public AttentionThresholds Thresholds { get; }

    public IReadOnlyList<ParticipantDatabase> ParticipantDatabases { get; }

    /// <summary>Host names (no port, IPv6 in brackets) a keyless loopback read may name besides the loopback ones.</summary>
    public IReadOnlyList<string> AllowedHosts { get; init; } = [];

    /// <summary>Wrong keys from one address within <see cref="FailedKeyWindow"/> that lock it out.</summary>
    public int FailedKeyLimit { get; init; } = DefaultFailedKeyLimit;

    /// <summary>The window failures are counted in, and the length of a lock-out.</summary>
    public TimeSpan FailedKeyWindow { get; init; } = DefaultFailedKeyWindow;

    public bool AdminEnabled => AdminApiKey is not null;

    public static bool TryRead(
        IConfiguration configuration,
        [NotNullWhen(true)] out DashboardSettings? settings,
        [NotNullWhen(false)] out string? error)
    {
        settings = null;
        var errors = new List<string>();
        var admin = ReadKey(configuration, AdminApiKeyKey, errors);
        var read = ReadKey(configuration, ReadApiKeyKey, errors);
        if (admin is not null && read is not null && string.Equals(admin, read, StringComparison.Ordinal))
        {
            errors.Add($"{ReadApiKeyKey} must differ from {AdminApiKeyKey}: a read-only key that is also the admin key gives admin rights");
        }

        var openOnLoopback = true;
        if (configuration[OpenOnLoopbackKey] is { Length: > 0 } open && !bool.TryParse(open, out openOnLoopback))
        {
            errors.Add($"{OpenOnLoopbackKey} '{open}' is not true or false");
        }

        var allowedHosts = ReadAllowedHosts(configuration, errors);
        var failedKeyLimit = DefaultFailedKeyLimit;
        if (configuration[FailedKeyLimitKey] is { Length: > 0 } limitText
            && (!int.TryParse(limitText, NumberStyles.None, CultureInfo.InvariantCulture, out failedKeyLimit) || failedKeyLimit is < 1 or > 1000))
        {
            errors.Add($"{FailedKeyLimitKey} '{limitText}' must be a whole number from 1 to 1000");
        }

        var failedKeyWindow = ReadTimeSpan(configuration, FailedKeyWindowKey, DefaultFailedKeyWindow, errors);
        if (failedKeyWindow > MaxFailedKeyWindow)
        {
            errors.Add($"{FailedKeyWindowKey} '{configuration[FailedKeyWindowKey]}' is longer than {MaxFailedKeyWindow:c}: a wrong key would lock the operators out for that long");
        }

        var inDoubtAfter = ReadTimeSpan(configuration, InDoubtAfterKey, AttentionThresholds.DefaultInDoubtAfter, errors);
        var stuckAfter = ReadTimeSpan(configuration, StuckAfterKey, AttentionThresholds.DefaultStuckAfter, errors);

        if (!ParticipantDatabaseSettings.TryRead(configuration, out var databases, out var databaseError))
        {
            errors.Add(databaseError);
        }

        if (errors.Count > 0 || databases is null)
        {
            error = string.Join("; ", errors);
            return false;
        }

        settings = new DashboardSettings(
            admin,
            read,
            openOnLoopback,
            AttentionThresholds.Default with { InDoubtAfter = inDoubtAfter, StuckAfter = stuckAfter },
            databases)
        {
            AllowedHosts = allowedHosts,
            FailedKeyLimit = failedKeyLimit,
            FailedKeyWindow = failedKeyWindow,
        };
        error = null;
        return true;
    }

    public override string ToString() =>
        $"admin actions {(AdminEnabled ? "on" : "off")}, read key {(ReadApiKey is null ? "not set" : "set")}, open on loopback {OpenOnLoopback}{(AllowedHosts.Count > 0 ? $" (also for hosts {string.Join(", ", AllowedHosts)})" : "")}, {FailedKeyLimit} wrong keys per {FailedKeyWindow:c} lock an address out, {ParticipantDatabases.Count} participant database(s)";

    private static string? ReadKey(IConfiguration configuration, string key, List<string> errors)
    {
        var value = configuration[key];
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }

        // The messages never quote the key: the error goes to the console and the logs.
        if (value.Length < MinimumKeyLength || value.Any(char.IsWhiteSpace))
        {
            errors.Add($"{key} must be at least {MinimumKeyLength} characters without spaces ({KeyAdvice})");
            return null;
        }

        var distinct = value.Distinct().Count();
        if (distinct < MinimumDistinctKeyCharacters)
        {
            errors.Add($"{key} must have at least {MinimumDistinctKeyCharacters} different characters (it has {distinct}): it could be guessed ({KeyAdvice})");
            return null;
        }

        var bits = EstimatedEntropyBits(value);
        if (bits < MinimumKeyEntropyBits)
        {
            errors.Add($"{key} has an estimated entropy of {bits:F0} bits, fewer than {MinimumKeyEntropyBits:F0}: some characters repeat too often ({KeyAdvice})");
            return null;
        }

        return value;
    }

    /// <summary>Length times the Shannon entropy of the key's character frequencies, in bits.</summary>
    internal static double EstimatedEntropyBits(string key)
    {
        var perCharacter = 0.0;
        foreach (var group in key.GroupBy(c => c))
        {
            var p = (double)group.Count() / key.Length;
            perCharacter -= p * Math.Log2(p);
        }

        return perCharacter * key.Length;
    }

    private static string[] ReadAllowedHosts(IConfiguration configuration, List<string> errors)
    {
        var text = configuration[AllowedHostsKey];
        if (string.IsNullOrWhiteSpace(text))
        {
            return [];
        }

        var hosts = text.Split([',', ';', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var host in hosts)
        {
            // A wildcard would switch the check off, and a port is not part of what it compares.
            if (host.Contains('*', StringComparison.Ordinal) || Uri.CheckHostName(host) == UriHostNameType.Unknown)
            {
                errors.Add($"{AllowedHostsKey} entry '{(host.Length <= 60 ? host : host[..60] + "...")}' is not a host name: list names or addresses without port or wildcard, separated by commas (e.g. 'dash.internal,10.0.0.5'); to read without a key from anywhere, configure a {ReadApiKeyKey} instead");
            }
        }

        return hosts;
    }

    private static TimeSpan ReadTimeSpan(IConfiguration configuration, string key, TimeSpan fallback, List<string> errors)
    {
        var text = configuration[key];
        if (string.IsNullOrWhiteSpace(text))
        {
            return fallback;
        }

        if (TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out var value) && value > TimeSpan.Zero)
        {
            return value;
        }

        errors.Add($"{key} '{text}' is not a positive TimeSpan such as 00:00:30");
        return fallback;
    }
}
