using Dapper;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Coordinator;
using TxCoord.Participants;

namespace TxCoord.Tests.Integration.Infrastructure;

public enum Transport
{
    RabbitMq,
    InMemory,
}

/// <summary>What a test cluster runs with; short timeouts so failure paths finish quickly.</summary>
internal sealed record ClusterOptions
{
    public Transport Transport { get; init; } = Transport.RabbitMq;
    public int Participants { get; init; } = 2;
    public TimeSpan VoteTimeout { get; init; } = TimeSpan.FromSeconds(5);
    public TimeSpan BranchTimeout { get; init; } = TimeSpan.FromSeconds(20);
    public TimeSpan DecisionTimeout { get; init; } = TimeSpan.FromSeconds(2);
    public TimeSpan ResolveInterval { get; init; } = TimeSpan.FromMilliseconds(500);
    public TimeSpan CommitTimeout { get; init; } = TimeSpan.FromSeconds(20);
    /// <summary>Registers the participants' work handlers; the key-value test handlers by default.</summary>
    public Action<TxCoordParticipantOptions> Handlers { get; init; } = KeyValueParticipant.Configure;

    /// <summary>More services of each participant's host (its DbContext, scoped services), given the participant id and its database.</summary>
    public Action<IServiceCollection, string, string>? ParticipantServices { get; init; }

    /// <summary>
    /// Sender authentication: each service connects as its own broker user and every role runs with
    /// <see cref="SenderAuthentication.BrokerUser"/> and the map of ids to these users (and vote proof
    /// keys). Null (the default): everyone connects as the test broker's user, authentication off.
    /// </summary>
    public BrokerUsers? BrokerUsers { get; init; }

    /// <summary>More services of the coordinator's host (a captured log provider, say).</summary>
    public Action<IServiceCollection>? CoordinatorServices { get; init; }

    /// <summary>More settings of the coordinator.</summary>
    public Action<CoordinatorOptions>? Coordinator { get; init; }
}

/// <summary>
/// A coordinator, its participants and an initiator, each in its own host with its own bus, as
/// separate services would be, over the real RabbitMQ (or all in one host over the in-memory
/// transport: the embedded mode). Every cluster has its own databases, coordinator id and
/// participant ids, so tests never see each other's queues or rows.
/// </summary>
internal sealed class TxCoordCluster : IAsyncDisposable
{
    private readonly ClusterOptions _options;
    private readonly string _suffix = Guid.NewGuid().ToString("N")[..10];
    private readonly Dictionary<string, IHost> _participantHosts = [];
    private IHost? _coordinatorHost;
    private IHost? _initiatorHost;

    private TxCoordCluster(ClusterOptions options)
    {
        _options = options;
        CoordinatorId = $"c-{_suffix}";
        ParticipantIds = Enumerable.Range(1, options.Participants).Select(i => $"p{i}-{_suffix}").ToArray();
    }

    public string CoordinatorId { get; }

    public IReadOnlyList<string> ParticipantIds { get; }

    public string JournalConnectionString { get; private set; } = "";

    public Dictionary<string, string> ParticipantDatabases { get; } = [];

    public ITransactionInitiator Initiator => (_initiatorHost ?? _coordinatorHost)!.Services.GetRequiredService<ITransactionInitiator>();

    /// <summary>The running coordinator's bus (in the embedded mode, the one bus of everything), e.g. to observe what it sends.</summary>
    public IBus CoordinatorBus => _coordinatorHost!.Services.GetRequiredService<IBus>();

    /// <summary>The vote proof key of a participant in an authenticated cluster.</summary>
    public static string VoteProofKeyOf(string participant) => $"vote-proof-key-of-{participant}-0123456789abcdef";

    /// <summary>The security settings every role of an authenticated cluster runs with (nothing in an unauthenticated one).</summary>
    public void ConfigureSecurity(TxCoordSecurityOptions security)
    {
        if (_options.BrokerUsers is not { } users)
        {
            return;
        }

        security.SenderAuthentication = SenderAuthentication.BrokerUser;
        security.Coordinators[CoordinatorId] = users.Coordinator;
        foreach (var (participant, index) in ParticipantIds.Select((p, i) => (p, i)))
        {
            security.Participants[participant] = users.Participants[index];
            security.VoteProofKeys[participant] = VoteProofKeyOf(participant);
        }
    }

