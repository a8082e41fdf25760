namespace TxCoord.Contracts;

// The wire format. MassTransit names each message on the wire by namespace and type name
// (urn:message:TxCoord.Contracts:<TypeName>): never move or rename these types; add
// properties only, with defaults that old senders leave out. A test pins the names.

// ---- initiator -> coordinator -------------------------------------------------------

/// <summary>
/// Asks the coordinator to commit a transaction whose work is done. The initiator names
/// every participant that did work. Request/response: answered by <see cref="TransactionCompleted"/>.
/// </summary>
public sealed record CommitTransaction
{
    public required TransactionId TransactionId { get; init; }
    public required IReadOnlyList<ParticipantId> Participants { get; init; }
    public CommitProtocol Protocol { get; init; } = CommitProtocol.TwoPhase;

    /// <summary>When the whole transaction must be decided by; past it, the coordinator aborts.</summary>
    public DateTimeOffset Deadline { get; init; }

    /// <summary>
    /// Early prepare (2PC only): the participants, among <see cref="Participants"/>, whose
    /// <see cref="WorkCompleted"/> said their branch prepared right after the work. The initiator
    /// relays their Yes votes: the coordinator sends them no <see cref="PrepareBranch"/>. Empty
    /// (the default): every participant is asked to prepare.
    /// </summary>
    public IReadOnlyList<ParticipantId> Prepared { get; init; } = [];

    /// <summary>
    /// How many work messages the initiator sent each participant, in the order of
    /// <see cref="Participants"/> (each work carried its number in <see cref="TxCoordHeaders.WorkSequence"/>).
    /// The coordinator passes each count on in <see cref="PrepareBranch.WorkCount"/>, so that a
    /// branch that lost works in a restart of its participant votes No instead of committing half
    /// the work. Empty (the default, and from initiators that do not count): no participant checks.
    /// </summary>
    public IReadOnlyList<int> WorkCounts { get; init; } = [];

    /// <summary>
    /// Early prepare: the proof each relayed vote carried (<see cref="WorkCompleted.PreparedProof"/>),
    /// in the order of <see cref="Prepared"/> (null where a participant gave none). With sender
    /// authentication on, the coordinator trusts a relayed vote only with a valid proof and otherwise
    /// asks that participant to prepare. Empty (the default, and from older initiators): no proofs.
    /// </summary>
    public IReadOnlyList<string?> PreparedProofs { get; init; } = [];
}

/// <summary>Asks the coordinator to abort a transaction. Answered by <see cref="TransactionCompleted"/>.</summary>
public sealed record RollbackTransaction
{
    public required TransactionId TransactionId { get; init; }
    public required IReadOnlyList<ParticipantId> Participants { get; init; }
    public string? Reason { get; init; }

    /// <summary>The protocol the transaction was begun with (recorded with the abort).</summary>
    public CommitProtocol Protocol { get; init; } = CommitProtocol.TwoPhase;
}

/// <summary>The coordinator's answer to <see cref="CommitTransaction"/> and <see cref="RollbackTransaction"/>.</summary>
public sealed record TransactionCompleted
{
    public required TransactionId TransactionId { get; init; }
    public required TransactionOutcome Outcome { get; init; }
    public string? Reason { get; init; }
}

/// <summary>
/// Asks what became of a transaction. Sent by initiators that lost a reply and by prepared
/// participants waiting for a decision. Answered by <see cref="TransactionOutcomeReported"/>.
/// </summary>
public sealed record GetTransactionOutcome
{
    public required TransactionId TransactionId { get; init; }
    public ParticipantId? Participant { get; init; }
}

/// <summary>The coordinator's answer to <see cref="GetTransactionOutcome"/>.</summary>
public sealed record TransactionOutcomeReported
{
    public required TransactionId TransactionId { get; init; }
    public required TransactionOutcome Outcome { get; init; }
}

// ---- initiator -> participant -------------------------------------------------------
// Work messages are the application's own types. The SDK sends them with these headers and
// the participant answers with WorkCompleted.

