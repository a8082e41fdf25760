// The bank-transfer demo's driver: seeds both banks, waits for the coordinator and the two bank
// participants, runs transfers through the coordinator, waits for phase 2 to finish everywhere,
// then checks the ledgers and prints a summary. See DemoArguments.Usage for arguments and exit codes.

using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Serilog;
using Serilog.Events;
using TxCoord.Participants;
using TxCoord.Samples.Bank;
using TxCoord.Samples.Bank.Transfers;

// The driver's own output goes to stdout; logs (warnings and worse) go to stderr.
Log.Logger = SampleLogging.Configure(new LoggerConfiguration(), LogEventLevel.Warning, toStandardError: true).CreateBootstrapLogger();
try
{
    DemoArguments arguments;
    DemoSettings settings;
    var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
    try
    {
        arguments = DemoArguments.Parse(args);
        if (arguments.Help)
        {
            await Console.Out.WriteLineAsync(DemoArguments.Usage);
            return 0;
        }

        settings = DemoSettings.Read(builder.Configuration);
        builder.Services.AddTxCoordInitiator(options =>
        {
            options.CoordinatorId = settings.CoordinatorId;
            SampleSettings.Security(builder.Configuration, options.Security);
        });
    }
    catch (Exception e) when (e is SettingsException or ArgumentException)
    {
        await Console.Error.WriteLineAsync($"bank-transfer demo: {e.Message}");
        await Console.Error.WriteLineAsync();
        await Console.Error.WriteLineAsync(DemoArguments.Usage);
        return SampleSettings.ConfigurationErrorExitCode;
    }

    builder.Services.AddSerilog((_, logger) => SampleLogging.Configure(logger, LogEventLevel.Warning, toStandardError: true));
    builder.Services.Configure<MassTransitHostOptions>(options =>
    {
        options.WaitUntilStarted = true;
        options.StartTimeout = arguments.Timeout;
        options.StopTimeout = TimeSpan.FromSeconds(30);
    });
    builder.Services.AddMassTransit(bus => bus.UsingRabbitMq((context, rabbit) =>
    {
        rabbit.Host(settings.RabbitMq, "txcoord-sample-transfers", _ => { });
        rabbit.ConfigureTxCoordInitiator(context);
    }));

    using var host = builder.Build();
    return await new Demo(arguments, settings, host, Console.Out).RunAsync();
}
catch (Exception e)
{
    Log.Fatal(e, "The bank-transfer demo failed: {Error}", e.Message);
    return 1;
}
finally
{
    await Log.CloseAndFlushAsync();
}
