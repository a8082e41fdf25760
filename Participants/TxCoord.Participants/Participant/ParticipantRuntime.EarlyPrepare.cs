using MassTransit;
using Microsoft.Extensions.Logging;
using TxCoord.Contracts;

namespace TxCoord.Participants.Participant;

/// <summary>
/// Early prepare: a work message that carries <see cref="TxCoordHeaders.Prepare"/> has its branch
/// prepared right after the work, under the same branch lock and through the same
/// <see cref="PrepareAsync"/> as a <see cref="PrepareBranch"/> (state row with the peers, commit
/// marker and PREPARE TRANSACTION, fences). The answer's <see cref="WorkCompleted.Prepared"/> is
/// the Yes vote the initiator relays to the coordinator. Log event ids 2500-2509.
/// </summary>
internal sealed partial class ParticipantRuntime
{
    /// <summary>
    /// Reads the early-prepare headers of a work message. True with <paramref name="prepare"/> null
    /// for plain work; true with the <see cref="PrepareBranch"/> this work stands for when early
    /// prepare is asked; false with the reason when it is asked wrongly (the work is then refused).
    /// </summary>
    private bool TryReadEarlyPrepare<TMessage>(
        ConsumeContext<TMessage> context, CoordinatorId coordinator, TransactionId transactionId, out PrepareBranch? prepare, out string error)
        where TMessage : class
    {
        prepare = null;
        error = "";
        if (context.Headers.Get<bool>(TxCoordHeaders.Prepare, default(bool?)) != true)
        {
            return true;
        }

        var protocolText = context.Headers.Get<string>(TxCoordHeaders.Protocol);
        if (!Enum.TryParse<CommitProtocol>(protocolText, ignoreCase: false, out var protocol) || !Enum.IsDefined(protocol))
        {
            error = $"early prepare: the work message has no valid {TxCoordHeaders.Protocol} header (was '{protocolText}')";
            return false;
        }

        if (protocol != CommitProtocol.TwoPhase)
        {
            error = $"early prepare is for 2PC only; the work message asks it for {protocol}";
            return false;
        }

        var participantsText = context.Headers.Get<string>(TxCoordHeaders.Participants) ?? "";
        var participants = participantsText.Split(',').Select(p => p.Trim()).ToList();
        if (participants.Count > _options.MaxParticipantsPerTransaction)
        {
            error = $"early prepare: the {TxCoordHeaders.Participants} header names {participants.Count} participants, more than participant {Id} takes ({_options.MaxParticipantsPerTransaction}, option MaxParticipantsPerTransaction)";
            return false;
        }

        if (participants.Exists(p => !BranchGid.IsValidName(p)))
        {
            error = $"early prepare: the {TxCoordHeaders.Participants} header must list valid participant ids separated by commas (was '{UntrustedText.Bound(participantsText, 200)}')";
            return false;
        }

        var ids = participants.Distinct(StringComparer.Ordinal).Select(p => new ParticipantId(p)).ToList();
        if (!ids.Contains(Id))
        {
            error = $"early prepare: the {TxCoordHeaders.Participants} header ('{UntrustedText.Bound(participantsText, 200)}') does not name this participant ({Id})";
            return false;
        }

        prepare = new PrepareBranch
        {
            TransactionId = transactionId,
            Coordinator = coordinator,
            Participant = Id,
            Protocol = CommitProtocol.TwoPhase,
            Participants = ids,
        };
        return true;
    }

    /// <summary>
    /// Prepares a branch whose work just succeeded, under its lock. Returns null when it is
    /// prepared (a Yes vote), otherwise the refusal (the branch has rolled back, as after a No vote).
    /// </summary>
    private async Task<string?> PrepareEarlyAsync(Branch branch, PrepareBranch prepare)
    {
        // Not cancelled half-way: a delivery given up between the state row and PREPARE (or with
        // PREPARE done on the server but not seen here) would leave a branch that is neither
        // working nor known prepared. PREPARE is short; the commands' own timeouts still apply.
        var (vote, reason) = await PrepareAsync(branch, prepare, CancellationToken.None, mayVoteReadOnly: false);
        LogPreparedEarly(_logger, prepare.TransactionId, Id.Value, vote, reason ?? "");
        return vote == Vote.Yes ? null : $"the work succeeded but the branch could not prepare: {reason}";
    }

    [LoggerMessage(2500, LogLevel.Debug, "Transaction {TransactionId}: participant {Participant} prepared early, right after its work: votes {Vote} {Reason}")]
    private static partial void LogPreparedEarly(ILogger logger, TransactionId transactionId, string participant, Vote vote, string reason);
}
