namespace TxCoord.Coordinator.Engine;

/// <summary>Where a transaction is in its life at the coordinator.</summary>
internal enum TransactionPhase
{
    /// <summary>Prepare requests sent; collecting votes until every participant answered or a deadline passes.</summary>
    Preparing,

    /// <summary>Every participant voted Yes (or ReadOnly); the commit decision is being forced to the journal.</summary>
    Deciding,

    /// <summary>The commit decision is durable; phase 2 re-drives CommitBranch until every Yes voter acknowledged.</summary>
    Committing,

    /// <summary>Terminal: every participant committed (or had nothing to commit).</summary>
    Committed,

    /// <summary>
    /// Terminal: aborted, the abort row in the journal; every participant was told and the
    /// initiator answered. Presumed abort: nothing forced, no acknowledgements awaited.
    /// </summary>
    Aborted,

    /// <summary>3PC: every participant voted Yes; the PreCommit record is being forced to the journal.</summary>
    ForcingPreCommit,

    /// <summary>
    /// 3PC: PreCommit is durable and sent; collecting acknowledgements until a majority of the
    /// participants recorded PreCommitted (re-driven with back-off, never aborted on its own).
    /// </summary>
    PreCommitting,

    /// <summary>
    /// Abort decided; its journal row is being written (forced). Nothing is sent and nobody is
    /// answered until the row exists: a participant told to abort, or an initiator told Aborted,
    /// while no row exists could see the same transaction begun again by a duplicate commit
    /// request and committed (finding 1 of the 2PC model, Coordinator/models). A failed write is
    /// retried with back-off; a commit decision found in the row instead is finished.
    /// </summary>
    Aborting,
}
