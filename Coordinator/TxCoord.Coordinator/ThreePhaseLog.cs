using Microsoft.Extensions.Logging;
using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;

namespace TxCoord.Coordinator;

/// <summary>The coordinator's three-phase-commit log messages. Event ids 1400-1449.</summary>
internal static partial class Log
{
    [LoggerMessage(1400, LogLevel.Debug, "Transaction {TransactionId}: PreCommit durable (attempt {Attempt})")]
    public static partial void PreCommitDurable(ILogger logger, TransactionId transactionId, int attempt);

    [LoggerMessage(1401, LogLevel.Warning, "Transaction {TransactionId}: writing the PreCommit record failed (attempt {Attempt}); its outcome is unknown, so the write will be retried, never abandoned")]
    public static partial void PreCommitWriteFailed(ILogger logger, Exception exception, TransactionId transactionId, int attempt);

    [LoggerMessage(1402, LogLevel.Information, "Transaction {TransactionId}: recovered from the journal with PreCommit durable (3PC); re-sending PreCommit to {Participants}")]
    public static partial void RecoveredPreCommit(ILogger logger, TransactionId transactionId, string participants);

    [LoggerMessage(1403, LogLevel.Warning, "Transaction {TransactionId}: the participants' termination protocol decided {Outcome} (round {Round}, leader {Leader}) while this coordinator was {Phase}; adopting it")]
    public static partial void TerminationAdopted(ILogger logger, TransactionId transactionId, int round, string leader, TransactionOutcome outcome, TransactionPhase phase);

    [LoggerMessage(1404, LogLevel.Information, "Transaction {TransactionId}: the participants' termination decided {Outcome} (round {Round}, leader {Leader}), as the journal says")]
    public static partial void TerminationAgrees(ILogger logger, TransactionId transactionId, int round, string leader, TransactionOutcome outcome);

    [LoggerMessage(1405, LogLevel.Critical, "Transaction {TransactionId}: the participants' termination decided {Outcome} (round {Round}, leader {Leader}) but this coordinator holds it as {Phase}: heuristic hazard, needs an operator")]
    public static partial void TerminationContradicts(ILogger logger, TransactionId transactionId, int round, string leader, TransactionOutcome outcome, TransactionPhase? phase);

    [LoggerMessage(1406, LogLevel.Warning, "Transaction {TransactionId}: ignored a termination decision from '{Leader}' with outcome {Outcome}: not a 3PC decision this coordinator can take")]
    public static partial void TerminationDecisionInvalid(ILogger logger, TransactionId transactionId, string leader, TransactionOutcome outcome);
}
