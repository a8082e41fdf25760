using Microsoft.Extensions.Logging;
using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using TxCoord.Coordinator.Journal;

namespace TxCoord.Coordinator;

/// <summary>
/// The coordinator's log messages. Event ids are stable: 1000-1049 transaction life,
/// 1050-1099 unknown transactions and odd messages, 1100-1149 failures, 1150-1199 start,
/// recovery and stop, 1550-1599 bounded and hostile input.
/// </summary>
internal static partial class Log
{
    [LoggerMessage(1550, LogLevel.Warning, "A message no handler of queue {Queue} takes was moved to that queue's _skipped queue; its message types: {MessageTypes}")]
    public static partial void MessageSkipped(ILogger logger, string queue, string messageTypes);

    [LoggerMessage(1000, LogLevel.Debug, "Transaction {TransactionId}: commit requested ({Protocol}) with participants {Participants}")]
    public static partial void CommitRequested(ILogger logger, TransactionId transactionId, CommitProtocol protocol, string participants);

    [LoggerMessage(1010, LogLevel.Debug, "Transaction {TransactionId}: early prepare: the initiator relays the Yes votes of {Participants}, which are not asked to prepare")]
    public static partial void EarlyPreparedVotesRelayed(ILogger logger, TransactionId transactionId, string participants);

    [LoggerMessage(1001, LogLevel.Debug, "Transaction {TransactionId}: {Phase}")]
    public static partial void PhaseChanged(ILogger logger, TransactionId transactionId, TransactionPhase phase);

    [LoggerMessage(1002, LogLevel.Information, "Transaction {TransactionId} committed ({Protocol}); participants {Participants}")]
    public static partial void Committed(ILogger logger, TransactionId transactionId, CommitProtocol protocol, string participants);

    [LoggerMessage(1003, LogLevel.Information, "Transaction {TransactionId} aborted ({Protocol}): {Reason}")]
    public static partial void Aborted(ILogger logger, TransactionId transactionId, CommitProtocol protocol, string reason);

    [LoggerMessage(1004, LogLevel.Debug, "Transaction {TransactionId}: commit decision durable (attempt {Attempt})")]
    public static partial void DecisionDurable(ILogger logger, TransactionId transactionId, int attempt);

    [LoggerMessage(1005, LogLevel.Debug, "Transaction {TransactionId}: rollback requested: {Reason}")]
    public static partial void RollbackRequested(ILogger logger, TransactionId transactionId, string reason);

    [LoggerMessage(1006, LogLevel.Information, "Transaction {TransactionId}: re-driving commit (re-drive {Redrive}) to {Participants}")]
    public static partial void Redriving(ILogger logger, TransactionId transactionId, int redrive, string participants);

    [LoggerMessage(1007, LogLevel.Warning, "Transaction {TransactionId} is stuck committing: no acknowledgement from {Participants} after {Redrive} re-drives")]
    public static partial void StuckCommitting(ILogger logger, TransactionId transactionId, string participants, int redrive);

    [LoggerMessage(1008, LogLevel.Information, "Transaction {TransactionId}: recovered from the journal, committing; waiting for {Participants}")]
    public static partial void Recovered(ILogger logger, TransactionId transactionId, string participants);

    [LoggerMessage(1009, LogLevel.Debug, "Transaction {TransactionId}: outcome asked by {Asker}: {Outcome}")]
    public static partial void OutcomeAsked(ILogger logger, TransactionId transactionId, string asker, TransactionOutcome outcome);

    [LoggerMessage(1050, LogLevel.Information, "Transaction {TransactionId}: {Request} for a transaction already finished; the journal says {Outcome}")]
    public static partial void RequestForFinished(ILogger logger, TransactionId transactionId, string request, TransactionOutcome outcome);

    [LoggerMessage(1051, LogLevel.Information, "Transaction {TransactionId}: Yes vote from {Participant} for a transaction not in memory; the journal says {Outcome}, sending {MessageType}")]
    public static partial void VoteForUnknown(ILogger logger, TransactionId transactionId, string participant, TransactionOutcome outcome, string messageType);

    [LoggerMessage(1052, LogLevel.Debug, "Transaction {TransactionId}: {MessageType} from {Participant} for a transaction not in memory; ignored")]
    public static partial void IgnoredForUnknown(ILogger logger, TransactionId transactionId, string messageType, string participant);

