// The hostile-message probe of the bank demo: forges the protocol messages that broke atomicity
// before sender authentication (issue 16) against a running demo, as any broker user, and says per
// attack whether the money moved. Run it with TXCOORD_DEMO_HOSTILE=1 ./run.sh demo (and
// TXCOORD_DEMO_SENDER_AUTH=Off to see what an unauthenticated deployment lets through).

using System.Globalization;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using Serilog;
using Serilog.Events;
using TxCoord.Contracts;
using TxCoord.Samples.Bank;
using TxCoord.Samples.Bank.Hostile;

const string usage = """
    usage: TxCoord.Samples.Bank.Hostile [--participant NAME] [--timeout SECONDS]

      --participant NAME   the debit bank's participant id (default bank-a)
      --timeout SECONDS    how long to wait for a branch to prepare, for the coordinator's answer and
                           for the branch to finish, per attack (default 60)

    settings (environment): ConnectionStrings__BankA (to read balances), ConnectionStrings__RabbitMq (the
                            attacker's broker user, e.g. guest), TxCoord__CoordinatorId
    exit codes: 0 no forged message changed anything, 3 a forged message broke atomicity,
                1 the run failed, 2 bad arguments or settings
    """;

Log.Logger = SampleLogging.Configure(new LoggerConfiguration(), LogEventLevel.Warning, toStandardError: true).CreateBootstrapLogger();
try
{
    ProbeSettings settings;
    var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
    try
    {
        if (args is ["--help" or "-h" or "-?"])
        {
            await Console.Out.WriteLineAsync(usage);
            return 0;
        }

        settings = ProbeSettings.Read(builder.Configuration, args);
    }
    catch (SettingsException e)
    {
        await Console.Error.WriteLineAsync($"hostile-message probe: {e.Message}");
        await Console.Error.WriteLineAsync();
        await Console.Error.WriteLineAsync(usage);
        return SampleSettings.ConfigurationErrorExitCode;
    }

    builder.Services.AddSerilog((_, logger) => SampleLogging.Configure(logger, LogEventLevel.Warning, toStandardError: true));
    builder.Services.Configure<MassTransitHostOptions>(options =>
    {
        options.WaitUntilStarted = true;
        options.StartTimeout = settings.Timeout;
    });
    var brokerUser = Uri.UnescapeDataString(settings.RabbitMq.UserInfo.Split(':')[0]);
    builder.Services.AddMassTransit(bus => bus.UsingRabbitMq((_, rabbit) =>
    {
        rabbit.Host(settings.RabbitMq, "txcoord-hostile-probe", _ => { });

        // Stamps its own broker user (RabbitMQ refuses any other): the check must be about who that user is.
        rabbit.ConfigureSend(send => send.UseExecute(context =>
        {
            if (context.TryGetPayload<RabbitMqSendContext>(out var amqp))
            {
                amqp.BasicProperties.UserId = brokerUser;
            }
        }));
    }));

    using var host = builder.Build();
    await using var bankA = NpgsqlDataSource.Create(settings.BankA);
    await host.StartAsync();
    try
    {
        await Console.Out.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"hostile-message probe: broker user '{brokerUser}' forges protocol messages of coordinator {settings.CoordinatorId} and participant {settings.DebitParticipant}; each attack debits {HostileProbe.Amount} at {settings.DebitParticipant} in a transaction whose credit side is a ghost that never answers"));
        var results = await new HostileProbe(host.Services.GetRequiredService<IBus>(), settings, Console.Out).RunAsync(bankA, CancellationToken.None);
        var broken = results.Count(r => r.BrokeAtomicity);
        await Console.Out.WriteLineAsync(broken == 0
            ? $"hostile-message probe: {results.Count} attacks, none changed anything"
            : $"hostile-message probe: {results.Count} attacks, {broken} broke atomicity (sender authentication is off? see docs/security.md)");
        return broken == 0 ? 0 : 3;
    }
    finally
    {
        await host.StopAsync(CancellationToken.None);
    }
}
catch (Exception e)
{
    Log.Fatal(e, "The hostile-message probe failed: {Error}", e.Message);
    return 1;
}
finally
{
    await Log.CloseAndFlushAsync();
}

namespace TxCoord.Samples.Bank.Hostile
{
    /// <summary>The probe's settings: the environment, then the command line.</summary>
    internal sealed record ProbeSettings(string BankA, Uri RabbitMq, string CoordinatorId, string DebitParticipant, TimeSpan Timeout)
    {
        public static ProbeSettings Read(IConfiguration configuration, IReadOnlyList<string> args)
        {
            var timeout = TimeSpan.FromSeconds(60);
            var participant = "bank-a";
            for (var i = 0; i < args.Count; i++)
            {
                var (name, inline) = args[i].IndexOf('=', StringComparison.Ordinal) is > 0 and var eq ? (args[i][..eq], args[i][(eq + 1)..]) : (args[i], null);
                if (name is not ("--timeout" or "--participant"))
                {
                    throw new SettingsException($"unknown argument '{args[i]}'");
                }

                var text = inline ?? (i + 1 < args.Count ? args[++i] : throw new SettingsException($"{name} needs a value"));
                if (name == "--participant")
                {
                    participant = BranchGid.IsValidName(text)
                        ? text
                        : throw new SettingsException($"--participant '{text}' is invalid: 1 to {BranchGid.MaxNameLength} characters of letters, digits, '_', '.' or '-'");
                    continue;
                }

                timeout = int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var seconds) && seconds >= 1
                    ? TimeSpan.FromSeconds(seconds)
                    : throw new SettingsException($"--timeout '{text}' is invalid: expected a whole number of seconds, at least 1");
            }

            var rabbitMq = SampleSettings.RabbitMq(configuration);
            if (!rabbitMq.UserInfo.Contains(':', StringComparison.Ordinal))
            {
                throw new SettingsException("ConnectionStrings:RabbitMq needs its user and password in the URI (amqp://user:password@host:port/): the probe stamps that user on what it forges");
            }

            return new ProbeSettings(
                SampleSettings.ConnectionString(configuration, "BankA", "bank A's database (to read the balances)"),
                rabbitMq,
                SampleSettings.Name(configuration, "TxCoord:CoordinatorId", "the coordinator's id (as configured in the coordinator service)", "coordinator-1"),
                participant,
                timeout);
        }
    }
}
