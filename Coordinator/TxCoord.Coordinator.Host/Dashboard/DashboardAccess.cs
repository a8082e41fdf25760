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
    public static AccessDecision Allow(string credential) => new(true, credential, StatusCodes.Status200OK, null);

    public static AccessDecision Unauthenticated(string message) => new(false, "none", StatusCodes.Status401Unauthorized, message);

    public static AccessDecision Forbidden(string credential, string message) => new(false, credential, StatusCodes.Status403Forbidden, message);
}

/// <summary>
/// API-key access to the dashboard. A key is sent as <c>Authorization: Bearer &lt;key&gt;</c> or
/// <c>X-Api-Key: &lt;key&gt;</c> and compared in constant time. Reading is open without a key
/// to clients on the loopback interface (unless <see cref="DashboardSettings.OpenOnLoopback"/>
/// is false, or the request carries proxy headers: a reverse proxy on the same host speaks for
/// remote users); otherwise it needs the read key or the admin key. Admin actions always need
/// the admin key, and are off when none is configured. 401: no key, or an unknown one. 403: a
/// key without the right, or admin actions off.
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
                return AccessDecision.Allow(LoopbackCredential);
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

        return AccessDecision.Unauthenticated("the API key is not valid for this coordinator");
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

    private static byte[] Hash(string key) => SHA256.HashData(Encoding.UTF8.GetBytes(key));
}
