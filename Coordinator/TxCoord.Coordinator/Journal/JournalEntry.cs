using System.Collections.Immutable;
using TxCoord.Contracts;

namespace TxCoord.Coordinator.Journal;

/// <summary>The state of a transaction row in the journal. A transaction without a row is aborted (presumed abort).</summary>
internal enum JournalState
{
    /// <summary>3PC: PreCommit is durable (every participant voted Yes), no commit decision yet; the participants' termination may decide either way.</summary>
    PreCommitting,

    /// <summary>The commit decision is durable; phase 2 is not known to be finished.</summary>
    Committing,

    /// <summary>Every participant acknowledged its commit (or none needed one).</summary>
    Committed,

    /// <summary>Aborted, recorded unforced (its absence means the same).</summary>
    Aborted,
}

/// <summary>One row of <c>txcoord.transactions</c>.</summary>
/// <param name="Participants">For a commit: the participants that must commit (the Yes voters). For an abort: every participant named.</param>
/// <param name="Acknowledged">The participants known to have committed.</param>
internal sealed record JournalEntry(
    TransactionId TransactionId,
    CoordinatorId CoordinatorId,
    CommitProtocol Protocol,
    JournalState State,
    ImmutableArray<ParticipantId> Participants,
    ImmutableArray<ParticipantId> Acknowledged,
    string? Reason,
    DateTimeOffset CreatedAt,
    DateTimeOffset? DecidedAt,
    DateTimeOffset? EndedAt)
{
    /// <summary>True when the journal says the transaction decided commit (whether or not phase 2 finished).</summary>
    public bool IsCommit => State is JournalState.Committing or JournalState.Committed;
}

/// <summary>A commit decision, as forced to the journal and later closed.</summary>
/// <param name="Participants">The participants that must commit: the Yes voters (ReadOnly voters need no phase 2).</param>
internal sealed record CommitDecision(
    TransactionId TransactionId,
    CoordinatorId CoordinatorId,
    CommitProtocol Protocol,
    ImmutableArray<ParticipantId> Participants,
    DateTimeOffset CreatedAt,
    DateTimeOffset DecidedAt);

/// <summary>An abort, as recorded (unforced) in the journal.</summary>
internal sealed record AbortRecord(
    TransactionId TransactionId,
    CoordinatorId CoordinatorId,
    CommitProtocol Protocol,
    ImmutableArray<ParticipantId> Participants,
    string Reason,
    DateTimeOffset CreatedAt,
    bool AfterPreCommit = false,
    bool Forced = false);
