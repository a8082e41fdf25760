// A bank participant service: one PostgreSQL database (ConnectionStrings:Bank) behind the queue
// txcoord-participant-<Bank:ParticipantId>, on the RabbitMQ of ConnectionStrings:RabbitMq.
// Exit codes: 0 stopped normally, 1 failed at run time, 2 missing or invalid configuration.

using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using Serilog;
using Serilog.Events;
using TxCoord.Participants;
using TxCoord.Samples.Bank;

Log.Logger = SampleLogging.Configure(new LoggerConfiguration(), LogEventLevel.Information).CreateBootstrapLogger();
try
{
    var builder = Host.CreateApplicationBuilder(args);
    string participantId, connectionString;
    Uri rabbitMq;
    try
    {
        participantId = SampleSettings.Name(builder.Configuration, "Bank:ParticipantId", "this bank's participant id", BankReadiness.DefaultDebitParticipant);
        connectionString = SampleSettings.ConnectionString(builder.Configuration, "Bank", "this bank's database");
        rabbitMq = SampleSettings.RabbitMq(builder.Configuration);
        builder.Services.AddBankParticipant(participantId, connectionString, options => SampleSettings.ParticipantOptions(builder.Configuration, options));
    }
    catch (Exception e) when (e is SettingsException or ArgumentException or InvalidOperationException)
    {
        await Console.Error.WriteLineAsync($"bank participant: configuration error: {e.Message}");
        return SampleSettings.ConfigurationErrorExitCode;
    }

    builder.Services.AddSerilog((_, logger) => SampleLogging.Configure(logger, LogEventLevel.Information));
    builder.Services.Configure<MassTransitHostOptions>(options =>
    {
        // Fail at start, with the broker's error, rather than run without a bus.
        options.WaitUntilStarted = true;
        options.StartTimeout = TimeSpan.FromSeconds(60);
        options.StopTimeout = TimeSpan.FromSeconds(30);
    });
    builder.Services.AddMassTransit(bus => bus.UsingRabbitMq((context, rabbit) =>
    {
        // The URI carries user and password (amqp://user:password@host:port/vhost): MassTransit reads them from it.
        rabbit.Host(rabbitMq, $"txcoord-sample-{participantId}", host =>
        {
            // amqps://: TLS, the broker's certificate checked against the URI's host (docs/tls.md).
            if (rabbitMq.Scheme == "amqps")
            {
                host.UseSsl(ssl => ssl.ServerName = rabbitMq.Host);
            }
        });
        rabbit.ConfigureTxCoordParticipantEndpoints(context);
    }));

    using var host = builder.Build();

    // The tables must exist before the first work arrives. Seeding them is the demo driver's job.
    await using (var dataSource = NpgsqlDataSource.Create(connectionString))
    {
        try
        {
            await BankSchema.EnsureCreatedAsync(dataSource);
        }
        catch (NpgsqlException e)
        {
            var database = SampleSettings.DatabaseName(connectionString, "(default database)");
            Log.Fatal(e, "Bank participant {Participant}: cannot create the bank schema in database {Database} (ConnectionStrings:Bank): {Error}",
                participantId, database, e.Message);
            return 1;
        }
    }

    Log.Information("Bank participant {Participant} starting: database {Database}, broker {Broker}",
        participantId, SampleSettings.DatabaseName(connectionString, "(default database)"), $"{rabbitMq.Host}:{rabbitMq.Port}");
    await host.RunAsync();
    return 0;
}
catch (Exception e)
{
    Log.Fatal(e, "Bank participant stopped: {Error}", e.Message);
    return 1;
}
finally
{
    await Log.CloseAndFlushAsync();
}
