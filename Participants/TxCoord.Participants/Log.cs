using Microsoft.Extensions.Logging;
using TxCoord.Contracts;
using TxCoord.Participants.PostgreSql;

namespace TxCoord.Participants;

/// <summary>The SDK's log messages. Event ids are stable: 2000-2099 participant, 2100-2199 initiator.</summary>
internal static partial class Log
{
    [LoggerMessage(2000, LogLevel.Debug, "Transaction {TransactionId}: participant {Participant} started branch {Gid}")]
    public static partial void BranchStarted(ILogger logger, TransactionId transactionId, string participant, string gid);

    [LoggerMessage(2001, LogLevel.Information, "Transaction {TransactionId}: participant {Participant} refused the work: {Reason}")]
    public static partial void WorkRefused(ILogger logger, TransactionId transactionId, string participant, string reason);

    [LoggerMessage(2002, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant}: the work handler threw")]
    public static partial void WorkHandlerFailed(ILogger logger, Exception exception, TransactionId transactionId, string participant);

    [LoggerMessage(2003, LogLevel.Warning, "Participant {Participant} rejected a {MessageType} work message: {Reason}")]
    public static partial void WorkRejected(ILogger logger, string participant, string messageType, string reason);

    [LoggerMessage(2004, LogLevel.Debug, "Transaction {TransactionId}: participant {Participant} voted {Vote} {Reason}")]
    public static partial void Voted(ILogger logger, TransactionId transactionId, string participant, Vote vote, string reason);

    [LoggerMessage(2005, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} could not prepare and votes No: {Reason}")]
    public static partial void PrepareFailed(ILogger logger, Exception exception, TransactionId transactionId, string participant, string reason);

    [LoggerMessage(2006, LogLevel.Debug, "Transaction {TransactionId}: participant {Participant} committed")]
    public static partial void Committed(ILogger logger, TransactionId transactionId, string participant);

    [LoggerMessage(2007, LogLevel.Debug, "Transaction {TransactionId}: participant {Participant} rolled back: {Reason}")]
    public static partial void Aborted(ILogger logger, TransactionId transactionId, string participant, string reason);

    [LoggerMessage(2008, LogLevel.Error, "Transaction {TransactionId}: participant {Participant} was told to commit a branch that never prepared; ignored")]
    public static partial void CommitForUnpreparedBranch(ILogger logger, TransactionId transactionId, string participant);

    [LoggerMessage(2009, LogLevel.Critical, "Transaction {TransactionId}: participant {Participant} was told to commit, but its branch is {Status}, not prepared: heuristic hazard, needs an operator")]
    public static partial void CommitImpossible(ILogger logger, TransactionId transactionId, string participant, BranchStatus status);

    [LoggerMessage(2010, LogLevel.Critical, "Transaction {TransactionId}: participant {Participant} was told to abort a branch that already committed: heuristic hazard, needs an operator")]
    public static partial void AbortAfterCommit(ILogger logger, TransactionId transactionId, string participant);

    [LoggerMessage(2011, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} rolled back its branch after its timeout (initiator or coordinator gone)")]
    public static partial void BranchTimedOut(ILogger logger, TransactionId transactionId, string participant);

    [LoggerMessage(2012, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} is blocked: prepared for {Age} and coordinator {Coordinator} does not answer; the branch stays prepared")]
    public static partial void Blocked(ILogger logger, TransactionId transactionId, string participant, string coordinator, TimeSpan age);

    [LoggerMessage(2013, LogLevel.Debug, "Transaction {TransactionId}: participant {Participant} prepared for {Age}, coordinator has not decided yet")]
    public static partial void StillPending(ILogger logger, TransactionId transactionId, string participant, TimeSpan age);

    [LoggerMessage(2014, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} could not roll back its open transaction")]
    public static partial void RollbackFailed(ILogger logger, Exception exception, TransactionId transactionId, string participant);

    [LoggerMessage(2015, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} got a message addressed to {Addressee}; ignored")]
    public static partial void MisaddressedMessage(ILogger logger, TransactionId transactionId, string participant, string addressee);

    [LoggerMessage(2016, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} got a message with an invalid coordinator id; ignored")]
    public static partial void InvalidCoordinatorId(ILogger logger, TransactionId transactionId, string participant);

    [LoggerMessage(2017, LogLevel.Error, "Participant {Participant}: background resolution failed; retrying")]
    public static partial void BackgroundPassFailed(ILogger logger, Exception exception, string participant);

    [LoggerMessage(2018, LogLevel.Information, "Participant {Participant} ready on queue {Queue}")]
    public static partial void ParticipantReady(ILogger logger, string participant, string queue);

    [LoggerMessage(2019, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} received work {Sequence} again; it already ran in the branch and is not run twice")]
    public static partial void DuplicateWork(ILogger logger, TransactionId transactionId, string participant, int sequence);

    // 2200-2249: crash recovery (resolution of prepared branches after a crash).

    [LoggerMessage(2200, LogLevel.Information, "Transaction {TransactionId}: participant {Participant} leaves prepared branch {Gid} alone: it belongs to coordinator {Coordinator}, which this participant does not serve (option Coordinators)")]
    public static partial void NotServedLeftAlone(ILogger logger, TransactionId transactionId, string participant, string gid, string coordinator);

    [LoggerMessage(2201, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} will ask coordinator {Coordinator} again in {RetryIn}; its prepared branches wait meanwhile")]
    public static partial void CoordinatorBackoff(ILogger logger, TransactionId transactionId, string participant, string coordinator, TimeSpan retryIn);

    [LoggerMessage(2100, LogLevel.Information, "Transaction {TransactionId}: work at {Participant} failed: {Reason}")]
    public static partial void InitiatorWorkFailed(ILogger logger, TransactionId transactionId, string participant, string reason);

    [LoggerMessage(2101, LogLevel.Warning, "Transaction {TransactionId}: no decision from coordinator {Coordinator} within {Timeout}: the outcome is in doubt")]
    public static partial void InitiatorInDoubt(ILogger logger, TransactionId transactionId, string coordinator, TimeSpan timeout);

    [LoggerMessage(2102, LogLevel.Debug, "Transaction {TransactionId}: {Outcome} {Reason}")]
    public static partial void InitiatorCompleted(ILogger logger, TransactionId transactionId, CommitOutcome outcome, string reason);

    [LoggerMessage(2600, LogLevel.Debug, "Transaction {TransactionId}: participant {Participant} wrote nothing: voted ReadOnly, branch finished without preparing")]
    public static partial void FinishedReadOnly(ILogger logger, TransactionId transactionId, string participant);

    [LoggerMessage(2601, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant}'s work handlers said read-only (WorkResult.SuccessReadOnly) but the branch wrote: it prepares as usual; fix the handler")]
    public static partial void ReadOnlyClaimWrote(ILogger logger, TransactionId transactionId, string participant);
}
