using TxCoord.Contracts;

namespace TxCoord.Coordinator.Journal;

/// <summary>
/// The coordinator's recovery journal. Presumed abort: only commit decisions must be durable,
/// so <see cref="WriteCommitDecisionAsync"/> is the one forced write; everything else is
/// written unforced, and losing it in a crash leaves the journal saying something that recovery
/// turns into the same outcome. A transaction without a row is aborted.
/// Every write is one SQL transaction that also appends to the event history, so a row and
/// its history never disagree.
/// </summary>
internal interface ITransactionJournal
{
    /// <summary>
    /// Creates the journal schema when missing. Safe to run from several starters at once.
    /// <para>Failure: nothing, or the whole schema (it is one transaction); the start fails and is retried by whoever restarts it.</para>
    /// </summary>
    Task EnsureSchemaAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Forces the commit decision: inserts the row in state 'committing' if absent, or moves a
    /// 3PC 'precommitting' row to 'committing' (a retry of the same decision is a no-op), and
    /// returns only once the commit is durable
    /// (<c>synchronous_commit</c> on, whatever the server's default).
    /// <para>
    /// Failure (an exception, a timeout or a cancellation): the decision may or may not be
    /// durable; the caller must not abort but retry the same write until it succeeds. If the
    /// process dies first, recovery commits the transaction when the row made it to disk and
    /// presumes abort when it did not; either way no participant was told to commit before this
    /// method returned.
    /// </para>
    /// </summary>
    /// <exception cref="JournalDecisionRefusedException">The journal already holds this transaction as aborted (the recovery tool, an operator, or a second owner wrote it): never commit it; it can only abort.</exception>
    Task WriteCommitDecisionAsync(CommitDecision decision, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// 3PC: forces the PreCommit record: inserts the row in state 'precommitting' if absent (a retry,
    /// or a row already further on, is a no-op) and returns only once it is durable. No PreCommit
    /// may be sent before; a transaction without this row can therefore be presumed aborted, because
    /// no participant can have PreCommitted it.
    /// <para>Failure: the record may or may not be durable; the caller retries the same write and
    /// never aborts on its own. If the process dies first, recovery finds the row (and re-sends
    /// PreCommit) or does not (and presumes abort); no participant was sent PreCommit either way.</para>
    /// <para>A 'committing' row is upgraded from 'precommitting' by <see cref="WriteCommitDecisionAsync"/>.</para>
    /// </summary>
    /// <exception cref="JournalDecisionRefusedException">The journal already holds this transaction as aborted.</exception>
    Task WritePreCommitAsync(CommitDecision decision, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// Records an abort, unforced (insert-if-absent of an 'aborted' row; with
    /// <see cref="AbortRecord.AfterPreCommit"/> it also replaces a 3PC 'precommitting' row, never a commit). Also the tombstone that
    /// keeps a presumed abort, once reported, from turning into a commit later.
    /// <para>Returns true when this write put the abort in the row (inserted it, or replaced a
    /// PreCommit); false when a row already existed in another state (an abort written earlier, a
    /// commit decision, a PreCommit without <see cref="AbortRecord.AfterPreCommit"/>): read it to learn which.</para>
    /// <para>Failure: the row may or may not exist; the coordinator tells nobody "aborted" until a
    /// write succeeded. The row is not flushed before this returns: a crash of this process cannot
    /// lose it, a crash of PostgreSQL within its WAL writer delay can. With <see cref="AbortRecord.Forced"/>
    /// (a presumed abort about to be told) it is flushed before this returns, and so is a row that
    /// was already there.</para>
    /// </summary>
    Task<bool> RecordAbortAsync(AbortRecord record, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// Records that every participant committed, unforced: moves a 'committing' row to
    /// 'committed', or inserts a 'committed' row when no decision was forced (every participant
    /// voted ReadOnly).
    /// <para>Failure: the row stays 'committing'; the next start re-drives CommitBranch to the
    /// participants not recorded as acknowledged, which answer again (commit is idempotent), and the
    /// end is recorded then. For the ReadOnly case: no row, so a later question is answered
    /// Aborted, which for a transaction that wrote nothing changes nothing.</para>
    /// </summary>
    Task RecordEndAsync(CommitDecision decision, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// Records one participant's commit acknowledgement, unforced.
    /// <para>Failure: the participant is not in <c>acked</c>; after a restart it is sent
    /// CommitBranch again and acknowledges again.</para>
    /// </summary>
    Task RecordAckAsync(TransactionId transactionId, ParticipantId participant, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// The row of a transaction, or null when the journal does not know it (presumed abort).
    /// <para>Failure: an exception; nothing changed. Callers must not read a failure as "aborted".</para>
    /// </summary>
    Task<JournalEntry?> FindAsync(TransactionId transactionId, CancellationToken cancellationToken);

    /// <summary>
    /// Streams this coordinator's rows in state 'committing' or (3PC) 'precommitting', in pages, so millions of them
    /// never sit in memory at once.
    /// <para>Failure: an exception part-way; the rows already yielded stay valid, and the whole
    /// scan is safe to start again (recovery skips transactions it already holds).</para>
    /// </summary>
    IAsyncEnumerable<JournalEntry> LoadUnfinishedAsync(CoordinatorId coordinatorId, CancellationToken cancellationToken);

    /// <summary>Runs <c>SELECT 1</c> on the journal database; throws when it is unreachable. Changes nothing.</summary>
    Task PingAsync(CancellationToken cancellationToken);
}