/// <summary>Header names carried by every work message.</summary>
public static class TxCoordHeaders
{
    public const string TransactionId = "TxCoord-TransactionId";
    public const string CoordinatorId = "TxCoord-CoordinatorId";
    public const string BranchTimeoutMs = "TxCoord-BranchTimeoutMs";

    /// <summary>
    /// Early prepare: <c>true</c> asks the participant to prepare its branch right after this
    /// work, exactly as <see cref="PrepareBranch"/> would, and to say so in
    /// <see cref="WorkCompleted.Prepared"/>. Sent with <see cref="Protocol"/> and <see cref="Participants"/>.
    /// </summary>
    public const string Prepare = "TxCoord-Prepare";

    /// <summary>Early prepare: the transaction's protocol (<see cref="CommitProtocol"/> name); only TwoPhase prepares early.</summary>
    public const string Protocol = "TxCoord-Protocol";

    /// <summary>
    /// Early prepare: every participant of the transaction, comma-separated (participant ids
    /// cannot contain a comma), as <see cref="PrepareBranch.Participants"/> would carry them.
    /// </summary>
    public const string Participants = "TxCoord-Participants";

    /// <summary>
    /// The number of this work message among those the initiator sent the same participant in the
    /// same transaction: 1, 2, 3... A branch prepares only when it holds every number up to
    /// <see cref="PrepareBranch.WorkCount"/> (under early prepare: up to this work's own number).
    /// </summary>
    public const string WorkSequence = "TxCoord-WorkSequence";
}

/// <summary>A participant's answer to one work message.</summary>
public sealed record WorkCompleted
{
    public required TransactionId TransactionId { get; init; }
    public required ParticipantId Participant { get; init; }
    public required bool Succeeded { get; init; }

    /// <summary>Why the work was refused or failed; null when it succeeded.</summary>
    public string? Reason { get; init; }

    /// <summary>
    /// Early prepare: true when the branch prepared right after this work (asked with
    /// <see cref="TxCoordHeaders.Prepare"/>): a Yes vote, durable, that the initiator relays in
    /// <see cref="CommitTransaction.Prepared"/>. False for plain work (and from participants
    /// that do not know early prepare: they are asked to prepare as usual).
    /// </summary>
    public bool Prepared { get; init; }

    /// <summary>
    /// Early prepare: the participant's proof of its Yes vote, which the initiator relays in
    /// <see cref="CommitTransaction.PreparedProofs"/> (HMAC-SHA256 with the participant's vote proof
    /// key; see docs/security.md). Null when the branch did not prepare or no key is configured.
    /// </summary>
    public string? PreparedProof { get; init; }
}

// ---- coordinator -> participant -----------------------------------------------------

/// <summary>Phase 1: prepare the branch and vote (answered by <see cref="BranchVoted"/>).</summary>
public sealed record PrepareBranch
{
    public required TransactionId TransactionId { get; init; }
    public required CoordinatorId Coordinator { get; init; }
    public required ParticipantId Participant { get; init; }
    public CommitProtocol Protocol { get; init; } = CommitProtocol.TwoPhase;

    /// <summary>Every participant of the transaction, so a participant can reach its peers.</summary>
    public IReadOnlyList<ParticipantId> Participants { get; init; } = [];

    /// <summary>
    /// How many work messages the initiator sent this participant (<see cref="CommitTransaction.WorkCounts"/>):
    /// the branch votes Yes only if it holds works 1 to this number. 0 (the default, and from
    /// initiators that do not count): not checked.
    /// </summary>
    public int WorkCount { get; init; }
}

/// <summary>
/// Phase 1 for several transactions at once: exactly <see cref="PrepareBranch"/> for each of
/// <see cref="Branches"/>, answered by one <see cref="BranchesVoted"/>. The coordinator sends it
/// when prepares to the same participant come closer together than its <c>BatchWindow</c>; a
/// lone prepare still goes out as <see cref="PrepareBranch"/>.
/// </summary>
public sealed record PrepareBranches
{
    public required CoordinatorId Coordinator { get; init; }
    public required ParticipantId Participant { get; init; }
    public required IReadOnlyList<PrepareBranch> Branches { get; init; }
}

