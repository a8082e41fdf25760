using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Coordinator.Journal;
using TxCoord.Coordinator.Monitoring;
using TxCoord.Coordinator.Runtime;

namespace TxCoord.Coordinator.Host.Dashboard;

/// <summary>
/// Registers and maps the dashboard: the page (<c>/</c>), its JSON API (<c>/api/...</c>), the
/// admin actions (<c>/api/admin/...</c>) and <c>/metrics</c>. The page uses only the API.
/// </summary>
internal static class DashboardEndpoints
{
    public const int DefaultLiveLimit = 50;

    public const int MaxLiveLimit = 500;

    public const int DefaultAuditLimit = 50;

    private const string CredentialItem = "txcoord.credential";

    private static readonly string[] LiveKeys = ["view", "status", "protocol", "participant", "offset", "limit"];

    private static readonly string[] JournalKeys = ["view", "state", "protocol", "participant", "coordinator", "cursor", "limit"];

    private static readonly string[] AuditKeys = ["transaction", "limit"];

    public static void AddTxCoordDashboard(this WebApplicationBuilder builder, DashboardSettings settings)
    {
        var services = builder.Services;
        services.AddSingleton(settings);
        services.AddSingleton<CoordinatorMonitor>();
        services.AddSingleton(sp => new JournalQueries(sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<CoordinatorOptions>>().Value.JournalConnectionString));
        services.AddSingleton(sp => new AuditLog(sp.GetRequiredService<JournalQueries>().DataSource));
        services.AddSingleton(sp => new ParticipantDatabaseMonitor(
            settings.ParticipantDatabases,
            sp.GetRequiredService<CoordinatorRuntime>().Id,
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<ParticipantDatabaseMonitor>>()));
        services.AddSingleton<DashboardAccess>();
        services.AddSingleton(sp => new FailedKeyLimiter(settings, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<FailedKeyLimiter>>()));
        services.AddSingleton<DashboardQueries>();
        services.AddSingleton<AdminActions>();
        services.AddSingleton<PrometheusMetrics>();
        services.AddHostedService<DashboardStartup>();
    }

    public static void MapTxCoordDashboard(this WebApplication app)
    {
        app.MapGet("/", ServePage);
        app.MapGet("/dashboard", ServePage);
        app.MapGet("/assets/{name}", ServeAsset);

        var api = app.MapGroup("/api").AddEndpointFilter(RequireRight(DashboardRight.Read)).AddEndpointFilter(AnswerUnavailable);
        api.MapGet("/overview", (HttpContext context, DashboardQueries queries) => queries.OverviewAsync(context, context.RequestAborted));
        api.MapGet("/transactions", ListTransactionsAsync);
        api.MapGet("/transactions/{id}", GetTransactionAsync);
        api.MapGet("/participants", (HttpContext context, DashboardQueries queries) => queries.ParticipantsAsync(context.RequestAborted));
        api.MapGet("/audit", ListAuditAsync);

        var admin = app.MapGroup("/api/admin").AddEndpointFilter(RequireRight(DashboardRight.Admin)).AddEndpointFilter(AnswerUnavailable);
        admin.MapPost("/transactions/{id}/resolve", ResolveAsync);
        admin.MapPost("/transactions/{id}/retry", RetryAsync);

        app.MapGet("/metrics", async (HttpContext context, PrometheusMetrics metrics) =>
            Results.Text(await metrics.RenderAsync(context.RequestAborted), PrometheusMetrics.ContentType))
            .AddEndpointFilter(RequireRight(DashboardRight.Read));
    }

    // ---- handlers -------------------------------------------------------------------------

    private static async Task<IResult> ListTransactionsAsync(HttpContext context, DashboardQueries queries)
    {
        var query = context.Request.Query;
        var view = query["view"].ToString();
        if (view is "" or "live")
        {
            if (!TryReadLive(query, out var live, out var error))
            {
                return BadRequest(error);
            }

            return Results.Ok(await queries.LiveAsync(live, context.RequestAborted));
        }

        if (view == "journal")
        {
            if (!TryReadJournal(query, out var filter, out var error))
            {
                return BadRequest(error);
            }

            return Results.Ok(await queries.JournalAsync(filter, context.RequestAborted));
        }

        return BadRequest($"view '{view}' is unknown: use 'live' (transactions in flight and prepared branches) or 'journal' (history)");
    }

