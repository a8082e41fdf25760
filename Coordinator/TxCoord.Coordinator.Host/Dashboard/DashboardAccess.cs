using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Primitives;

namespace TxCoord.Coordinator.Host.Dashboard;

/// <summary>What a caller may do.</summary>
internal enum DashboardRight
{
    Read,
    Admin,
}

/// <summary>The answer to "may this request do that?": allowed with the name of the credential, or a status and a message.</summary>
internal sealed record AccessDecision(bool Allowed, string Credential, int StatusCode, string? Message)
{
    /// <summary>A key was sent and matched none: a failure the <see cref="FailedKeyLimiter"/> counts.</summary>
    public bool WrongKey { get; init; }

    public static AccessDecision Allow(string credential) => new(true, credential, StatusCodes.Status200OK, null);

    public static AccessDecision Unauthenticated(string message) => new(false, "none", StatusCodes.Status401Unauthorized, message);

    public static AccessDecision Forbidden(string credential, string message) => new(false, credential, StatusCodes.Status403Forbidden, message);
}

/// <summary>
/// API-key access to the dashboard. A key is sent as <c>Authorization: Bearer &lt;key&gt;</c> or
/// <c>X-Api-Key: &lt;key&gt;</c> and compared in constant time. Reading is open without a key
/// to clients on the loopback interface (unless <see cref="DashboardSettings.OpenOnLoopback"/>
/// is false, or the request carries proxy headers: a reverse proxy on the same host speaks for
/// remote users) whose Host header names this machine (localhost, a loopback address or one of
/// <see cref="DashboardSettings.AllowedHosts"/>: a web page of another site that re-points its
/// own name at 127.0.0.1, DNS rebinding, reaches the dashboard from the operator's browser with
/// its own name in the Host header); otherwise it needs the read key or the admin key. Admin
/// actions always need the admin key, and are off when none is configured. 401: no key, or an
/// unknown one. 403: a key without the right, or admin actions off.
/// </summary>
internal sealed class DashboardAccess
{
    public const string AdminCredential = "admin-key";

    public const string ReadCredential = "read-key";

    public const string LoopbackCredential = "loopback";

    public const string ApiKeyHeader = "X-Api-Key";

    private readonly DashboardSettings _settings;
    private readonly byte[]? _adminHash;
    private readonly byte[]? _readHash;

    public DashboardAccess(DashboardSettings settings)
    {
        _settings = settings;
        _adminHash = settings.AdminApiKey is { } admin ? Hash(admin) : null;
        _readHash = settings.ReadApiKey is { } read ? Hash(read) : null;
    }

    public static string AdminOffMessage =>
        $"admin actions are off on this coordinator: no {DashboardSettings.AdminApiKeyKey} is configured";

    /// <summary>The right a request's credentials give (for the page to show what it may do); null for none.</summary>
    public DashboardRight? RightsOf(HttpContext context)
    {
        if (Check(context, DashboardRight.Admin).Allowed)
        {
            return DashboardRight.Admin;
        }

        return Check(context, DashboardRight.Read).Allowed ? DashboardRight.Read : null;
    }

    public AccessDecision Check(HttpContext context, DashboardRight right)
    {
        var key = PresentedKey(context.Request);
        if (right == DashboardRight.Admin && !_settings.AdminEnabled)
        {
            return AccessDecision.Forbidden(key is null ? "none" : "key", AdminOffMessage);
        }

        if (key is null)
        {
            if (right == DashboardRight.Read && _settings.OpenOnLoopback && IsLoopbackClient(context))
            {
                return NamesThisMachine(context.Request.Host)
                    ? AccessDecision.Allow(LoopbackCredential)
                    : AccessDecision.Unauthenticated(
                        $"reading without a key from this machine needs a Host header naming it (localhost, 127.0.0.1, [::1] or one of {DashboardSettings.AllowedHostsKey}), "
                        + $"and this request's Host header is '{Printable(context.Request.Host.Value)}': a page of another site reaching the dashboard through DNS rebinding looks like this. "
                        + $"Send 'Authorization: Bearer <key>', or add the name to {DashboardSettings.AllowedHostsKey}");
            }

            return AccessDecision.Unauthenticated(right == DashboardRight.Admin
                ? "admin actions need the admin key: send 'Authorization: Bearer <key>'"
                : $"this coordinator's dashboard needs a key from this address: send 'Authorization: Bearer <key>' ({DashboardSettings.ReadApiKeyKey} or {DashboardSettings.AdminApiKeyKey})");
        }

        var hash = Hash(key);
        if (_adminHash is not null && CryptographicOperations.FixedTimeEquals(hash, _adminHash))
        {
            return AccessDecision.Allow(AdminCredential);
        }

        if (_readHash is not null && CryptographicOperations.FixedTimeEquals(hash, _readHash))
        {
            return right == DashboardRight.Read
                ? AccessDecision.Allow(ReadCredential)
                : AccessDecision.Forbidden(ReadCredential, "this key may only read: admin actions need the admin key");
        }

        return AccessDecision.Unauthenticated("the API key is not valid for this coordinator") with { WrongKey = true };
    }

    private static string? PresentedKey(HttpRequest request)
    {
        if (request.Headers.Authorization is { Count: > 0 } authorization
            && authorization.ToString() is var value
            && value.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            var token = value["Bearer ".Length..].Trim();
            return token.Length > 0 ? token : null;
        }

        return request.Headers.TryGetValue(ApiKeyHeader, out var apiKey) && !StringValues.IsNullOrEmpty(apiKey) && apiKey.ToString().Trim() is { Length: > 0 } trimmed
            ? trimmed
            : null;
    }

    private static bool IsLoopbackClient(HttpContext context)
    {
        var headers = context.Request.Headers;
        if (headers.ContainsKey("X-Forwarded-For") || headers.ContainsKey("Forwarded") || headers.ContainsKey("X-Real-IP"))
        {
            return false;
        }

        var address = context.Connection.RemoteIpAddress;
        if (address is null)
        {
            return false;
        }

        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        return IPAddress.IsLoopback(address);
    }

    /// <summary>
    /// Whether the Host header names this machine: "localhost", a loopback address written as
    /// one (dotted quad or [::1]; no name an attacker could point elsewhere), or a configured name.
    /// </summary>
    private bool NamesThisMachine(HostString host)
    {
        if (!host.HasValue)
        {
            return false;
        }

        var name = host.Host;
        if (string.Equals(name, "localhost", StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        if (name.StartsWith('[') && name.EndsWith(']'))
        {
            if (IPAddress.TryParse(name[1..^1], out var v6) && IPAddress.IsLoopback(v6))
            {
                return true;
            }
        }
        else if (IPAddress.TryParse(name, out var v4) && v4.ToString() == name && IPAddress.IsLoopback(v4))
        {
            // ToString() == name: only the dotted quad, not the forms "127.1" or "2130706433" that parse too.
            return true;
        }

        return _settings.AllowedHosts.Contains(name, StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>What a client sent, shortened and without control characters, for a message that is also logged.</summary>
    private static string Printable(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return "";
        }

        var shortened = text.Length <= 60 ? text : text[..60] + "...";
        return string.Create(shortened.Length, shortened, (span, source) =>
        {
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = char.IsControl(source[i]) ? '?' : source[i];
            }
        });
    }

    private static byte[] Hash(string key) => SHA256.HashData(Encoding.UTF8.GetBytes(key));
}
