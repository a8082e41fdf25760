namespace TxCoord.Coordinator.Journal;

/// <summary>
/// A commit decision or 3PC PreCommit was refused because the journal already holds the
/// transaction as aborted (written by the recovery tool, an operator, or another owner of the
/// coordinator id). No commit decision exists, so the transaction can only abort.
/// </summary>
internal sealed class JournalDecisionRefusedException(string message) : InvalidOperationException(message);
