using MassTransit;
using Microsoft.Extensions.Logging;
using TxCoord.Contracts;
using TxCoord.Contracts.Security;
using TxCoord.Security;

namespace TxCoord.Participants.Security;

/// <summary>
/// Sender authentication on the SDK's buses (docs/security.md): which protocol messages a
/// participant and an initiator accept from whom, and the bus set-up that stamps and checks the
/// AMQP user_id. Event ids 2850-2899.
/// </summary>
internal static partial class SdkSenderChecks
{
    /// <summary>What arrives on a participant's queue: the coordinator's commands, and its peers' termination messages.</summary>
    public static readonly ISenderClaim[] ParticipantEndpoint =
    [
        new SenderClaim<PrepareBranch>(m => m.Coordinator.Value, SenderRole.Coordinator),
        new SenderClaim<PrepareBranches>(m => m.Coordinator.Value, SenderRole.Coordinator),
        new SenderClaim<CommitBranch>(m => m.Coordinator.Value, SenderRole.Coordinator),
        new SenderClaim<CommitBranches>(m => m.Coordinator.Value, SenderRole.Coordinator),
        new SenderClaim<AbortBranch>(m => m.Coordinator.Value, SenderRole.Coordinator),
        new SenderClaim<PreCommitBranch>(m => m.Coordinator.Value, SenderRole.Coordinator),
        new SenderClaim<PreCommitBranches>(m => m.Coordinator.Value, SenderRole.Coordinator),
        new SenderClaim<GetBranchState>(m => m.Asker.Value, SenderRole.Participant),
        new SenderClaim<ProposeTermination>(m => m.Leader.Value, SenderRole.Participant),
        new SenderClaim<TerminationDecided>(m => m.Leader.Value, SenderRole.Participant),
    ];

    /// <summary>
    /// Answers a participant or an initiator receives (on its bus's own queue): its peers', the
    /// coordinator's (which name no coordinator: any configured coordinator's user), the participants' work answers.
    /// </summary>
    public static readonly ISenderClaim[] Responses =
    [
        new SenderClaim<BranchStateReported>(m => m.Participant.Value, SenderRole.Participant),
        new SenderClaim<TerminationProposalAnswered>(m => m.Participant.Value, SenderRole.Participant),
        new SenderClaim<WorkCompleted>(m => m.Participant.Value, SenderRole.Participant),
        new SenderClaim<TransactionOutcomeReported>(_ => null, role: null),
        new SenderClaim<TransactionCompleted>(_ => null, role: null),
    ];

    /// <summary>
    /// Sets sender authentication up on a bus: refuses BrokerUser on a transport that validates no
    /// sender, stamps <paramref name="ownUser"/> (when known) on everything the bus sends, and checks
    /// the answers arriving on the bus's own queue. Off: one warning that anyone can forge.
    /// </summary>
    public static void ConfigureBus(IBusFactoryConfigurator configurator, TxCoordSecurityOptions options, string? ownUser, string role, ILogger logger, TimeProvider time)
    {
        if (options.SenderAuthentication == SenderAuthentication.Off)
        {
            // The participants (and the coordinator) say it for the deployment; an initiator alone stays quiet.
            if (ownUser is not null || role != "Initiator")
            {
                SenderAuthenticationOff(logger, role);
            }

            return;
        }

        if (!BrokerIdentity.IsRabbitMq(configurator))
        {
            throw new InvalidOperationException(
                $"{role}: Security:SenderAuthentication is BrokerUser, which needs RabbitMQ (it validates the AMQP user_id); "
                + "this bus uses another transport (the in-memory transport of the embedded mode has no broker to validate a sender): set it to Off.");
        }

        if (ownUser is not null)
        {
            BrokerIdentity.StampUserId(configurator, ownUser);
        }

        configurator.UseFilter(new SenderCheckFilter(options, Responses, logger, time, eventId: 2851));
    }

    [LoggerMessage(2850, LogLevel.Warning,
        "{Role}: sender authentication is off (Security:SenderAuthentication Off): anything that can publish on the broker's virtual host can forge protocol messages (commit, abort, votes, termination decisions). See docs/security.md to turn BrokerUser on.")]
    private static partial void SenderAuthenticationOff(ILogger logger, string role);

    [LoggerMessage(2852, LogLevel.Warning,
        "Transaction {TransactionId}: participant {Participant} refused {MessageType} from '{Sender}' (round {Round}): {Why}. Nothing was changed.")]
    public static partial void PeerRefused(ILogger logger, TransactionId transactionId, string participant, string messageType, string sender, int round, string why);
}