    private static async Task<IResult> GetTransactionAsync(string id, HttpContext context, DashboardQueries queries)
    {
        if (!TryParseId(id, out var transactionId, out var error))
        {
            return BadRequest(error);
        }

        var detail = await queries.DetailAsync(transactionId, context.RequestAborted);
        return detail is null
            ? Results.NotFound(new ErrorBody(
                $"transaction {transactionId.Value} is unknown here: not in memory, not in the journal, not prepared in any configured participant database (if it ever existed, it is aborted by presumption)"))
            : Results.Ok(detail);
    }

    private static async Task<IResult> ListAuditAsync(HttpContext context, DashboardQueries queries)
    {
        var query = context.Request.Query;
        if (UnknownKey(query, AuditKeys) is { } unknown)
        {
            return BadRequest(unknown);
        }

        TransactionId? transactionId = null;
        if (query["transaction"].ToString() is { Length: > 0 } text)
        {
            if (!TryParseId(text, out var parsed, out var idError))
            {
                return BadRequest(idError);
            }

            transactionId = parsed;
        }

        if (!TryReadInt(query, "limit", DefaultAuditLimit, 1, AuditLog.MaxList, out var limit, out var error))
        {
            return BadRequest(error);
        }

        return Results.Ok(await queries.AuditAsync(transactionId, limit, context.RequestAborted));
    }

    private static async Task<IResult> ResolveAsync(string id, HttpContext context, AdminActions actions)
    {
        if (!TryParseId(id, out var transactionId, out var error))
        {
            return BadRequest(error);
        }

        var (request, bodyError) = await ReadBodyAsync<ResolveRequestModel>(context);
        if (request is null)
        {
            return bodyError!;
        }

        if (AdminActions.ValidateResolve(transactionId, request) is { } problem)
        {
            return BadRequest(problem);
        }

        var result = await actions.ResolveAsync(transactionId, request, Caller(context, request.Operator!), context.RequestAborted);
        return Results.Json(result.Body, statusCode: result.StatusCode);
    }

    private static async Task<IResult> RetryAsync(string id, HttpContext context, AdminActions actions)
    {
        if (!TryParseId(id, out var transactionId, out var error))
        {
            return BadRequest(error);
        }

        var (request, bodyError) = await ReadBodyAsync<RetryRequestModel>(context);
        if (request is null)
        {
            return bodyError!;
        }

        if (AdminActions.Validate(request.Operator, request.Reason) is { } problem)
        {
            return BadRequest(problem);
        }

        var result = await actions.RetryAsync(transactionId, request, Caller(context, request.Operator!), context.RequestAborted);
        return Results.Json(result.Body, statusCode: result.StatusCode);
    }

    // ---- the page -------------------------------------------------------------------------

    private static IResult ServePage(HttpContext context) => ServeAssetCore(context, "index.html");

    private static IResult ServeAsset(string name, HttpContext context) => ServeAssetCore(context, name);

    private static IResult ServeAssetCore(HttpContext context, string name)
    {
        if (!DashboardAssets.TryGet(name, out var asset))
        {
            return Results.NotFound(new ErrorBody($"no asset '{name}'"));
        }

        var headers = context.Response.Headers;
        headers.CacheControl = "no-cache";
        headers.ETag = asset.ETag;
        headers.XContentTypeOptions = "nosniff";
        headers["Referrer-Policy"] = "no-referrer";
        if (asset.ContentType.StartsWith("text/html", StringComparison.Ordinal))
        {
            headers.ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
            headers.XFrameOptions = "DENY";
        }

        if (context.Request.Headers.IfNoneMatch.ToString() == asset.ETag)
        {
            return Results.StatusCode(StatusCodes.Status304NotModified);
        }

        return Results.Bytes(asset.Content, asset.ContentType);
    }

