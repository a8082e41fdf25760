using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using TxCoord.Bus;
using TxCoord.Contracts;
using TxCoord.Coordinator.Journal;
using TxCoord.Coordinator.Monitoring;
using TxCoord.Coordinator.Ownership;
using TxCoord.Coordinator.Runtime;
using TxCoord.Coordinator.Security;
using TxCoord.Faults;
using TxCoord.Security;

namespace TxCoord.Coordinator;

/// <summary>Registers the TxCoord coordinator. The application owns its MassTransit bus and its transport.</summary>
public static class TxCoordCoordinatorServiceCollectionExtensions
{
    /// <summary>
    /// Registers the coordinator: options (validated when the host starts, with a message naming
    /// the setting to fix), the PostgreSQL journal, the runtime, the hosted service that creates
    /// the journal schema and resumes unfinished transactions (started only once this process owns
    /// the coordinator id on the journal: see <see cref="CoordinatorOwnershipService"/>), a <c>txcoord-journal</c> health
    /// check and <see cref="TimeProvider.System"/> unless a <see cref="TimeProvider"/> is registered.
    /// Add its queue to the bus with <see cref="TxCoordCoordinatorBusConfiguratorExtensions.ConfigureTxCoordCoordinatorEndpoint"/>.
    /// </summary>
    public static IServiceCollection AddTxCoordCoordinator(this IServiceCollection services, Action<CoordinatorOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        FaultInjection.EnsureValid();

        services.AddOptions<CoordinatorOptions>().Configure(configure).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<CoordinatorOptions>, CoordinatorOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<ITransactionJournal>(sp =>
            new PostgresTransactionJournal(sp.GetRequiredService<IOptions<CoordinatorOptions>>().Value.JournalConnectionString));
        services.TryAddSingleton<ICoordinatorTransport>(sp =>
        {
            ICoordinatorTransport transport = new MassTransitCoordinatorTransport(sp);
            var window = sp.GetRequiredService<IOptions<CoordinatorOptions>>().Value.BatchWindow;
            return window > TimeSpan.Zero && !FaultInjection.IsArmed
                ? new BatchingCoordinatorTransport(transport, window, sp.GetRequiredService<TimeProvider>(), sp.GetService<CoordinatorMonitor>())
                : transport;
        });
        services.TryAddSingleton<CoordinatorRuntime>();
        // First: nothing of the coordinator (nor the bus, registered after this) starts before this
        // process owns the coordinator id on the journal.
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, CoordinatorOwnershipService>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, CoordinatorHostedService>());
        services.AddHealthChecks().AddCheck<JournalHealthCheck>(JournalHealthCheck.Name, tags: ["ready", "txcoord"]);
        return services;
    }
}

/// <summary>Adds the coordinator's queue to a MassTransit bus, on any transport.</summary>
public static class TxCoordCoordinatorBusConfiguratorExtensions
{
    /// <summary>Messages handled at once (and prefetched) on the coordinator's queue.</summary>
    public const int ConcurrentMessageLimit = 64;

    /// <summary>
    /// Adds the receive endpoint <c>txcoord-coordinator-&lt;CoordinatorId&gt;</c> handling
    /// CommitTransaction, RollbackTransaction, GetTransactionOutcome, BranchVoted, BranchesVoted,
    /// BranchCommitted, BranchesCommitted, BranchAborted and, for 3PC, BranchPreCommitted, BranchesPreCommitted and TerminationDecided. Works with RabbitMQ and with the in-memory transport
    /// (embedded mode). Needs <see cref="TxCoordCoordinatorServiceCollectionExtensions.AddTxCoordCoordinator"/>.
    /// </summary>
    public static void ConfigureTxCoordCoordinatorEndpoint(this IBusFactoryConfigurator configurator, IRegistrationContext context)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(context);

        var runtime = context.GetService<CoordinatorRuntime>()
            ?? throw new InvalidOperationException(
                $"The TxCoord coordinator is not registered: call services.{nameof(TxCoordCoordinatorServiceCollectionExtensions.AddTxCoordCoordinator)}(...) before configuring its endpoint.");

        var securityLogger = context.GetService<ILoggerFactory>()?.CreateLogger("TxCoord.Coordinator.Security") ?? NullLogger.Instance;
        var senderClaims = CoordinatorSenderChecks.ConfigureBus(configurator, runtime.Options, securityLogger);
        var queue = TxCoordQueues.Coordinator(runtime.Id);
        var logger = context.GetService<ILoggerFactory>()?.CreateLogger("TxCoord.Coordinator.SkippedMessages") ?? NullLogger.Instance;
        var monitor = context.GetService<CoordinatorMonitor>();
        configurator.ReceiveEndpoint(queue, endpoint =>
        {
            // Messages are sent to this queue through its inbox exchange, never published: no fan-out bindings.
            endpoint.ConfigureConsumeTopology = false;
            endpoint.BindTxCoordInbox(TxCoordQueues.CoordinatorInbox(runtime.Id));
            endpoint.PrefetchCount = ConcurrentMessageLimit;
            endpoint.ConcurrentMessageLimit = ConcurrentMessageLimit;

            // A journal blip should not send a request to the error queue; every handler is idempotent.
            endpoint.UseMessageRetry(retry => retry.Intervals(100, 500, 2000));
            endpoint.UseTxCoordBusFaults();
            if (senderClaims is not null)
            {
                endpoint.UseFilter(new SenderCheckFilter(
                    runtime.Options.Security, senderClaims, securityLogger, context.GetService<TimeProvider>() ?? TimeProvider.System, eventId: 1601,
                    counted: monitor is null ? null : monitor.MessageRefused));
            }

            endpoint.UseTxCoordSkippedMessageLog(queue, (name, types) =>
            {
                monitor?.MessageSkipped(name);
                Log.MessageSkipped(logger, name, types);
            });
            endpoint.Handler<CommitTransaction>(runtime.HandleCommitAsync);
            endpoint.Handler<RollbackTransaction>(runtime.HandleRollbackAsync);
            endpoint.Handler<GetTransactionOutcome>(runtime.HandleGetOutcomeAsync);
            endpoint.Handler<BranchVoted>(runtime.HandleVoteAsync);
            endpoint.Handler<BranchesVoted>(runtime.HandleVotesAsync);
            endpoint.Handler<BranchCommitted>(runtime.HandleCommittedAsync);
            endpoint.Handler<BranchesCommitted>(runtime.HandleCommittedBatchAsync);
            endpoint.Handler<BranchAborted>(runtime.HandleAbortedAsync);
            endpoint.Handler<BranchPreCommitted>(runtime.HandlePreCommittedAsync);
            endpoint.Handler<BranchesPreCommitted>(runtime.HandlePreCommittedBatchAsync);
            endpoint.Handler<TerminationDecided>(runtime.HandleTerminationDecidedAsync);
        });
    }
}
