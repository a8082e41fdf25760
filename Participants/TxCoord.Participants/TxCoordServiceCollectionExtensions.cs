using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TxCoord.Bus;
using TxCoord.Contracts;
using TxCoord.Faults;
using TxCoord.Participants.Initiator;
using TxCoord.Participants.Participant;
using TxCoord.Participants.Security;
using TxCoord.Contracts.Security;
using TxCoord.Security;

namespace TxCoord.Participants;

/// <summary>Registers the TxCoord SDK. The application owns its MassTransit bus and its transport.</summary>
public static class TxCoordServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="ITransactionInitiator"/>: begin, send work, commit, roll back.
    /// </summary>
    public static IServiceCollection AddTxCoordInitiator(this IServiceCollection services, Action<TxCoordInitiatorOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var options = new TxCoordInitiatorOptions();
        configure(options);
        BranchGid.EnsureValidName(options.CoordinatorId, "coordinator id (TxCoord initiator option CoordinatorId)");
        foreach (var (name, value) in new[] { ("TransactionTimeout", options.TransactionTimeout), ("WorkTimeout", options.WorkTimeout), ("CommitTimeout", options.CommitTimeout) })
        {
            if (value <= TimeSpan.Zero)
            {
                throw new ArgumentException($"TxCoord initiator option {name} must be positive (was {value}).");
            }
        }

        if (Contracts.Security.SecurityOptionsCheck.Check(options.Security, ownRole: null, []) is { Count: > 0 } security)
        {
            throw new ArgumentException($"TxCoord initiator: {string.Join(" ", security)}");
        }

        foreach (var (name, value) in new[] { ("MaxParticipantsPerTransaction", options.MaxParticipantsPerTransaction), ("MaxWorksPerParticipant", options.MaxWorksPerParticipant) })
        {
            if (value < 1)
            {
                throw new ArgumentException($"TxCoord initiator option {name} must be at least 1 (was {value}).");
            }
        }

        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<ITransactionInitiator>(sp => new TransactionInitiator(
            options, sp, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<TransactionInitiator>>()));
        return services;
    }

    /// <summary>
    /// Registers one participant: a PostgreSQL database behind a queue named after its id. Call it
    /// once per participant (a process may host several), then add its endpoint to the bus with
    /// <see cref="TxCoordBusConfiguratorExtensions.ConfigureTxCoordParticipantEndpoints"/>.
    /// Bad options throw here, with a message that says what to fix.
    /// </summary>
    public static IServiceCollection AddTxCoordParticipant(this IServiceCollection services, Action<TxCoordParticipantOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var options = new TxCoordParticipantOptions();
        configure(options);
        options.Validate();
        FaultInjection.EnsureValid();

        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(sp => new ParticipantRuntime(
            options, sp, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<ParticipantRuntime>>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, ParticipantBackgroundService>());
        ParticipantHealthCheck.Register(services, options.ParticipantId);
        return services;
    }
}

/// <summary>Adds TxCoord's receive endpoints to a MassTransit bus, on any transport.</summary>
public static class TxCoordBusConfiguratorExtensions
{
    /// <summary>
    /// Sets sender authentication up for the initiator registered with
    /// <see cref="TxCoordServiceCollectionExtensions.AddTxCoordInitiator"/> (its
    /// <see cref="TxCoordInitiatorOptions.Security"/>): with BrokerUser, the coordinator's answers are
    /// accepted only from a configured coordinator's broker user and work answers only from the user of
    /// the participant they name. Needed on a bus that hosts an initiator but no participant (a bus with
    /// participants does it in <see cref="ConfigureTxCoordParticipantEndpoints"/>); without it an
    /// initiator with BrokerUser refuses to begin transactions. Off: nothing is checked.
    /// </summary>
    public static void ConfigureTxCoordInitiator(this IBusFactoryConfigurator configurator, IRegistrationContext context)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(context);
        if (context.GetService<ITransactionInitiator>() is not TransactionInitiator initiator)
        {
            throw new InvalidOperationException("The TxCoord initiator is not registered: call services.AddTxCoordInitiator(...) before configuring its bus.");
        }

        if (initiator.ReceiveChecked)
        {
            return;
        }

