namespace TxCoord.Contracts;

/// <summary>The commit protocol a transaction runs. Chosen by the initiator per transaction.</summary>
public enum CommitProtocol
{
    TwoPhase = 0,
    ThreePhase = 1,
}

/// <summary>A participant's answer to a prepare request.</summary>
public enum Vote
{
    /// <summary>The branch is prepared (durably) and can commit.</summary>
    Yes = 0,

    /// <summary>The branch could not prepare and has rolled back.</summary>
    No = 1,

    /// <summary>The branch wrote nothing and has already finished; it needs no phase 2.</summary>
    ReadOnly = 2,
}

/// <summary>What is known of a transaction's outcome.</summary>
public enum TransactionOutcome
{
    /// <summary>Committed: durable in the journal; every participant commits (or already has).</summary>
    Committed = 0,

    /// <summary>Definitely aborted (or never decided commit: presumed abort).</summary>
    Aborted = 1,

    /// <summary>Not decided yet: the transaction is still in its prepare phase.</summary>
    Pending = 2,
}

/// <summary>What a participant knows of its own branch, as it tells a peer during termination.</summary>
public enum BranchState
{
    /// <summary>Prepared (voted Yes); no PreCommit or termination proposal taken.</summary>
    Prepared = 0,

    /// <summary>3PC: prepared and PreCommitted (by the coordinator or a termination round).</summary>
    PreCommitted = 1,

    /// <summary>3PC: prepared and PreAborted by a termination round.</summary>
    PreAborted = 2,

    /// <summary>The branch committed.</summary>
    Committed = 3,

    /// <summary>The branch rolled back, or never voted Yes and is now fenced: it can never prepare.</summary>
    Aborted = 4,
}
