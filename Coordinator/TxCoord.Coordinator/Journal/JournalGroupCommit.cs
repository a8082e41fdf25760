using Dapper;
using Npgsql;
using TxCoord.Faults;

namespace TxCoord.Coordinator.Journal;

/// <summary>
/// One write of the journal: a single SQL statement with its parameters, whether it must be
/// durable before the caller hears back (<see cref="Forced"/>), the fault-seam point of its commit
/// and an optional check of its result, run inside the same SQL transaction. Every journal write
/// is idempotent (insert-if-absent or a conditional update), which is what lets a batch that failed
/// be run again write by write.
/// </summary>
/// <param name="Check">
/// Called with the statement's row count inside the transaction; an <see cref="InvalidOperationException"/>
/// from it fails this write alone (the statement changed nothing, so its neighbours still commit).
/// </param>
internal sealed record JournalWrite(
    string Sql,
    object Parameters,
    bool Forced,
    string? FaultPoint,
    Func<NpgsqlConnection, NpgsqlTransaction, int, Task>? Check = null);

/// <summary>
/// Group commit of the journal's writes. Writes that arrive while a batch is being written wait
/// for the next one, so under load many transactions' decisions (and their unforced records)
/// share one SQL transaction, one round trip for BEGIN/COMMIT and one WAL flush, with no timer
/// and no added delay when the journal is idle: a lone write goes straight out.
/// <para>
/// What a caller gets is exactly what it got from a write of its own: the write returns once the
/// SQL transaction that holds it committed, with <c>synchronous_commit</c> on when any write of
/// the batch is forced (so a forced write is durable before it returns, and an unforced one that
/// shares its batch is durable too), off otherwise.
/// </para>
/// <para>
/// Failure: when a batch fails, its writes are run again one by one, each in its own transaction,
/// so each caller gets the outcome of its own write, not a neighbour's (safe because every write is
/// idempotent). A failure of a single write leaves it as a failure of a write of its own would:
/// the write may or may not have been committed when the failure came at COMMIT. A caller's
/// cancellation stops its wait, not the batch: its write may still be committed (the journal's
/// interface says the same of any cancelled write). With the database fault seam armed
/// (<see cref="DbFaults"/>) batches hold one write each, so an injected fault strikes exactly the
/// write it names.
/// </para>
/// </summary>
internal sealed class JournalGroupCommit(NpgsqlDataSource dataSource)
{
    /// <summary>Most writes in one batch.</summary>
    internal const int MaxBatchSize = 64;

    /// <summary>Batches written at once; more writes wait for the next batch.</summary>
    internal const int MaxConcurrentBatches = 2;

    private const string ForcedPrefix = PostgresTransactionJournal.ForcedSql + ";\n";

    private const string UnforcedPrefix = PostgresTransactionJournal.UnforcedSql + ";\n";

    private readonly Lock _gate = new();
    private readonly Queue<Pending> _queue = new();
    private readonly int _maxBatchSize = DbFaults.IsArmed ? 1 : MaxBatchSize;
    private int _running;
    private long _batches;
    private long _writes;

    /// <summary>SQL transactions written so far (a batch run again write by write counts each).</summary>
    public long Batches => Interlocked.Read(ref _batches);

    /// <summary>Writes committed so far.</summary>
    public long Writes => Interlocked.Read(ref _writes);

    /// <summary>Queues <paramref name="write"/> and returns once the batch holding it committed (see the class's failure semantics).</summary>
    public Task WriteAsync(JournalWrite write, CancellationToken cancellationToken)
    {
        var pending = new Pending(write, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        bool start;
        lock (_gate)
        {
            _queue.Enqueue(pending);
            start = _running < MaxConcurrentBatches;
            if (start)
            {
                _running++;
            }
        }

        if (start)
        {
            _ = Task.Run(DrainAsync, CancellationToken.None);
        }

        return pending.Completion.Task.WaitAsync(cancellationToken);
    }

    private async Task DrainAsync()
    {
        while (true)
        {
            Pending[] batch;
            lock (_gate)
            {
                if (_queue.Count == 0)
                {
                    _running--;
                    return;
                }

                batch = new Pending[Math.Min(_queue.Count, _maxBatchSize)];
                for (var i = 0; i < batch.Length; i++)
                {
                    batch[i] = _queue.Dequeue();
                }
            }

            if (!await TryWriteAsync(batch))
            {
                // Not knowing which write failed the batch, run each alone: each then gets its own outcome.
                foreach (var pending in batch)
                {
                    await TryWriteAsync([pending]);
                }
            }
        }
    }

    /// <summary>
    /// Writes <paramref name="batch"/> in one SQL transaction and completes its writes. False, with
    /// nothing completed, when a batch of several failed: the caller runs them again one by one.
    /// </summary>
    private async Task<bool> TryWriteAsync(Pending[] batch)
    {
        var forced = batch.Any(p => p.Write.Forced);
        var refused = new Exception?[batch.Length];
        try
        {
            await using var connection = await dataSource.OpenConnectionAsync(CancellationToken.None);
            await using var transaction = await connection.BeginTransactionAsync(CancellationToken.None);
            for (var i = 0; i < batch.Length; i++)
            {
                var write = batch[i].Write;

                // The first statement carries the transaction's durability: BEGIN, SET LOCAL and it travel together.
                var sql = i == 0 ? (forced ? ForcedPrefix : UnforcedPrefix) + write.Sql : write.Sql;
                var rows = await connection.ExecuteAsync(new CommandDefinition(sql, write.Parameters, transaction));
                if (write.Check is { } check)
                {
                    try
                    {
                        await check(connection, transaction, rows);
                    }
                    catch (InvalidOperationException e)
                    {
                        refused[i] = e;
                    }
                }
            }

            foreach (var write in batch)
            {
                if (write.Write.FaultPoint is { } point)
                {
                    DbFaults.Before(point);
                }
            }

            await transaction.CommitAsync(CancellationToken.None);
            foreach (var write in batch)
            {
                if (write.Write.FaultPoint is { } point)
                {
                    DbFaults.After(point);
                }
            }
        }
        catch (Exception) when (batch.Length > 1)
        {
            // Each write is run again on its own and reports its own failure.
            return false;
        }
        catch (Exception e)
        {
            Interlocked.Increment(ref _batches);
            batch[0].Completion.TrySetException(e);
            return true;
        }

        Interlocked.Increment(ref _batches);
        for (var i = 0; i < batch.Length; i++)
        {
            if (refused[i] is { } e)
            {
                batch[i].Completion.TrySetException(e);
            }
            else
            {
                Interlocked.Increment(ref _writes);
                batch[i].Completion.TrySetResult();
            }
        }

        return true;
    }

    private sealed record Pending(JournalWrite Write, TaskCompletionSource Completion);
}
