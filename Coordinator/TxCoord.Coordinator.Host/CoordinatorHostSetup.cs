using System.Text.Json;
using MassTransit;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Serilog;
using TxCoord.Coordinator.Runtime;

namespace TxCoord.Coordinator.Host;

/// <summary>Wires the service: Serilog, the coordinator, MassTransit over RabbitMQ and the health endpoint.</summary>
internal static class CoordinatorHostSetup
{
    public const int ConfigurationErrorExitCode = 2;

    public const string DefaultUrls = "http://127.0.0.1:5080";

    public const string OutputTemplate = "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {SourceContext}: {Message:lj}{NewLine}{Exception}";

    /// <summary>The name MassTransit gives its bus health check.</summary>
    public const string BusHealthCheckName = "masstransit-bus";

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
    /// GET /health: 200 when the journal answers <c>SELECT 1</c> and the bus is healthy, 503
    /// otherwise, with a JSON body saying which.
    /// </summary>
    public static void MapTxCoordHealth(this WebApplication app)
    {
        app.MapHealthChecks("/health", new HealthCheckOptions
        {
            ResponseWriter = WriteHealthAsync,
            ResultStatusCodes =
            {
                [HealthStatus.Healthy] = StatusCodes.Status200OK,
                [HealthStatus.Degraded] = StatusCodes.Status503ServiceUnavailable,
                [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
            },
        });
    }

    private static async Task WriteHealthAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json; charset=utf-8";
        await using var json = new Utf8JsonWriter(context.Response.Body, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteString("status", report.Status.ToString());
        json.WriteBoolean("journalReachable", IsHealthy(report, JournalHealthCheck.Name));
        json.WriteBoolean("busHealthy", IsHealthy(report, BusHealthCheckName));
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