    /// <summary>The broker user a participant connects as (null when the cluster is not authenticated).</summary>
    public string? UserOf(string participant) =>
        _options.BrokerUsers?.Participants[ParticipantIds.ToList().IndexOf(participant)];

    public static async Task<TxCoordCluster> StartAsync(ClusterOptions? options = null)
    {
        var cluster = new TxCoordCluster(options ?? new ClusterOptions());
        await cluster.CreateDatabasesAsync();
        if (cluster._options.Transport == Transport.InMemory)
        {
            await cluster.StartEmbeddedAsync();
        }
        else
        {
            await cluster.StartCoordinatorAsync();
            foreach (var participant in cluster.ParticipantIds)
            {
                await cluster.StartParticipantAsync(participant);
            }

            cluster._initiatorHost = await StartHostAsync(
                cluster.ConfigureInitiator, cluster.ConfigureBus((cfg, ctx) => cfg.ConfigureTxCoordInitiator(ctx), cluster._options.BrokerUsers?.Initiator));
        }

        return cluster;
    }

    private async Task CreateDatabasesAsync()
    {
        JournalConnectionString = await TestServers.CreateDatabaseAsync($"it_{_suffix}_journal");
        foreach (var (participant, index) in ParticipantIds.Select((p, i) => (p, i + 1)))
        {
            var connectionString = await TestServers.CreateDatabaseAsync($"it_{_suffix}_p{index}");
            await KeyValueParticipant.CreateSchemaAsync(connectionString);
            ParticipantDatabases[participant] = connectionString;
        }
    }

    public async Task StartCoordinatorAsync() =>
        _coordinatorHost = await StartHostAsync(ConfigureCoordinator, ConfigureBus((cfg, ctx) => cfg.ConfigureTxCoordCoordinatorEndpoint(ctx), _options.BrokerUsers?.Coordinator));

    public async Task StopCoordinatorAsync()
    {
        if (_coordinatorHost is { } host)
        {
            _coordinatorHost = null;
            await StopHostAsync(host);
        }
    }

    public async Task StartParticipantAsync(string participant) =>
        _participantHosts[participant] = await StartHostAsync(
            services => ConfigureParticipant(services, participant),
            ConfigureBus((cfg, ctx) => cfg.ConfigureTxCoordParticipantEndpoints(ctx), UserOf(participant)));

    public async Task StopParticipantAsync(string participant)
    {
        if (_participantHosts.Remove(participant, out var host))
        {
            await StopHostAsync(host);
        }
    }

    /// <summary>The SDK runtime of a running participant, to read its health (working and blocked branches).</summary>
    internal Participants.Participant.ParticipantRuntime ParticipantRuntime(string participant) =>
        _participantHosts[participant].Services.GetServices<Participants.Participant.ParticipantRuntime>().Single();

    /// <summary>A bus of the test's own, to talk to participants or the coordinator directly as another peer would.</summary>
    public async Task<IHost> StartProbeAsync(Action<IBusFactoryConfigurator, IBusRegistrationContext> endpoints, Action<IServiceCollection> services, string? brokerUser = null) =>
        await StartHostAsync(services, ConfigureBus(endpoints, brokerUser));

    private async Task StartEmbeddedAsync() =>
        _coordinatorHost = await StartHostAsync(
            services =>
            {
                ConfigureCoordinator(services);
                foreach (var participant in ParticipantIds)
                {
                    ConfigureParticipant(services, participant);
                }

                ConfigureInitiator(services);
            },
            ConfigureBus((cfg, ctx) =>
            {
                cfg.ConfigureTxCoordCoordinatorEndpoint(ctx);
                cfg.ConfigureTxCoordParticipantEndpoints(ctx);
            }));

