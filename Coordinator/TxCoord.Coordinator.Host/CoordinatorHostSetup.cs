using System.Diagnostics.CodeAnalysis;
using System.Text.Json;
using MassTransit;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Serilog;
using TxCoord.Coordinator.Host.Dashboard;
using TxCoord.Coordinator.Runtime;

namespace TxCoord.Coordinator.Host;

/// <summary>Wires the service: Serilog, the coordinator, MassTransit over RabbitMQ, the health endpoints and the dashboard.</summary>
internal static class CoordinatorHostSetup
{
    public const int ConfigurationErrorExitCode = 2;

    public const string DefaultUrls = "http://127.0.0.1:5080";

    public const string OutputTemplate = "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {SourceContext}: {Message:lj}{NewLine}{Exception}";

    /// <summary>The name MassTransit gives its bus health check.</summary>
    public const string BusHealthCheckName = "masstransit-bus";

    /// <summary>
    /// Builds the whole service from its command line, configuration files, environment and
    /// <paramref name="overrides"/> (added last, so they win: tests use them). On a configuration
    /// error returns false with one line naming each setting to fix. Tests bind Kestrel to
    /// <c>http://127.0.0.1:0</c> through <c>urls</c> and read the port from <c>app.Urls</c> once started.
    /// </summary>
    public static bool TryCreate(
        string[] args,
        IEnumerable<KeyValuePair<string, string?>>? overrides,
        [NotNullWhen(true)] out WebApplication? app,
        [NotNullWhen(false)] out string? error)
    {
        app = null;
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        if (overrides is not null)
        {
            builder.Configuration.AddInMemoryCollection(overrides);
        }

        // Both read before failing, so one run names every setting to fix.
        CoordinatorHostSettings.TryRead(builder.Configuration, out var settings, out var coordinatorError);
        DashboardSettings.TryRead(builder.Configuration, out var dashboard, out var dashboardError);
        if (settings is null || dashboard is null)
        {
            error = string.Join("; ", new[] { coordinatorError, dashboardError }.Where(e => !string.IsNullOrEmpty(e)));
            return false;
        }

        builder.AddTxCoordCoordinatorService(settings);
        builder.AddTxCoordDashboard(dashboard);
        app = builder.Build();
        app.MapTxCoordHealth();
        app.MapTxCoordDashboard();
        error = null;
        return true;
    }

    public static void AddTxCoordCoordinatorService(this WebApplicationBuilder builder, CoordinatorHostSettings settings)
    {
        if (string.IsNullOrWhiteSpace(builder.Configuration[WebHostDefaults.ServerUrlsKey]))
        {
            builder.WebHost.UseUrls(DefaultUrls);
        }

        builder.Host.UseSerilog((context, services, logger) => logger
            .ReadFrom.Configuration(context.Configuration)
            .ReadFrom.Services(services)
            .Enrich.FromLogContext()
            .Enrich.With<TxCoord.Logging.EscapeControlCharactersEnricher>()
            .WriteTo.Console(outputTemplate: OutputTemplate));

        var coordinator = settings.Coordinator;
        builder.Services.AddTxCoordCoordinator(options =>
        {
            options.CoordinatorId = coordinator.CoordinatorId;
            options.JournalConnectionString = coordinator.JournalConnectionString;
            options.VoteTimeout = coordinator.VoteTimeout;
            options.DefaultTransactionTimeout = coordinator.DefaultTransactionTimeout;
            options.RedriveInitialInterval = coordinator.RedriveInitialInterval;
            options.RedriveMaxInterval = coordinator.RedriveMaxInterval;
            options.TickInterval = coordinator.TickInterval;
            options.BatchWindow = coordinator.BatchWindow;
            Contracts.Security.SecurityOptionsCheck.Copy(coordinator.Security, options.Security);
            options.MaxParticipantsPerTransaction = coordinator.MaxParticipantsPerTransaction;
            options.MaxWorksPerParticipant = coordinator.MaxWorksPerParticipant;
            options.MaxReasonLength = coordinator.MaxReasonLength;
        });

        var rabbitMq = settings.RabbitMq;
        builder.Services.AddMassTransit(bus => bus.UsingRabbitMq((context, cfg) =>
        {
            cfg.Host(rabbitMq.Host, rabbitMq.Port, rabbitMq.VirtualHost, host =>
            {
                host.Username(rabbitMq.Username);
                host.Password(rabbitMq.Password);
                if (rabbitMq.UseTls)
                {
                    host.UseSsl(ssl => ssl.ServerName = rabbitMq.Host);
                }
            });
            cfg.ConfigureTxCoordCoordinatorEndpoint(context);
        }));
    }

    /// <summary>
    /// GET /health and /health/ready: 200 when the journal answers <c>SELECT 1</c> and the bus
    /// is healthy, 503 otherwise, with a JSON body saying which. GET /health/live: 200 while the
    /// process answers at all (it checks nothing else, so an orchestrator does not restart the
    /// coordinator because its database is down). Open without a key: they reveal no data.
    /// </summary>
    public static void MapTxCoordHealth(this WebApplication app)
    {
        app.MapHealthChecks("/health", HealthOptions(_ => true));
        app.MapHealthChecks("/health/ready", HealthOptions(_ => true));
        app.MapHealthChecks("/health/live", HealthOptions(_ => false));
    }

    private static HealthCheckOptions HealthOptions(Func<HealthCheckRegistration, bool> predicate) => new()
    {
        Predicate = predicate,
        ResponseWriter = WriteHealthAsync,
        ResultStatusCodes =
        {
            [HealthStatus.Healthy] = StatusCodes.Status200OK,
            [HealthStatus.Degraded] = StatusCodes.Status503ServiceUnavailable,
            [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
        },
    };

    private static async Task WriteHealthAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json; charset=utf-8";
        await using var json = new Utf8JsonWriter(context.Response.Body, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteString("status", report.Status.ToString());
        if (report.Entries.Count > 0)
        {
            // Not on /health/live, which checks nothing.
            json.WriteBoolean("journalReachable", IsHealthy(report, JournalHealthCheck.Name));
            json.WriteBoolean("busHealthy", IsHealthy(report, BusHealthCheckName));
        }

        json.WriteStartObject("checks");
        foreach (var (name, entry) in report.Entries)
        {
            json.WriteStartObject(name);
            json.WriteString("status", entry.Status.ToString());
            json.WriteString("description", entry.Description);
            json.WriteNumber("durationMs", Math.Round(entry.Duration.TotalMilliseconds, 1));
            json.WriteEndObject();
        }

        json.WriteEndObject();
        json.WriteEndObject();
        await json.FlushAsync(context.RequestAborted);
    }

    private static bool IsHealthy(HealthReport report, string name) =>
        report.Entries.TryGetValue(name, out var entry) && entry.Status == HealthStatus.Healthy;
}