        var logger = context.GetService<ILoggerFactory>()?.CreateLogger("TxCoord.Participants.Security") ?? NullLogger.Instance;
        SdkSenderChecks.ConfigureBus(configurator, initiator.Options.Security, ownUser: null, "Initiator", logger, context.GetService<TimeProvider>() ?? TimeProvider.System);
        initiator.ReceiveChecked = true;
    }

    /// <summary>
    /// Adds one receive endpoint per registered participant, handling its work messages, the
    /// coordinator's Prepare, PreCommit (3PC), Commit and Abort, and its peers' termination messages. Works with RabbitMQ and with the in-memory
    /// transport (embedded mode).
    /// </summary>
    public static void ConfigureTxCoordParticipantEndpoints(this IBusFactoryConfigurator configurator, IRegistrationContext context)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(context);
        var deliveryLogger = context.GetService<ILoggerFactory>()?.CreateLogger("TxCoord.Participants.DeliveryWatch") ?? NullLogger.Instance;
        var securityLogger = context.GetService<ILoggerFactory>()?.CreateLogger("TxCoord.Participants.Security") ?? NullLogger.Instance;
        var time = context.GetService<TimeProvider>() ?? TimeProvider.System;
        var participants = context.GetServices<ParticipantRuntime>().ToList();
        if (participants.Count > 0)
        {
            // One bus, one connection, one broker user: the participants hosted together must share it.
            var first = participants[0];
            var security = first.Options.Security;
            var users = participants.Select(p => SecurityOptionsCheck.OwnUser(p.Options.Security, SenderRole.Participant, p.Id.Value)).Distinct().ToList();
            if (users.Count > 1)
            {
                throw new InvalidOperationException(
                    $"Participants {string.Join(", ", participants.Select(p => p.Id))} share one bus (one connection, one broker user) but Security:Participants "
                    + $"maps them to different users or modes ({string.Join(", ", users.Select(u => u ?? "off"))}): host them apart or map them to the same user.");
            }

            SdkSenderChecks.ConfigureBus(
                configurator, security, SecurityOptionsCheck.OwnUser(security, SenderRole.Participant, first.Id.Value), $"Participant {first.Id}", securityLogger, time);
            if (context.GetService<ITransactionInitiator>() is TransactionInitiator initiator)
            {
                // The answers it gets are checked by the filter just set up (the same settings on one process).
                initiator.ReceiveChecked = true;
            }
        }

        var skippedLogger = context.GetService<ILoggerFactory>()?.CreateLogger("TxCoord.Participants.SkippedMessages") ?? NullLogger.Instance;
        foreach (var participant in participants)
        {
            var queue = TxCoordQueues.Participant(participant.Id);
            configurator.ReceiveEndpoint(queue, endpoint =>
            {
                // Messages are sent to this queue through its inbox exchange, never published: no fan-out bindings.
                endpoint.ConfigureConsumeTopology = false;
                endpoint.BindTxCoordInbox(TxCoordQueues.ParticipantInbox(participant.Id));
                endpoint.PrefetchCount = participant.Options.ConcurrentMessageLimit;
                endpoint.ConcurrentMessageLimit = participant.Options.ConcurrentMessageLimit;
                // Before the fault filter, so a message the fault seam holds up counts as a slow handler.
                endpoint.UseTxCoordDeliveryWatch(participant.Id.Value, deliveryLogger, time);
                endpoint.UseTxCoordBusFaults();
                if (participant.Options.Security.SenderAuthentication != SenderAuthentication.Off)
                {
                    endpoint.UseFilter(new SenderCheckFilter(participant.Options.Security, SdkSenderChecks.ParticipantEndpoint, securityLogger, time, eventId: 2851));
                }

                endpoint.UseTxCoordSkippedMessageLog(queue, (name, types) => LimitsLog.MessageSkipped(skippedLogger, name, types));
                endpoint.Handler<PrepareBranch>(participant.HandlePrepareAsync);
                endpoint.Handler<PrepareBranches>(participant.HandlePrepareBatchAsync);
                endpoint.Handler<CommitBranch>(participant.HandleCommitAsync);
                endpoint.Handler<CommitBranches>(participant.HandleCommitBatchAsync);
                endpoint.Handler<AbortBranch>(participant.HandleAbortAsync);
                endpoint.Handler<PreCommitBranch>(participant.HandlePreCommitAsync);
                endpoint.Handler<PreCommitBranches>(participant.HandlePreCommitBatchAsync);
                endpoint.Handler<GetBranchState>(participant.HandleGetBranchStateAsync);
                endpoint.Handler<ProposeTermination>(participant.HandleProposeTerminationAsync);
                endpoint.Handler<TerminationDecided>(participant.HandleTerminationDecidedAsync);
                foreach (var handler in participant.Options.Handlers)
                {
                    handler.Configure(endpoint, participant);
                }
            });
        }
    }
}
