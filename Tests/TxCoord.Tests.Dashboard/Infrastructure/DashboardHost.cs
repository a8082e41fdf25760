using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using TxCoord.Coordinator.Host;

namespace TxCoord.Tests.Dashboard.Infrastructure;

/// <summary>
/// The real coordinator service, built by <see cref="CoordinatorHostSetup.TryCreate"/> exactly as
/// the executable builds it, in this process, on Kestrel at 127.0.0.1 on a free port, over the
/// real PostgreSQL (a fresh journal database) and RabbitMQ. Short timings so paths finish quickly.
/// </summary>
internal sealed class DashboardHost : IAsyncDisposable
{
    public const string AdminKey = "test-admin-key-0123456789abcdef";

    public const string ReadKey = "test-read-key-0123456789abcdef";

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private readonly WebApplication _app;
    private readonly HttpClient _anonymous;

    private DashboardHost(WebApplication app, string coordinatorId, string journal, Uri baseAddress)
    {
        _app = app;
        CoordinatorId = coordinatorId;
        JournalConnectionString = journal;
        BaseAddress = baseAddress;
        _anonymous = Client(null);
    }

    public string CoordinatorId { get; }

    public string JournalConnectionString { get; }

    public Uri BaseAddress { get; }

    /// <summary>An HTTP client without credentials (from loopback, so it may read).</summary>
    public HttpClient Anonymous => _anonymous;

    public IServiceProvider Services => _app.Services;

    /// <summary>
    /// Starts a coordinator service. <paramref name="configure"/> may change or remove settings
    /// (a null value removes the key). <paramref name="journal"/> reuses a journal database.
    /// </summary>
    public static async Task<DashboardHost> StartAsync(Action<Dictionary<string, string?>>? configure = null, string? journal = null)
    {
        var suffix = Guid.NewGuid().ToString("N")[..10];
        var coordinatorId = $"dash-{suffix}";
        journal ??= await TestServers.CreateDatabaseAsync($"dash_{suffix}_journal");
        var settings = new Dictionary<string, string?>
        {
            ["urls"] = "http://127.0.0.1:0",
            ["ConnectionStrings:Journal"] = journal,
            ["ConnectionStrings:RabbitMq"] = TestServers.RabbitMq,
            ["TxCoord:CoordinatorId"] = coordinatorId,
            ["TxCoord:VoteTimeout"] = "00:10:00",
            ["TxCoord:DefaultTransactionTimeout"] = "00:10:00",
            ["TxCoord:RedriveInitialInterval"] = "00:00:00.200",
            ["TxCoord:RedriveMaxInterval"] = "00:00:01",
            ["TxCoord:Dashboard:AdminApiKey"] = AdminKey,
            ["TxCoord:Dashboard:ReadApiKey"] = ReadKey,
            ["TxCoord:Dashboard:InDoubtAfter"] = "00:00:01",
            ["TxCoord:Dashboard:StuckAfter"] = "00:00:02",
            ["Serilog:MinimumLevel:Default"] = "Warning",
            ["Serilog:MinimumLevel:Override:MassTransit"] = "Error",
            ["Serilog:MinimumLevel:Override:Microsoft.AspNetCore"] = "Warning",
            ["Serilog:MinimumLevel:Override:Microsoft.Hosting.Lifetime"] = "Warning",
        };
        configure?.Invoke(settings);
        foreach (var key in settings.Where(s => s.Value is null).Select(s => s.Key).ToList())
        {
            // In-memory configuration cannot remove a key: an empty value reads as "not set".
            settings[key] = "";
        }

        if (!CoordinatorHostSetup.TryCreate([], settings, out var app, out var error))
        {
            throw new InvalidOperationException($"The coordinator service did not accept its test configuration: {error}");
        }

        await app.StartAsync();
        var host = new DashboardHost(app, coordinatorId, journal, new Uri(app.Urls.First()));
        await Eventually.WaitForAsync(
            async () => (await host.Anonymous.GetAsync("/health/ready")).StatusCode,
            status => status == HttpStatusCode.OK,
            TimeSpan.FromSeconds(60),
            "the coordinator's journal and bus to be ready");
        return host;
    }

    public T Service<T>()
        where T : notnull => _app.Services.GetRequiredService<T>();

    /// <summary>A client that sends <paramref name="key"/> as a bearer token (none when null).</summary>
    public HttpClient Client(string? key)
    {
        var client = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        if (key is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }

        return client;
    }

    public HttpClient Admin() => Client(AdminKey);

    /// <summary>GETs <paramref name="path"/> and parses the JSON answer, failing the test unless the status is 200.</summary>
    public async Task<JsonElement> GetJsonAsync(string path, HttpClient? client = null)
    {
        using var response = await (client ?? _anonymous).GetAsync(path);
        var text = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), $"GET {path}: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>POSTs <paramref name="body"/> as JSON with the admin key; returns the status and the parsed answer.</summary>
    public async Task<(HttpStatusCode Status, JsonElement Body)> PostAdminAsync(string path, object body, HttpClient? client = null)
    {
        using var admin = client is null ? Admin() : null;
        using var response = await (client ?? admin!).PostAsJsonAsync(path, body, Json);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    public async ValueTask DisposeAsync()
    {
        _anonymous.Dispose();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await _app.StopAsync(timeout.Token);
        await _app.DisposeAsync();
    }
}
