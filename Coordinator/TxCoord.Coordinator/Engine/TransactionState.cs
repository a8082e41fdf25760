using System.Collections.Immutable;
using TxCoord.Contracts;

namespace TxCoord.Coordinator.Engine;

/// <summary>
/// The coordinator's immutable view of one transaction. The engine turns a state and an event
/// into a new state and a list of effects; nothing here does I/O.
/// </summary>
internal sealed record TransactionState
{
    public required TransactionId TransactionId { get; init; }

    public required CommitProtocol Protocol { get; init; }

    public required TransactionPhase Phase { get; init; }

    /// <summary>Every participant the initiator named, without duplicates, in the order named.</summary>
    public required ImmutableArray<ParticipantId> Participants { get; init; }

    /// <summary>How many works the initiator sent each participant; a participant missing here is not checked.</summary>
    public ImmutableDictionary<ParticipantId, int> WorkCounts { get; init; } = ImmutableDictionary<ParticipantId, int>.Empty;

    /// <summary>The prepare to send to <paramref name="participant"/>, with its work count.</summary>
    public SendPrepare PrepareFor(ParticipantId participant) => new(participant, WorkCounts.GetValueOrDefault(participant));

    /// <summary>The first vote of each participant that voted. Later votes from the same participant are ignored.</summary>
    public ImmutableDictionary<ParticipantId, Vote> Votes { get; init; } = ImmutableDictionary<ParticipantId, Vote>.Empty;

    /// <summary>Yes voters that acknowledged their commit.</summary>
    public ImmutableHashSet<ParticipantId> CommitAcknowledged { get; init; } = [];

    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>Past it, a transaction still preparing aborts with "vote timeout".</summary>
    public DateTimeOffset VoteDeadline { get; init; }

    /// <summary>Past it, a transaction still preparing aborts with "transaction deadline".</summary>
    public DateTimeOffset TransactionDeadline { get; init; }

    /// <summary>When all votes were in and the commit decision was taken (before it was durable).</summary>
    public DateTimeOffset? DecidedAt { get; init; }

    public DateTimeOffset? EndedAt { get; init; }

    /// <summary>Why the transaction aborted (or, once committed, why a late rollback was refused).</summary>
    public string? Reason { get; init; }

    /// <summary>
    /// The current back-off: between attempts of a failed decision write while
    /// <see cref="TransactionPhase.Deciding"/> (or abort write while <see cref="TransactionPhase.Aborting"/>),
    /// between re-drives of phase 2 while <see cref="TransactionPhase.Committing"/>.
    /// </summary>
    public TimeSpan RetryInterval { get; init; }

    /// <summary>
    /// When the next decision-write attempt or phase-2 re-drive is due. Null while a decision
    /// write is in flight (a retry is scheduled only once the write is known to have failed).
    /// </summary>
    public DateTimeOffset? RetryAt { get; init; }

    /// <summary>How many times the commit decision was handed to the journal.</summary>
    public int DecisionWriteAttempts { get; init; }

    /// <summary>How many times phase 2 was re-driven after the first round of CommitBranch.</summary>
    public int Redrives { get; init; }

    /// <summary>3PC: the participants that acknowledged PreCommit.</summary>
    public ImmutableHashSet<ParticipantId> PreCommitAcknowledged { get; init; } = [];

    /// <summary>3PC: how many times the PreCommit record was handed to the journal.</summary>
    public int PreCommitWriteAttempts { get; init; }

    /// <summary>
    /// 3PC: the participants' termination round whose decision this coordinator adopted (it learned
    /// the outcome from the participants instead of deciding it); null when it decided itself.
    /// </summary>
    public int? TerminationRound { get; init; }

    /// <summary>While <see cref="TransactionPhase.Aborting"/>: the abort must replace a 3PC PreCommit row.</summary>
    public bool AbortReplacesPreCommit { get; init; }

    /// <summary>How many times the abort row was handed to the journal.</summary>
    public int AbortWriteAttempts { get; init; }

    /// <summary>3PC: how many PreCommit acknowledgements commit needs: a majority of all participants.</summary>
    public int PreCommitQuorum => Participants.Length / 2 + 1;

    /// <summary>3PC: participants that have not acknowledged PreCommit yet.</summary>
    public IEnumerable<ParticipantId> UnacknowledgedPreCommit => YesVoters.Where(p => !PreCommitAcknowledged.Contains(p));

    public bool IsTerminal => Phase is TransactionPhase.Committed or TransactionPhase.Aborted;

    /// <summary>The participants that voted Yes: they hold a prepared branch and need phase 2.</summary>
    public IEnumerable<ParticipantId> YesVoters => Participants.Where(p => Votes.TryGetValue(p, out var v) && v == Vote.Yes);

    /// <summary>Yes voters that have not acknowledged their commit yet.</summary>
    public IEnumerable<ParticipantId> UnacknowledgedYesVoters => YesVoters.Where(p => !CommitAcknowledged.Contains(p));

    /// <summary>Participants that have not voted yet.</summary>
    public IEnumerable<ParticipantId> NotVoted => Participants.Where(p => !Votes.ContainsKey(p));

    /// <summary>The earliest moment a <see cref="Tick"/> can change this state; null when no tick is needed.</summary>
    public DateTimeOffset? NextDeadline => Phase switch
    {
        TransactionPhase.Preparing => VoteDeadline < TransactionDeadline ? VoteDeadline : TransactionDeadline,
        TransactionPhase.Deciding or TransactionPhase.Committing or TransactionPhase.ForcingPreCommit or TransactionPhase.PreCommitting
            or TransactionPhase.Aborting => RetryAt,
        _ => null,
    };
}