    [LoggerMessage(1053, LogLevel.Warning, "Transaction {TransactionId}: vote from {Participant}, which is not one of its participants; ignored")]
    public static partial void StrayVote(ILogger logger, TransactionId transactionId, string participant);

    [LoggerMessage(1054, LogLevel.Critical, "Transaction {TransactionId}: participant {Participant} reports its branch aborted, but the transaction decided commit: heuristic hazard, needs an operator")]
    public static partial void AbortedAfterCommit(ILogger logger, TransactionId transactionId, string participant);

    [LoggerMessage(1055, LogLevel.Information, "Transaction {TransactionId}: outcome asked for a transaction nobody knows; Aborted by presumption, recorded so it can never commit")]
    public static partial void PresumedAbortRecorded(ILogger logger, TransactionId transactionId);

    [LoggerMessage(1100, LogLevel.Warning, "Transaction {TransactionId}: writing the commit decision failed (attempt {Attempt}); its outcome is unknown, so the write will be retried, never abandoned")]
    public static partial void DecisionWriteFailed(ILogger logger, Exception exception, TransactionId transactionId, int attempt);

    [LoggerMessage(1101, LogLevel.Warning, "Transaction {TransactionId}: could not send {MessageType} to participant {Participant}")]
    public static partial void SendFailed(ILogger logger, Exception exception, TransactionId transactionId, string messageType, string participant);

    [LoggerMessage(1102, LogLevel.Warning, "Transaction {TransactionId}: could not reply {Outcome} to {ResponseAddress}")]
    public static partial void ReplyFailed(ILogger logger, Exception exception, TransactionId transactionId, TransactionOutcome outcome, Uri responseAddress);

    [LoggerMessage(1103, LogLevel.Warning, "Transaction {TransactionId}: could not record {Step} in the journal (an unforced write: recovery covers its loss)")]
    public static partial void UnforcedWriteFailed(ILogger logger, Exception exception, TransactionId transactionId, string step);

    [LoggerMessage(1104, LogLevel.Error, "Transaction {TransactionId}: handling a timer tick failed")]
    public static partial void TickFailed(ILogger logger, Exception exception, TransactionId transactionId);

    [LoggerMessage(1105, LogLevel.Warning, "Transaction {TransactionId}: writing the abort row failed (attempt {Attempt}): {Error}; nobody is told 'aborted' until it is written, so it will be retried")]
    public static partial void AbortWriteFailed(ILogger logger, Exception? exception, TransactionId transactionId, int attempt, string error);

    [LoggerMessage(1107, LogLevel.Error, "Transaction {TransactionId}: the journal refused the decision: {Error}; no commit decision exists, so the transaction aborts")]
    public static partial void DecisionRefused(ILogger logger, TransactionId transactionId, string error);

    [LoggerMessage(1106, LogLevel.Warning, "Transaction {TransactionId}: not aborted: the journal already holds it as {JournalState}, written by an earlier run of this coordinator; finishing that instead")]
    public static partial void AbortFoundDecision(ILogger logger, TransactionId transactionId, JournalState journalState);

    [LoggerMessage(1150, LogLevel.Information, "Coordinator {CoordinatorId}: journal schema ready; listening on queue {Queue}")]
    public static partial void Started(ILogger logger, string coordinatorId, string queue);

    [LoggerMessage(1151, LogLevel.Information, "Coordinator {CoordinatorId}: recovery done, {Count} unfinished transactions resumed")]
    public static partial void RecoveryDone(ILogger logger, string coordinatorId, int count);

    [LoggerMessage(1152, LogLevel.Error, "Coordinator {CoordinatorId}: recovery from the journal failed after {Count} transactions; retrying in {Delay}")]
    public static partial void RecoveryFailed(ILogger logger, Exception exception, string coordinatorId, int count, TimeSpan delay);

    [LoggerMessage(1153, LogLevel.Information, "Coordinator {CoordinatorId}: stopping with {Count} transactions in memory")]
    public static partial void Stopping(ILogger logger, string coordinatorId, int count);

    [LoggerMessage(1154, LogLevel.Critical, "Coordinator {CoordinatorId}: the journal database could not be reached or its schema created at start; check the journal connection string and that the database is up")]
    public static partial void SchemaFailed(ILogger logger, Exception exception, string coordinatorId);
}
