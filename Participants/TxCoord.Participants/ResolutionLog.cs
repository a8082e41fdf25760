using Microsoft.Extensions.Logging;
using TxCoord.Contracts;

namespace TxCoord.Participants;

/// <summary>
/// The SDK's log messages for the participant's background resolution (2710-2719) and for the
/// initiator's faults (2110-2119).
/// </summary>
internal static partial class Log
{
    [LoggerMessage(2710, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant}: the work handler still ran at the branch's deadline and was cancelled; the branch rolls back")]
    public static partial void WorkCancelledAtDeadline(ILogger logger, TransactionId transactionId, string participant);

    [LoggerMessage(2711, LogLevel.Error, "Transaction {TransactionId}: participant {Participant} could not resolve its prepared branch (it stays prepared); retrying it in {RetryIn}, the other branches go on")]
    public static partial void BranchResolutionFailed(ILogger logger, Exception exception, TransactionId transactionId, string participant, TimeSpan retryIn);

    [LoggerMessage(2110, LogLevel.Warning, "Transaction {TransactionId}: the coordinator gave no answer: {Reason}")]
    public static partial void InitiatorFaultInDoubt(ILogger logger, Exception exception, TransactionId transactionId, string reason);
}