    // ---- access, errors -------------------------------------------------------------------

    private static Func<EndpointFilterInvocationContext, EndpointFilterDelegate, ValueTask<object?>> RequireRight(DashboardRight right) =>
        async (invocation, next) =>
        {
            var context = invocation.HttpContext;
            var limiter = context.RequestServices.GetRequiredService<FailedKeyLimiter>();
            if (limiter.LockedFor(context.Connection.RemoteIpAddress) is { } wait)
            {
                // Not logged per request: the lock-out was logged once when it began.
                var seconds = (long)Math.Ceiling(wait.TotalSeconds);
                context.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
                return Results.Json(
                    new ErrorBody($"too many requests with a wrong key from this address: every request from it is refused for {seconds} s more, the right key too"),
                    statusCode: StatusCodes.Status429TooManyRequests);
            }

            var access = context.RequestServices.GetRequiredService<DashboardAccess>();
            var decision = access.Check(context, right);
            if (!decision.Allowed)
            {
                if (decision.WrongKey)
                {
                    limiter.Failed(context.Connection.RemoteIpAddress);
                }

                var logger = context.RequestServices.GetRequiredService<ILogger<DashboardAccess>>();
                DashboardLog.AccessRefused(logger, context.Request.Method, context.Request.Path, context.Connection.RemoteIpAddress?.ToString(), decision.StatusCode, decision.Message ?? "");
                if (decision.StatusCode == StatusCodes.Status401Unauthorized)
                {
                    context.Response.Headers.WWWAuthenticate = "Bearer realm=\"txcoord\"";
                }

                return Results.Json(new ErrorBody(decision.Message ?? "refused"), statusCode: decision.StatusCode);
            }

            context.Items[CredentialItem] = decision.Credential;
            return await next(invocation);
        };

    /// <summary>A database that does not answer is a 503 with the reason, not a 500 with a stack trace.</summary>
    private static async ValueTask<object?> AnswerUnavailable(EndpointFilterInvocationContext invocation, EndpointFilterDelegate next)
    {
        try
        {
            return await next(invocation);
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException && !invocation.HttpContext.RequestAborted.IsCancellationRequested)
        {
            return Results.Json(new ErrorBody($"the journal database did not answer: {ex.Message}"), statusCode: StatusCodes.Status503ServiceUnavailable);
        }
    }

    private static AdminCaller Caller(HttpContext context, string actor) =>
        new(actor, context.Items[CredentialItem] as string ?? "unknown", context.Connection.RemoteIpAddress?.ToString());

    private static IResult BadRequest(string message) => Results.BadRequest(new ErrorBody(message));

    // ---- input ----------------------------------------------------------------------------

    /// <summary>At most this many bytes of request body are read.</summary>
    public const int MaxBodyBytes = 16 * 1024;

    private static readonly JsonSerializerOptions BodyOptions = new(JsonSerializerDefaults.Web)
    {
        UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
    };

    private static IResult TooLarge() =>
        Results.Json(new ErrorBody($"the request body is larger than {MaxBodyBytes} bytes"), statusCode: StatusCodes.Status413PayloadTooLarge);

    /// <summary>
    /// Reads the whole body into a buffer of at most <see cref="MaxBodyBytes"/> before parsing
    /// it: Content-Length alone does not bound a chunked body, which a parser reading the stream
    /// would take to its end. The server's own limit is lowered to the same size, so it stops
    /// reading (and draining) a larger body too.
    /// </summary>
    private static async Task<(T? Body, IResult? Error)> ReadBodyAsync<T>(HttpContext context)
        where T : class
    {
        if (context.Request.ContentLength is > MaxBodyBytes)
        {
            return (null, TooLarge());
        }

        if (!context.Request.HasJsonContentType())
        {
            return (null, BadRequest("send a JSON body with 'Content-Type: application/json'"));
        }

        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = MaxBodyBytes;
        }

        var buffer = new byte[MaxBodyBytes + 1];
        var length = 0;
        try
        {
            while (length < buffer.Length)
            {
                var read = await context.Request.Body.ReadAsync(buffer.AsMemory(length), context.RequestAborted);
                if (read == 0)
                {
                    break;
                }

                length += read;
            }
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return (null, TooLarge());
        }

