using TxCoord.Contracts;

namespace TxCoord.Coordinator.Engine;

/// <summary>What the driver must do after a transition. The engine never does it itself.</summary>
internal abstract record TransactionEffect;

/// <summary>Send <c>PrepareBranch</c> to the participant.</summary>
/// <param name="WorkCount">How many works the initiator sent it (<c>PrepareBranch.WorkCount</c>); 0: not counted.</param>
internal sealed record SendPrepare(ParticipantId Participant, int WorkCount = 0) : TransactionEffect;

/// <summary>
/// Force the commit decision to the journal (idempotent insert-if-absent). The driver answers
/// with <see cref="DecisionDurable"/> or <see cref="DecisionWriteFailed"/>. No commit leaves the
/// coordinator and the initiator hears nothing until then.
/// </summary>
internal sealed record ForceCommitDecision : TransactionEffect;

/// <summary>Send <c>CommitBranch</c> to the participant.</summary>
internal sealed record SendCommit(ParticipantId Participant) : TransactionEffect;

/// <summary>Send <c>AbortBranch</c> to the participant.</summary>
internal sealed record SendAbort(ParticipantId Participant, string Reason) : TransactionEffect;

/// <summary>
/// Write the abort row to the journal, forced (its WAL flushed before the driver goes on: the
/// participants and the initiator are told next, and a row lost in a crash of the journal's
/// server would let a repeated commit request commit; finding 5 of the 2PC model). The driver
/// answers with <see cref="AbortRecorded"/>, <see cref="AbortWriteFailed"/> or
/// <see cref="JournalHoldsDecision"/>. Nobody is told "aborted" before the row exists.
/// </summary>
/// <param name="AfterPreCommit">
/// 3PC: the PreCommit record may be in the journal and the abort must replace it.
/// </param>
internal sealed record RecordAbort(string Reason, bool AfterPreCommit = false) : TransactionEffect;

/// <summary>
/// 3PC: force the PreCommit record to the journal (idempotent insert-if-absent). The driver answers
/// with <see cref="PreCommitDurable"/> or <see cref="PreCommitWriteFailed"/>. No PreCommit leaves
/// the coordinator until then, so a coordinator that finds no record can presume abort.
/// </summary>
internal sealed record ForcePreCommit : TransactionEffect;

/// <summary>3PC: send <c>PreCommitBranch</c> to the participant.</summary>
internal sealed record SendPreCommit(ParticipantId Participant) : TransactionEffect;

/// <summary>Record that every participant committed, unforced: losing it only causes a harmless re-drive.</summary>
internal sealed record RecordEnd : TransactionEffect;

/// <summary>Record one participant's commit acknowledgement, unforced: losing it only causes a harmless re-send.</summary>
internal sealed record RecordAck(ParticipantId Participant) : TransactionEffect;

/// <summary>Answer the initiator(s) waiting for this transaction with <c>TransactionCompleted</c>.</summary>
internal sealed record ReplyToInitiator(TransactionOutcome Outcome, string? Reason) : TransactionEffect;
