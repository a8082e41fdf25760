using System.Collections.Immutable;
using TxCoord.Contracts;

namespace TxCoord.Coordinator.Engine;

/// <summary>Something that happened to a transaction: a message, a journal result or the passing of time.</summary>
internal abstract record TransactionEvent;

/// <summary>
/// The initiator asks to commit. Starts a transaction; for a transaction already known it is a
/// duplicate (answered with the outcome once there is one).
/// </summary>
/// <param name="Deadline">When the transaction must be decided by; null for the configured default.</param>
/// <param name="Prepared">
/// Early prepare (2PC): participants whose Yes vote the initiator relays (their branch prepared
/// right after its work); they get no PrepareBranch. Default or empty: none.
/// </param>
/// <param name="WorkCounts">
/// How many works the initiator sent each of <see cref="Participants"/>, in that order. Default,
/// empty or of another length (an initiator that does not count): not passed on.
/// </param>
internal sealed record CommitRequested(
    ImmutableArray<ParticipantId> Participants, DateTimeOffset? Deadline, ImmutableArray<ParticipantId> Prepared = default,
    ImmutableArray<int> WorkCounts = default) : TransactionEvent
{
    /// <summary>The work count of each participant that has one (at least 1); empty when the initiator did not count.</summary>
    public ImmutableDictionary<ParticipantId, int> WorkCountsByParticipant =>
        WorkCounts.IsDefault || WorkCounts.Length != Participants.Length
            ? ImmutableDictionary<ParticipantId, int>.Empty
            : Participants.Zip(WorkCounts).Where(x => x.Second > 0).DistinctBy(x => x.First).ToImmutableDictionary(x => x.First, x => x.Second);

    /// <summary><see cref="Prepared"/> without duplicates, never default.</summary>
    public ImmutableArray<ParticipantId> PreparedOrEmpty => Prepared.IsDefault ? [] : [.. Prepared.Distinct()];
}

/// <summary>The initiator asks to abort.</summary>
internal sealed record RollbackRequested(string? Reason) : TransactionEvent;

internal sealed record VoteReceived(ParticipantId Participant, Vote Vote, string? Reason) : TransactionEvent;

internal sealed record CommitAcknowledged(ParticipantId Participant) : TransactionEvent;

internal sealed record AbortAcknowledged(ParticipantId Participant) : TransactionEvent;

/// <summary>The journal confirmed that the commit decision is durable.</summary>
internal sealed record DecisionDurable : TransactionEvent;

/// <summary>
/// The commit decision write failed or its outcome is unknown (a timeout, a lost connection).
/// It may have been durable all the same, so this never aborts: the write is retried.
/// </summary>
internal sealed record DecisionWriteFailed(string Error) : TransactionEvent;

/// <summary>The journal holds the abort row (this write put it there, or an earlier one did).</summary>
internal sealed record AbortRecorded : TransactionEvent;

/// <summary>The abort row write failed or its outcome is unknown: it is retried, and nothing is told meanwhile.</summary>
internal sealed record AbortWriteFailed(string Error) : TransactionEvent;

/// <summary>
/// The abort row could not be written because the journal already holds a commit decision (or a
/// 3PC PreCommit) for the transaction, written by an earlier incarnation of this coordinator: the
/// transaction resumes from that row instead of aborting.
/// </summary>
internal sealed record JournalHoldsDecision(Recovered Row) : TransactionEvent;

/// <summary>
/// The commit decision (or 3PC PreCommit) was refused: the journal already holds the transaction
/// as aborted, so no commit decision exists and it can only abort.
/// </summary>
internal sealed record DecisionRefused(string Error) : TransactionEvent;

/// <summary>Time passed: deadlines and re-drives are checked against the <c>now</c> given with it.</summary>
internal sealed record Tick : TransactionEvent;

/// <summary>
/// A journal row in state 'committing' found at start: the commit decision is durable, phase 2
/// must be finished. Starts a transaction directly in <see cref="TransactionPhase.Committing"/>.
/// </summary>
/// <param name="Participants">The participants that must commit (the Yes voters).</param>
/// <param name="Acknowledged">Those already known to have committed.</param>
/// <param name="Phase">
/// Where to resume: <see cref="TransactionPhase.Committing"/> for a durable commit decision,
/// <see cref="TransactionPhase.PreCommitting"/> for a durable 3PC PreCommit without one.
/// </param>
internal sealed record Recovered(
    CommitProtocol Protocol,
    ImmutableArray<ParticipantId> Participants,
    ImmutableArray<ParticipantId> Acknowledged,
    DateTimeOffset CreatedAt,
    DateTimeOffset DecidedAt,
    TransactionPhase Phase = TransactionPhase.Committing) : TransactionEvent;

/// <summary>3PC: a participant recorded PreCommitted.</summary>
internal sealed record PreCommitAcknowledged(ParticipantId Participant) : TransactionEvent;

/// <summary>3PC: the journal confirmed that the PreCommit record is durable.</summary>
internal sealed record PreCommitDurable : TransactionEvent;

/// <summary>3PC: the PreCommit write failed or its outcome is unknown; it is retried, never abandoned for an abort.</summary>
internal sealed record PreCommitWriteFailed(string Error) : TransactionEvent;

/// <summary>
/// 3PC: the participants' termination protocol decided <paramref name="Outcome"/> in round
/// <paramref name="Round"/> (led by <paramref name="Leader"/>) while this coordinator was away or slow.
/// The coordinator adopts it.
/// </summary>
internal sealed record TerminationDecisionReceived(ParticipantId Leader, int Round, TransactionOutcome Outcome) : TransactionEvent;