/// <summary>Phase 2: commit the prepared branch (answered by <see cref="BranchCommitted"/>).</summary>
public sealed record CommitBranch
{
    public required TransactionId TransactionId { get; init; }
    public required CoordinatorId Coordinator { get; init; }
    public required ParticipantId Participant { get; init; }
}

/// <summary>
/// Phase 2 for several transactions at once: exactly <see cref="CommitBranch"/> for each of
/// <see cref="TransactionIds"/>, answered by one <see cref="BranchesCommitted"/>. The coordinator
/// sends it when commits to the same participant come closer together than its
/// <c>BatchWindow</c>; a lone commit still goes out as <see cref="CommitBranch"/>.
/// </summary>
public sealed record CommitBranches
{
    public required CoordinatorId Coordinator { get; init; }
    public required ParticipantId Participant { get; init; }
    public required IReadOnlyList<TransactionId> TransactionIds { get; init; }
}

/// <summary>Abort the branch, whether it is working, prepared or not yet started (answered by <see cref="BranchAborted"/>).</summary>
public sealed record AbortBranch
{
    public required TransactionId TransactionId { get; init; }
    public required CoordinatorId Coordinator { get; init; }
    public required ParticipantId Participant { get; init; }
    public string? Reason { get; init; }
}

// ---- participant -> coordinator -----------------------------------------------------

/// <summary>A participant's vote.</summary>
public sealed record BranchVoted
{
    public required TransactionId TransactionId { get; init; }
    public required ParticipantId Participant { get; init; }
    public required Vote Vote { get; init; }
    public string? Reason { get; init; }
}

/// <summary>A participant's answer to <see cref="PrepareBranches"/>: one vote for each branch asked.</summary>
public sealed record BranchesVoted
{
    public required ParticipantId Participant { get; init; }
    public required IReadOnlyList<BranchVoted> Votes { get; init; }
}

/// <summary>A participant's acknowledgement that its branch committed.</summary>
public sealed record BranchCommitted
{
    public required TransactionId TransactionId { get; init; }
    public required ParticipantId Participant { get; init; }
}

/// <summary>
/// A participant's acknowledgement of a <see cref="CommitBranches"/>: exactly
/// <see cref="BranchCommitted"/> for each of <see cref="TransactionIds"/> (those whose branch is
/// committed; the others are left to the coordinator's re-drive, as a lost acknowledgement is).
/// </summary>
public sealed record BranchesCommitted
{
    public required ParticipantId Participant { get; init; }
    public required IReadOnlyList<TransactionId> TransactionIds { get; init; }
}

/// <summary>A participant's acknowledgement that its branch rolled back (or never existed).</summary>
public sealed record BranchAborted
{
    public required TransactionId TransactionId { get; init; }
    public required ParticipantId Participant { get; init; }
}

// ---- coordinator <-> participant: three-phase commit --------------------------------

/// <summary>
/// 3PC, second phase: the coordinator forced PreCommit to its journal after every participant
/// voted Yes. The participant records PreCommitted durably (outside its prepared transaction)
/// and answers <see cref="BranchPreCommitted"/>; one that has joined a termination round refuses.
/// </summary>
public sealed record PreCommitBranch
{
    public required TransactionId TransactionId { get; init; }
    public required CoordinatorId Coordinator { get; init; }
    public required ParticipantId Participant { get; init; }
}

/// <summary>
/// 3PC: <see cref="PreCommitBranch"/> for several transactions at once, answered by one
/// <see cref="BranchesPreCommitted"/> (sent when PreCommits to the same participant come closer
/// together than the coordinator's <c>BatchWindow</c>).
/// </summary>
public sealed record PreCommitBranches
{
    public required CoordinatorId Coordinator { get; init; }
    public required ParticipantId Participant { get; init; }
    public required IReadOnlyList<TransactionId> TransactionIds { get; init; }
}

