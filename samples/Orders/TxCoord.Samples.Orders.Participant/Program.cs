// The orders participant service: a handler that writes with EF Core inside the branch
// (OrdersParticipant.PlaceAsync), on one PostgreSQL database (ConnectionStrings:Orders), behind the
// queue txcoord-participant-<Orders:ParticipantId>, on the RabbitMQ of ConnectionStrings:RabbitMq.
// Exit codes: 0 stopped normally, 1 failed at run time, 2 missing or invalid configuration.

using Dapper;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using Serilog;
using Serilog.Events;
using TxCoord.Participants;
using TxCoord.Samples.Bank; // SampleSettings and SampleLogging, linked from samples/Bank/Shared
using TxCoord.Samples.Orders;

Log.Logger = SampleLogging.Configure(new LoggerConfiguration(), LogEventLevel.Information).CreateBootstrapLogger();
try
{
    var builder = Host.CreateApplicationBuilder(args);
    string participantId, connectionString;
    Uri rabbitMq;
    try
    {
        participantId = SampleSettings.Name(builder.Configuration, "Orders:ParticipantId", "this service's participant id", "orders");
        connectionString = SampleSettings.ConnectionString(builder.Configuration, "Orders", "the orders database");
        rabbitMq = SampleSettings.RabbitMq(builder.Configuration);
        builder.Services.AddOrdersParticipant(participantId, connectionString, options => SampleSettings.ParticipantOptions(builder.Configuration, options));
    }
    catch (Exception e) when (e is SettingsException or ArgumentException or InvalidOperationException)
    {
        await Console.Error.WriteLineAsync($"orders participant: configuration error: {e.Message}");
        return SampleSettings.ConfigurationErrorExitCode;
    }

    builder.Services.AddSerilog((_, logger) => SampleLogging.Configure(logger, LogEventLevel.Information));
    builder.Services.AddMassTransit(bus => bus.UsingRabbitMq((context, rabbit) =>
    {
        rabbit.Host(rabbitMq, $"txcoord-sample-{participantId}", _ => { });
        rabbit.ConfigureTxCoordParticipantEndpoints(context);
    }));

    using var host = builder.Build();
    await using (var connection = new NpgsqlConnection(connectionString))
    {
        try
        {
            await connection.ExecuteAsync(OrdersDb.CreateTableSql);
        }
        catch (NpgsqlException e)
        {
            Log.Fatal(e, "Orders participant {Participant}: cannot create the orders table (ConnectionStrings:Orders): {Error}", participantId, e.Message);
            return 1;
        }
    }

    Log.Information("Orders participant {Participant} starting", participantId);
    await host.RunAsync();
    return 0;
}
catch (Exception e)
{
    Log.Fatal(e, "Orders participant stopped: {Error}", e.Message);
    return 1;
}
finally
{
    await Log.CloseAndFlushAsync();
}
