using Serilog;
using TxCoord.Coordinator.Host;

// The coordinator service. Configuration: ConnectionStrings:Journal, ConnectionStrings:RabbitMq,
// TxCoord:CoordinatorId, optional TxCoord:* timings (see CoordinatorHostSettings) and the
// dashboard's TxCoord:Dashboard:* and TxCoord:Participants:* (see Dashboard/DashboardSettings).
Log.Logger = new LoggerConfiguration()
    .Enrich.With<TxCoord.Logging.EscapeControlCharactersEnricher>()
    .WriteTo.Console(outputTemplate: CoordinatorHostSetup.OutputTemplate)
    .CreateBootstrapLogger();

try
{
    if (!CoordinatorHostSetup.TryCreate(args, null, out var app, out var error))
    {
        await Console.Error.WriteLineAsync($"txcoord-coordinator: configuration error: {error}");
        return CoordinatorHostSetup.ConfigurationErrorExitCode;
    }

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
