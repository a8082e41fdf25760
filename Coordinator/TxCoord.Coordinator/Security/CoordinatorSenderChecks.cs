using System.Collections.Immutable;
using MassTransit;
using Microsoft.Extensions.Logging;
using TxCoord.Contracts;
using TxCoord.Contracts.Security;
using TxCoord.Security;

namespace TxCoord.Coordinator.Security;

/// <summary>
/// Sender authentication on the coordinator (docs/security.md): which messages it accepts from
/// whom, the bus set-up, and the check of relayed early-prepare votes. Event ids 1600-1649.
/// </summary>
internal static partial class CoordinatorSenderChecks
{
    /// <summary>
    /// What arrives on the coordinator's queue from participants, each accepted only from the broker
    /// user of the participant it names. CommitTransaction, RollbackTransaction and an initiator's
    /// GetTransactionOutcome (no Participant) come from initiators: anyone may ask.
    /// </summary>
    public static readonly ISenderClaim[] CoordinatorEndpoint =
    [
        new SenderClaim<BranchVoted>(m => m.Participant.Value, SenderRole.Participant),
        new SenderClaim<BranchesVoted>(m => m.Participant.Value, SenderRole.Participant),
        new SenderClaim<BranchCommitted>(m => m.Participant.Value, SenderRole.Participant),
        new SenderClaim<BranchesCommitted>(m => m.Participant.Value, SenderRole.Participant),
        new SenderClaim<BranchAborted>(m => m.Participant.Value, SenderRole.Participant),
        new SenderClaim<BranchPreCommitted>(m => m.Participant.Value, SenderRole.Participant),
        new SenderClaim<BranchesPreCommitted>(m => m.Participant.Value, SenderRole.Participant),
        new SenderClaim<TerminationDecided>(m => m.Leader.Value, SenderRole.Participant),
        new SenderClaim<GetTransactionOutcome>(m => m.Participant?.Value, SenderRole.Participant),
    ];

    /// <summary>Sets sender authentication up on the coordinator's bus; Off: one warning that anyone can forge.</summary>
    public static ISenderClaim[]? ConfigureBus(IBusFactoryConfigurator configurator, CoordinatorOptions options, ILogger logger)
    {
        var security = options.Security;
        if (security.SenderAuthentication == SenderAuthentication.Off)
        {
            SenderAuthenticationOff(logger, options.CoordinatorId);
            return null;
        }

        if (!BrokerIdentity.IsRabbitMq(configurator))
        {
            throw new InvalidOperationException(
                $"Coordinator {options.CoordinatorId}: Security:SenderAuthentication is BrokerUser, which needs RabbitMQ (it validates the AMQP user_id); "
                + "this bus uses another transport (the in-memory transport of the embedded mode has no broker to validate a sender): set it to Off.");
        }

        BrokerIdentity.StampUserId(configurator, SecurityOptionsCheck.OwnUser(security, SenderRole.Coordinator, options.CoordinatorId)!);
        return CoordinatorEndpoint;
    }

    /// <summary>
    /// The relayed early-prepare votes the coordinator trusts: only those of participants among the
    /// transaction's participants and, with authentication on, only those with a valid proof. The
    /// others are returned as <c>Untrusted</c> with why: their participants are asked to prepare as
    /// if nothing had been relayed (a really prepared branch answers Yes again).
    /// </summary>
    public static (ImmutableArray<ParticipantId> Trusted, List<(ParticipantId Participant, string Why)> Untrusted) CheckRelayedVotes(
        TxCoordSecurityOptions security, CoordinatorId coordinator, CommitTransaction message)
    {
        var participants = (message.Participants ?? []).ToList();
        var proofs = message.PreparedProofs ?? [];
        var workCounts = message.WorkCounts ?? [];
        var prepared = message.Prepared ?? [];
        var trusted = ImmutableArray.CreateBuilder<ParticipantId>();
        var untrusted = new List<(ParticipantId, string)>();
        for (var i = 0; i < prepared.Count; i++)
        {
            var participant = prepared[i];
            var index = participants.IndexOf(participant);
            if (index < 0)
            {
                untrusted.Add((participant, "not among the transaction's participants"));
                continue;
            }

            if (security.SenderAuthentication == SenderAuthentication.Off)
            {
                trusted.Add(participant);
                continue;
            }

            var key = security.VoteProofKeys.TryGetValue(participant.Value ?? "", out var k) && !string.IsNullOrEmpty(k) ? k : null;
            var proof = i < proofs.Count ? proofs[i] : null;
            var workCount = index < workCounts.Count ? workCounts[index] : 0;
            if (key is null)
            {
                untrusted.Add((participant, "no vote proof key is configured for it (Security:VoteProofKeys)"));
            }
            else if (!VoteProof.Verify(key, proof, message.TransactionId, participant, coordinator, workCount))
            {
                untrusted.Add((participant, proof is null ? "the relayed vote carries no proof" : "the relayed vote's proof is not valid"));
            }
            else
            {
                trusted.Add(participant);
            }
        }

        return (trusted.ToImmutable(), untrusted);
    }

    [LoggerMessage(1600, LogLevel.Warning,
        "Coordinator {CoordinatorId}: sender authentication is off (Security:SenderAuthentication Off): anything that can publish on the broker's virtual host can forge protocol messages (votes, acknowledgements, termination decisions). See docs/security.md to turn BrokerUser on.")]
    private static partial void SenderAuthenticationOff(ILogger logger, string coordinatorId);

    [LoggerMessage(1602, LogLevel.Warning,
        "Transaction {TransactionId}: the relayed early-prepare vote of {Participant} is not trusted ({Why}): it is asked to prepare instead (or ignored when no participant).")]
    public static partial void RelayedVoteUntrusted(ILogger logger, TransactionId transactionId, string participant, string why);

    [LoggerMessage(1603, LogLevel.Warning,
        "Transaction {TransactionId}: refused {MessageType} from {Sender}: {Why}. Nothing was changed.")]
    public static partial void Refused(ILogger logger, TransactionId transactionId, string messageType, string sender, string why);
}