        if (length > MaxBodyBytes)
        {
            return (null, TooLarge());
        }

        try
        {
            var body = JsonSerializer.Deserialize<T>(buffer.AsSpan(0, length), BodyOptions);
            return body is null ? (null, BadRequest("the request body is empty: send a JSON object")) : (body, null);
        }
        catch (JsonException ex)
        {
            return (null, BadRequest($"the request body is not valid JSON for this action: {ex.Message}"));
        }
    }

    internal static bool TryParseId(string? text, out TransactionId id, out string error)
    {
        if (TransactionId.TryParse(text, out id))
        {
            error = "";
            return true;
        }

        error = $"'{Truncate(text)}' is not a transaction id: use a UUID such as 0195f3c2-8a4b-7c1d-9e2f-3a4b5c6d7e8f (dashes optional)";
        return false;
    }

    internal static bool TryReadLive(IQueryCollection query, out LiveQuery live, out string error)
    {
        live = new LiveQuery(null, null, null, 0, DefaultLiveLimit);
        if (UnknownKey(query, LiveKeys) is { } unknown)
        {
            error = unknown;
            return false;
        }

        string? status = null;
        if (query["status"].ToString() is { Length: > 0 } statusText)
        {
            var known = KnownStatuses();
            if (!known.Contains(statusText))
            {
                error = $"status '{Truncate(statusText)}' is unknown: use one of {string.Join(", ", known)}";
                return false;
            }

            status = statusText;
        }

        if (!TryReadProtocol(query, out var protocol, out error)
            || !TryReadParticipant(query, "participant", out var participant, out error)
            || !TryReadInt(query, "offset", 0, 0, int.MaxValue, out var offset, out error)
            || !TryReadInt(query, "limit", DefaultLiveLimit, 1, MaxLiveLimit, out var limit, out error))
        {
            return false;
        }

        live = new LiveQuery(status, protocol, participant, offset, limit);
        return true;
    }

    internal static bool TryReadJournal(IQueryCollection query, out JournalFilter filter, out string error)
    {
        filter = new JournalFilter();
        if (UnknownKey(query, JournalKeys) is { } unknown)
        {
            error = unknown;
            return false;
        }

        JournalState? state = null;
        if (query["state"].ToString() is { Length: > 0 } stateText)
        {
            if (!JournalQueries.TryParseState(stateText, out var parsed))
            {
                error = $"state '{Truncate(stateText)}' is unknown: use one of {string.Join(", ", Enum.GetValues<JournalState>().Select(JournalQueries.StateText))}";
                return false;
            }

            state = parsed;
        }

        TransactionId? cursor = null;
        if (query["cursor"].ToString() is { Length: > 0 } cursorText)
        {
            if (!TransactionId.TryParse(cursorText, out var parsed))
            {
                error = $"cursor '{Truncate(cursorText)}' is not valid: pass the 'nextCursor' of the previous page";
                return false;
            }

            cursor = parsed;
        }

        if (!TryReadProtocol(query, out var protocol, out error)
            || !TryReadParticipant(query, "participant", out var participant, out error)
            || !TryReadParticipant(query, "coordinator", out var coordinator, out error)
            || !TryReadInt(query, "limit", JournalQueries.DefaultPageSize, 1, JournalQueries.MaxPageSize, out var limit, out error))
        {
            return false;
        }

        filter = new JournalFilter(state, protocol, participant, coordinator is { } c ? new CoordinatorId(c.Value) : null, cursor, limit);
        return true;
    }

    private static string? UnknownKey(IQueryCollection query, string[] allowed)
    {
        foreach (var key in query.Keys)
        {
            if (!allowed.Contains(key, StringComparer.Ordinal))
            {
                return $"unknown query parameter '{Truncate(key)}': this endpoint takes {string.Join(", ", allowed)}";
            }
        }

        foreach (var key in allowed)
        {
            if (query[key].Count > 1)
            {
                return $"query parameter '{key}' is given more than once";
            }
        }

        return null;
    }

    private static string[] KnownStatuses() =>
        [.. new[] { LiveStatus.Preparing, LiveStatus.InDoubt, LiveStatus.Committing, LiveStatus.Stuck }
            .Concat(Enum.GetValues<Engine.TransactionPhase>().Select(CoordinatorMonitor.PhaseLabel))
            .Distinct(StringComparer.Ordinal)];

    private static bool TryReadProtocol(IQueryCollection query, out CommitProtocol? protocol, out string error)
    {
        protocol = null;
        error = "";
        var text = query["protocol"].ToString();
        if (text.Length == 0)
        {
            return true;
        }

        foreach (var candidate in Enum.GetValues<CommitProtocol>())
        {
            if (string.Equals(text, CoordinatorMonitor.ProtocolLabel(candidate), StringComparison.OrdinalIgnoreCase)
                || string.Equals(text, candidate.ToString(), StringComparison.OrdinalIgnoreCase))
            {
                protocol = candidate;
                return true;
            }
        }

        error = $"protocol '{Truncate(text)}' is unknown: use one of {string.Join(", ", Enum.GetValues<CommitProtocol>().Select(CoordinatorMonitor.ProtocolLabel))}";
        return false;
    }

    private static bool TryReadParticipant(IQueryCollection query, string key, out ParticipantId? participant, out string error)
    {
        participant = null;
        error = "";
        var text = query[key].ToString();
        if (text.Length == 0)
        {
            return true;
        }

        if (!BranchGid.IsValidName(text))
        {
            error = $"{key} '{Truncate(text)}' is not a valid id: 1 to {BranchGid.MaxNameLength} characters of letters, digits, '_', '.' or '-'";
            return false;
        }

        participant = new ParticipantId(text);
        return true;
    }

    private static bool TryReadInt(IQueryCollection query, string key, int fallback, int min, int max, out int value, out string error)
    {
        value = fallback;
        error = "";
        var text = query[key].ToString();
        if (text.Length == 0)
        {
            return true;
        }

        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value) || value < min || value > max)
        {
            error = $"{key} '{Truncate(text)}' must be a whole number from {min} to {max}";
            return false;
        }

        return true;
    }

    private static string Truncate(string? text) => text is null ? "" : text.Length <= 60 ? text : text[..60] + "...";
}