    private void ConfigureCoordinator(IServiceCollection services)
    {
        _options.CoordinatorServices?.Invoke(services);
        services.AddTxCoordCoordinator(o =>
        {
            o.CoordinatorId = CoordinatorId;
            o.JournalConnectionString = JournalConnectionString;
            o.VoteTimeout = _options.VoteTimeout;
            o.RedriveInitialInterval = TimeSpan.FromMilliseconds(500);
            o.RedriveMaxInterval = TimeSpan.FromSeconds(2);
            ConfigureSecurity(o.Security);
            _options.Coordinator?.Invoke(o);
        });
    }

    private void ConfigureParticipant(IServiceCollection services, string participant)
    {
        _options.ParticipantServices?.Invoke(services, participant, ParticipantDatabases[participant]);
        services.AddTxCoordParticipant(o =>
        {
            o.ParticipantId = participant;
            o.ConnectionString = ParticipantDatabases[participant];
            o.BranchTimeout = _options.BranchTimeout;
            o.DecisionTimeout = _options.DecisionTimeout;
            o.ResolveInterval = _options.ResolveInterval;
            o.OutcomeQueryTimeout = TimeSpan.FromSeconds(2);
            ConfigureSecurity(o.Security);
            if (_options.BrokerUsers is not null)
            {
                // A participant's own key only: the others' are the coordinator's to know.
                o.Security.VoteProofKeys.Clear();
                o.Security.VoteProofKey = VoteProofKeyOf(participant);
            }

            _options.Handlers(o);
        });
    }

    private void ConfigureInitiator(IServiceCollection services) =>
        services.AddTxCoordInitiator(o =>
        {
            o.CoordinatorId = CoordinatorId;
            o.WorkTimeout = TimeSpan.FromSeconds(10);
            o.CommitTimeout = _options.CommitTimeout;
            ConfigureSecurity(o.Security);
            o.Security.VoteProofKeys.Clear();
        });

    private Action<IBusRegistrationConfigurator> ConfigureBus(Action<IBusFactoryConfigurator, IBusRegistrationContext> endpoints, string? brokerUser = null) =>
        x =>
        {
            if (_options.Transport == Transport.InMemory)
            {
                x.UsingInMemory((ctx, cfg) => endpoints(cfg, ctx));
            }
            else
            {
                x.UsingRabbitMq((ctx, cfg) =>
                {
                    cfg.Host(brokerUser is null ? TestServers.RabbitMq : BrokerUsers.UriFor(brokerUser));
                    endpoints(cfg, ctx);
                });
            }
        };

    private static async Task<IHost> StartHostAsync(Action<IServiceCollection> configure, Action<IBusRegistrationConfigurator> bus)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("MassTransit", LogLevel.Error);
        configure(builder.Services);
        builder.Services.AddMassTransit(bus);
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

    private static async Task StopHostAsync(IHost host)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await host.StopAsync(timeout.Token);
        host.Dispose();
    }

    public async Task<long> CountPreparedAsync() =>
        (await Task.WhenAll(ParticipantDatabases.Values.Select(KeyValueParticipant.CountPreparedAsync))).Sum();

    /// <summary>The value of <paramref name="key"/> in each participant's database (null where absent).</summary>
    public async Task<string?[]> ReadEverywhereAsync(string key) =>
        await Task.WhenAll(ParticipantIds.Select(p => KeyValueParticipant.ReadAsync(ParticipantDatabases[p], key)));

    /// <summary>Rows of the coordinator's journal that are not finished.</summary>
    public async Task<long> CountOpenJournalEntriesAsync()
    {
        await using var connection = new NpgsqlConnection(JournalConnectionString);
        return await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM txcoord.transactions WHERE state = 'committing'");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var host in new[] { _initiatorHost, _coordinatorHost }.Concat(_participantHosts.Values))
        {
            if (host is not null)
            {
                await StopHostAsync(host);
            }
        }

        _participantHosts.Clear();

        // A failed test may leave branches prepared; they would hold slots of max_prepared_transactions shared by every test.
        foreach (var connectionString in ParticipantDatabases.Values)
        {
            await using var connection = new NpgsqlConnection(connectionString);
            foreach (var gid in await connection.QueryAsync<string>("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"))
            {
                if (BranchGid.IsSafe(gid))
                {
                    await connection.ExecuteAsync($"ROLLBACK PREPARED '{gid}'");
                }
            }
        }
    }
}