/// <summary>A participant's acknowledgement that it recorded PreCommitted (3PC).</summary>
public sealed record BranchPreCommitted
{
    public required TransactionId TransactionId { get; init; }
    public required ParticipantId Participant { get; init; }
}

/// <summary>
/// A participant's answer to <see cref="PreCommitBranches"/>: exactly <see cref="BranchPreCommitted"/>
/// for each of <see cref="TransactionIds"/>. A branch found already committed or aborted is answered
/// on its own (<see cref="BranchCommitted"/>, <see cref="BranchAborted"/>), one that refused not at all.
/// </summary>
public sealed record BranchesPreCommitted
{
    public required ParticipantId Participant { get; init; }
    public required IReadOnlyList<TransactionId> TransactionIds { get; init; }
}

// ---- participant <-> participant: termination ----------------------------------------

/// <summary>
/// Asks a peer what it knows of its branch (request/response: answered by <see cref="BranchStateReported"/>).
/// Round 0 is a plain question (2PC cooperative termination). Round 1 and above is a 3PC termination
/// round led by <see cref="Asker"/>: the addressee joins it, durably, before answering (it then ignores
/// lower rounds and the coordinator's PreCommit). A peer that never voted Yes fences its branch
/// (it can never prepare afterwards) and answers Aborted.
/// </summary>
public sealed record GetBranchState
{
    public required TransactionId TransactionId { get; init; }
    public required CoordinatorId Coordinator { get; init; }

    /// <summary>The peer asked.</summary>
    public required ParticipantId Participant { get; init; }

    /// <summary>The participant asking (the round's leader from round 1 on).</summary>
    public required ParticipantId Asker { get; init; }

    public int Round { get; init; }
}

/// <summary>A peer's answer to <see cref="GetBranchState"/>.</summary>
public sealed record BranchStateReported
{
    public required TransactionId TransactionId { get; init; }
    public required ParticipantId Participant { get; init; }
    public required BranchState State { get; init; }

    /// <summary>The round asked about.</summary>
    public int Round { get; init; }

    /// <summary>True when the peer joined <see cref="Round"/>; false when it had joined a higher one (or for round 0).</summary>
    public bool Joined { get; init; }

    /// <summary>The highest termination round the peer has joined (0: none, it follows the coordinator).</summary>
    public int LastElected { get; init; }

    /// <summary>The round in which the peer took its PreCommitted or PreAborted state (0: the coordinator's PreCommit); null otherwise.</summary>
    public int? LastAttempt { get; init; }
}

/// <summary>
/// 3PC termination, second step: the round's leader asks a peer to take PreCommitted
/// (<see cref="Outcome"/> Committed) or PreAborted (Aborted) in this round, durably. Answered by
/// <see cref="TerminationProposalAnswered"/>; refused by a peer that has joined a higher round.
/// </summary>
public sealed record ProposeTermination
{
    public required TransactionId TransactionId { get; init; }
    public required CoordinatorId Coordinator { get; init; }
    public required ParticipantId Participant { get; init; }
    public required ParticipantId Leader { get; init; }
    public required int Round { get; init; }
    public required TransactionOutcome Outcome { get; init; }
}

/// <summary>A peer's answer to <see cref="ProposeTermination"/>.</summary>
public sealed record TerminationProposalAnswered
{
    public required TransactionId TransactionId { get; init; }
    public required ParticipantId Participant { get; init; }
    public required int Round { get; init; }
    public required bool Accepted { get; init; }

    /// <summary>The highest termination round the peer has joined.</summary>
    public int LastElected { get; init; }
}

/// <summary>
/// The outcome a 3PC termination round decided (a majority of all participants accepted it):
/// sent by the round's leader to every participant, which finishes its branch that way, and to
/// the coordinator, which adopts it.
/// </summary>
public sealed record TerminationDecided
{
    public required TransactionId TransactionId { get; init; }
    public required CoordinatorId Coordinator { get; init; }
    public required ParticipantId Leader { get; init; }
    public required int Round { get; init; }
    public required TransactionOutcome Outcome { get; init; }
}
