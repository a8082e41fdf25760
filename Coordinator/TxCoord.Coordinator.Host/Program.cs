using Serilog;
using TxCoord.Coordinator.Host;

// The coordinator service. Configuration: ConnectionStrings:Journal, ConnectionStrings:RabbitMq,
// TxCoord:CoordinatorId and optional TxCoord:* timings (see CoordinatorHostSettings).
Log.Logger = new LoggerConfiguration()
    .WriteTo.Console(outputTemplate: CoordinatorHostSetup.OutputTemplate)
    .CreateBootstrapLogger();

try
{
    var builder = WebApplication.CreateBuilder(args);
    if (!CoordinatorHostSettings.TryRead(builder.Configuration, out var settings, out var error))
    {
        await Console.Error.WriteLineAsync($"txcoord-coordinator: configuration error: {error}");
        return CoordinatorHostSetup.ConfigurationErrorExitCode;
    }

    builder.AddTxCoordCoordinatorService(settings);
    var app = builder.Build();
    app.MapTxCoordHealth();
    await app.RunAsync();
    return 0;
}
catch (Exception ex) when (ex is not HostAbortedException)
{
    Log.Fatal(ex, "The coordinator stopped: {Reason}", ex.Message);
    return 1;
}
finally
{
    await Log.CloseAndFlushAsync();
}
