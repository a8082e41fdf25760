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

    /// <summary>Terminal: aborted. Presumed abort: nothing forced, no acknowledgements awaited.</summary>
    Aborted,

    /// <summary>3PC: every participant voted Yes; the PreCommit record is being forced to the journal.</summary>
    ForcingPreCommit,

    /// <summary>
    /// 3PC: PreCommit is durable and sent; collecting acknowledgements until a majority of the
    /// participants recorded PreCommitted (re-driven with back-off, never aborted on its own).
    /// </summary>
    PreCommitting,
}