/// <summary>The page's files, embedded in the assembly (no front-end build, nothing on disk to lose).</summary>
internal static class DashboardAssets
{
    private static readonly Dictionary<string, Asset> Assets = Load();

    public static bool TryGet(string name, out Asset asset) => Assets.TryGetValue(name, out asset!);

    private static Dictionary<string, Asset> Load()
    {
        var assembly = typeof(DashboardAssets).Assembly;
        var assets = new Dictionary<string, Asset>(StringComparer.Ordinal);
        const string prefix = "TxCoord.Dashboard.";
        foreach (var resource in assembly.GetManifestResourceNames().Where(n => n.StartsWith(prefix, StringComparison.Ordinal)))
        {
            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            var content = copy.ToArray();
            var name = resource[prefix.Length..];
            var type = Path.GetExtension(name) switch
            {
                ".html" => "text/html; charset=utf-8",
                ".js" => "text/javascript; charset=utf-8",
                ".css" => "text/css; charset=utf-8",
                ".svg" => "image/svg+xml",
                _ => "application/octet-stream",
            };
            assets[name] = new Asset(content, type, $"\"{Convert.ToHexString(SHA256.HashData(content))[..16]}\"");
        }

        return assets;
    }

    internal sealed record Asset(byte[] Content, string ContentType, string ETag);
}

/// <summary>Creates the audit table at start, after the journal schema (a failure stops the start, like the journal's).</summary>
internal sealed class DashboardStartup(AuditLog audit, DashboardSettings settings, ILogger<DashboardStartup> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            await audit.EnsureSchemaAsync(cancellationToken);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            DashboardLog.AuditSchemaFailed(logger, ex);
            throw;
        }

        DashboardLog.Ready(logger, settings.ToString());
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
