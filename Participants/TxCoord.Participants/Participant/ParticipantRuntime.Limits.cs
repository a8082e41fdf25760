using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using TxCoord.Contracts;
using TxCoord.Participants.PostgreSql;

namespace TxCoord.Participants.Participant;

/// <summary>
/// The participant's bounds on what comes off the wire (issue 16): which coordinators it answers,
/// and the caps on peers, works and reasons. A protocol message is answered by a send to
/// <c>txcoord-coordinator-&lt;id&gt;</c>, and that send declares the queue: answering whatever
/// coordinator id a message names would let anyone on the vhost create queues at will.
/// </summary>
internal sealed partial class ParticipantRuntime
{
    /// <summary>At most this many coordinator ids are remembered as learned (beyond, each is looked up in the database again).</summary>
    internal const int MaxLearnedCoordinators = 1_000;

    private readonly ConcurrentDictionary<CoordinatorId, byte> _learnedCoordinators = new();

    /// <summary>A work message from <paramref name="coordinator"/> passed its checks: its Prepare, Commit and Abort will be answered.</summary>
    private void LearnCoordinator(CoordinatorId coordinator)
    {
        if (_options.Coordinators.Count == 0 && _learnedCoordinators.Count < MaxLearnedCoordinators)
        {
            _learnedCoordinators.TryAdd(coordinator, 0);
        }
    }

    /// <summary>
    /// True when a coordinator message naming <paramref name="coordinator"/> may be acted on and
    /// answered: the coordinator is configured (option Coordinators), or, with none configured, this
    /// participant got work from it since it started or holds a branch of it in its database (a
    /// prepared branch after a restart). Otherwise the message is logged and dropped: nothing is
    /// written (not even the fence of a Prepare that came before its work: a branch of an unknown
    /// coordinator that later gets work is never prepared by it anyway, and times out), and no queue
    /// is declared.
    /// </summary>
    private async Task<bool> KnowsCoordinatorAsync(CoordinatorId coordinator, TransactionId transactionId, string messageType, CancellationToken cancellationToken)
    {
        if (_options.Coordinators.Count > 0)
        {
            if (_options.Serves(coordinator))
            {
                return true;
            }
        }
        else
        {
            if (_learnedCoordinators.ContainsKey(coordinator))
            {
                return true;
            }

            if (await Store.GetStatusAsync(BranchGid.Create(coordinator, transactionId, Id), cancellationToken) != BranchStatus.Unknown)
            {
                LearnCoordinator(coordinator);
                return true;
            }
        }

        LimitsLog.UnknownCoordinator(_logger, transactionId, Id.Value, messageType, coordinator.Value);
        return false;
    }

    /// <summary>True when <paramref name="peers"/> stays within the cap; otherwise logs the refusal.</summary>
    private bool PeersWithinCap(IReadOnlyList<ParticipantId>? peers, TransactionId transactionId, string messageType)
    {
        var count = peers?.Count ?? 0;
        if (count <= _options.MaxParticipantsPerTransaction)
        {
            return true;
        }

        LimitsLog.TooManyPeers(_logger, transactionId, Id.Value, messageType, count, _options.MaxParticipantsPerTransaction);
        return false;
    }

    /// <summary>A reason from the wire, bounded and escaped for the log and the branch's records.</summary>
    private string? BoundReason(string? reason) => UntrustedText.Bound(reason, _options.MaxReasonLength);
}

/// <summary>The participant's log messages about bounded input. Event ids 2800-2849.</summary>
internal static partial class LimitsLog
{
    [LoggerMessage(2800, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} refused {MessageType} naming unknown coordinator {Coordinator} (not in option Coordinators, and no work or branch of it here); nothing changed, no answer sent")]
    public static partial void UnknownCoordinator(ILogger logger, TransactionId transactionId, string participant, string messageType, string coordinator);

    [LoggerMessage(2801, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} refused {MessageType} naming {Count} participants, more than its cap of {Max} (option MaxParticipantsPerTransaction); nothing changed")]
    public static partial void TooManyPeers(ILogger logger, TransactionId transactionId, string participant, string messageType, int count, int max);

    [LoggerMessage(2802, LogLevel.Warning, "A message no handler of queue {Queue} takes was moved to that queue's _skipped queue; its message types: {MessageTypes}")]
    public static partial void MessageSkipped(ILogger logger, string queue, string messageTypes);
}
