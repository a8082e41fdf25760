using TxCoord.Contracts;

namespace TxCoord.Coordinator.Recovery;

/// <summary>What the journal says about the transaction of one prepared GID.</summary>
internal enum JournalVerdict
{
    /// <summary>The journal decided commit (state committing or committed).</summary>
    Commit,

    /// <summary>The journal recorded an abort.</summary>
    Aborted,

    /// <summary>No row and no history: never decided commit (presumed abort, once nothing can still decide it).</summary>
    None,

    /// <summary>3PC: PreCommit is durable but no commit decision; the participants' termination protocol decides.</summary>
    PreCommit,

    /// <summary>The row and its history disagree (or the row is missing while the history shows a commit decision): refuse to guess.</summary>
    Inconsistent,

    /// <summary>A TxCoord GID of another coordinator: not this tool's to judge.</summary>
    OtherCoordinator,

    /// <summary>Not a GID TxCoord made.</summary>
    UnknownGid,
}

/// <summary>What recovery does with one prepared transaction.</summary>
internal enum RecoveryAction
{
    Commit,
    Abort,
    Leave,
}

/// <summary>One prepared transaction as found in a participant's database.</summary>
/// <param name="Participant">The configured participant whose database holds it.</param>
/// <param name="Branch">The parsed GID, or null when TxCoord did not make it.</param>
/// <param name="Owner">The role that prepared it: only it (or a superuser) may finish it.</param>
/// <param name="Locks">How many locks it holds.</param>
/// <param name="Relations">The relations it holds locks on, with the lock mode; null when not read.</param>
/// <param name="Waiters">Sessions waiting for it right now.</param>
internal sealed record PreparedTransaction(
    ParticipantId Participant,
    string Database,
    string Gid,
    BranchGid? Branch,
    DateTimeOffset PreparedAt,
    string Owner,
    long Locks,
    string? Relations,
    int Waiters);

/// <summary>One line of the plan: a prepared transaction, what the journal says, and what to do.</summary>
internal sealed record RecoveryStep(PreparedTransaction Prepared, JournalVerdict Verdict, RecoveryAction Action, string Why);

/// <summary>What the journal holds for one transaction, as recovery reads it.</summary>
/// <param name="State">The row's state; null when there is no row (only history).</param>
/// <param name="HasCommitEvent">The history holds a 'commit-decided' event.</param>
internal sealed record JournalDecision(TransactionId TransactionId, string? State, bool HasCommitEvent);

/// <summary>A commit decision whose participants hold nothing prepared any more in the configured databases.</summary>
/// <param name="Unacknowledged">Participants the journal still waits for.</param>
/// <param name="NotConfigured">Of those, the ones whose database is not configured (so not looked at).</param>
internal sealed record DecidedNotPrepared(TransactionId TransactionId, DateTimeOffset? DecidedAt, IReadOnlyList<ParticipantId> Unacknowledged, IReadOnlyList<ParticipantId> NotConfigured);
