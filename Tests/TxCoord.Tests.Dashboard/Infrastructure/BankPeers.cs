using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using TxCoord.Participants;
using TxCoord.Samples.Bank;

namespace TxCoord.Tests.Dashboard.Infrastructure;

/// <summary>
/// The bank sample's two participant services and an initiator, each in its own host with its
/// own bus over the real RabbitMQ, as separate services would be, on databases of their own.
/// </summary>
internal sealed class BankPeers : IAsyncDisposable
{
    /// <summary>Transfers use accounts 1..Accounts.</summary>
    public const int Accounts = 200;

    /// <summary>An account no transfer touches, for a test's own work.</summary>
    public const int SpareAccount = Accounts + 1;

    public const long InitialBalance = 1_000_000;

    private readonly List<IHost> _hosts = [];

    private BankPeers(string debit, string credit)
    {
        Debit = debit;
        Credit = credit;
    }

    public string Debit { get; }

    public string Credit { get; }

    public Dictionary<string, string> Databases { get; } = [];

    public ITransactionInitiator Initiator => _hosts[^1].Services.GetRequiredService<ITransactionInitiator>();

    /// <summary>Creates and seeds both bank databases (call before the coordinator starts, so it can be told where they are).</summary>
    public static async Task<BankPeers> CreateDatabasesAsync()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var peers = new BankPeers($"bank-a-{suffix}", $"bank-b-{suffix}");
        foreach (var participant in new[] { peers.Debit, peers.Credit })
        {
            var connectionString = await TestServers.CreateDatabaseAsync($"dash_{participant.Replace('-', '_')}");
            await using var dataSource = NpgsqlDataSource.Create(connectionString);
            await BankSchema.SeedAsync(dataSource, SpareAccount, InitialBalance);
            peers.Databases[participant] = connectionString;
        }

        return peers;
    }

    /// <summary>Starts both participants and the initiator of coordinator <paramref name="coordinatorId"/>.</summary>
    public async Task StartAsync(string coordinatorId)
    {
        foreach (var participant in new[] { Debit, Credit })
        {
            _hosts.Add(await StartHostAsync(
                services => services.AddBankParticipant(participant, Databases[participant], o =>
                {
                    o.BranchTimeout = TimeSpan.FromSeconds(30);
                    o.ResolveInterval = TimeSpan.FromSeconds(1);
                }),
                (cfg, ctx) => cfg.ConfigureTxCoordParticipantEndpoints(ctx)));
        }

        _hosts.Add(await StartHostAsync(
            services => services.AddTxCoordInitiator(o =>
            {
                o.CoordinatorId = coordinatorId;
                o.WorkTimeout = TimeSpan.FromSeconds(15);
                o.CommitTimeout = TimeSpan.FromSeconds(30);
            }),
            (_, _) => { }));
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var host in _hosts)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            await host.StopAsync(timeout.Token);
            host.Dispose();
        }
    }

    private static async Task<IHost> StartHostAsync(Action<IServiceCollection> configure, Action<IBusFactoryConfigurator, IBusRegistrationContext> endpoints)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("MassTransit", LogLevel.Error);
        configure(builder.Services);
        builder.Services.AddMassTransit(x => x.UsingRabbitMq((ctx, cfg) =>
        {
            cfg.Host(new Uri(TestServers.RabbitMq));
            endpoints(cfg, ctx);
        }));
        builder.Services.Configure<MassTransitHostOptions>(o =>
        {
            o.WaitUntilStarted = true;
            o.StartTimeout = TimeSpan.FromSeconds(30);
            o.StopTimeout = TimeSpan.FromSeconds(10);
        });
        var host = builder.Build();
        await host.StartAsync();
        return host;
    }
}
