using Microsoft.Extensions.Logging;
using TxCoord.Contracts;

namespace TxCoord.Participants;

/// <summary>The SDK's log messages for 3PC and for termination without the coordinator. Event ids 2300-2349.</summary>
internal static partial class Log
{
    [LoggerMessage(2300, LogLevel.Debug, "Transaction {TransactionId}: participant {Participant} recorded PreCommitted")]
    public static partial void PreCommitted(ILogger logger, TransactionId transactionId, string participant);

    [LoggerMessage(2301, LogLevel.Information, "Transaction {TransactionId}: participant {Participant} refused the coordinator's PreCommit: it joined termination round {Round}")]
    public static partial void PreCommitRefused(ILogger logger, TransactionId transactionId, string participant, int round);

    [LoggerMessage(2302, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} got PreCommit for a branch that is not prepared; ignored")]
    public static partial void PreCommitForUnpreparedBranch(ILogger logger, TransactionId transactionId, string participant);

    [LoggerMessage(2303, LogLevel.Information, "Transaction {TransactionId}: participant {Participant} joined termination round {Round} led by {Leader}, as {State}")]
    public static partial void JoinedRound(ILogger logger, TransactionId transactionId, string participant, int round, string leader, BranchState state);

    [LoggerMessage(2304, LogLevel.Information, "Transaction {TransactionId}: participant {Participant} refused round {Round} of {Leader}: it joined round {LastElected}")]
    public static partial void RoundRefused(ILogger logger, TransactionId transactionId, string participant, int round, string leader, int lastElected);

    [LoggerMessage(2305, LogLevel.Information, "Transaction {TransactionId}: participant {Participant} accepted round {Round} of {Leader}: now {State}")]
    public static partial void ProposalAccepted(ILogger logger, TransactionId transactionId, string participant, int round, string leader, BranchState state);

    [LoggerMessage(2306, LogLevel.Information, "Transaction {TransactionId}: participant {Participant} finishes {Outcome} as termination round {Round} (leader {Leader}) decided")]
    public static partial void FinishingAsDecided(ILogger logger, TransactionId transactionId, string participant, TransactionOutcome outcome, int round, string leader);

    [LoggerMessage(2307, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} had not voted Yes when {Asker} asked during termination: its branch is rolled back and fenced")]
    public static partial void Fenced(ILogger logger, TransactionId transactionId, string participant, string asker);

    [LoggerMessage(2308, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} ignored a termination message from '{From}' for round {Round}: invalid")]
    public static partial void InvalidTerminationMessage(ILogger logger, TransactionId transactionId, string participant, string from, int round);

    [LoggerMessage(2309, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} is blocked (2PC): the coordinator does not answer and none of the {Answered} peers that answered (of {Peers}) knows the outcome; the branch stays prepared")]
    public static partial void CooperativeTerminationBlocked(ILogger logger, TransactionId transactionId, string participant, int answered, int peers);

    [LoggerMessage(2310, LogLevel.Information, "Transaction {TransactionId}: participant {Participant} learned from peer {Peer} that its branch is {State}, without the coordinator")]
    public static partial void LearnedFromPeer(ILogger logger, TransactionId transactionId, string participant, BranchState state, string peer);

    [LoggerMessage(2311, LogLevel.Error, "Transaction {TransactionId}: participant {Participant} is not in its own branch's list of participants; it cannot take part in termination")]
    public static partial void NotAmongParticipants(ILogger logger, TransactionId transactionId, string participant);

    [LoggerMessage(2312, LogLevel.Information, "Transaction {TransactionId}: participant {Participant} leads termination round {Round} ({Participants} participants, majority {Quorum})")]
    public static partial void RoundStarted(ILogger logger, TransactionId transactionId, string participant, int round, int participants, int quorum);

    [LoggerMessage(2313, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant}: termination round {Round} reached {Count} participants, fewer than the majority {Quorum} of {Participants}; nothing decided, the branch stays prepared (blocked)")]
    public static partial void NoQuorum(ILogger logger, TransactionId transactionId, string participant, int round, int count, int quorum, int participants);

    [LoggerMessage(2314, LogLevel.Information, "Transaction {TransactionId}: participant {Participant}: round {Round} proposes {Outcome} ({PreCommitted} of {Joined} joined participants PreCommitted)")]
    public static partial void Proposing(ILogger logger, TransactionId transactionId, string participant, int round, TransactionOutcome outcome, int preCommitted, int joined);

    [LoggerMessage(2315, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant}: termination round {Round} decided {Outcome} without the coordinator ({Why})")]
    public static partial void TerminationDecided(ILogger logger, TransactionId transactionId, string participant, int round, TransactionOutcome outcome, string why);

    [LoggerMessage(2316, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} could not send the termination decision to {Address}")]
    public static partial void DecisionNotSent(ILogger logger, Exception exception, TransactionId transactionId, string participant, Uri address);
}
