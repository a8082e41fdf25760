using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Participants.PostgreSql;

namespace TxCoord.Participants.Participant;

/// <summary>
/// What a branch's handlers get besides its connection: a DI scope of the branch's own, made when
/// the branch begins and disposed when it ends (prepared, finished read-only or rolled back, for
/// whatever reason, and at the runtime's disposal), so scoped services (an EF Core DbContext, a
/// unit of work) never outlive the branch or leak into another one. And the check that a branch
/// whose handlers answered Success wrote on its connection at all: a write made anywhere else is
/// outside the transaction. Log event ids 2700-2709.
/// </summary>
internal sealed partial class ParticipantRuntime
{
    /// <summary>How long disposal waits for a running handler before leaving its branch to PostgreSQL (the connection closes with the process).</summary>
    private static readonly TimeSpan DisposeWaitForHandlers = TimeSpan.FromSeconds(5);

    private const string StoppedReason = "the participant stopped while the branch was working";

    /// <summary>Disposes the branch's scope; a service that fails to dispose is logged, never stops the branch's end.</summary>
    private async Task DisposeScopeAsync(Branch branch)
    {
        if (branch.Scope is not { } scope)
        {
            return;
        }

        branch.Scope = null;
        try
        {
            await scope.DisposeAsync();
        }
        catch (Exception e)
        {
            LogScopeDisposeFailed(_logger, e, branch.Gid.Transaction, Id.Value);
        }
    }

    /// <summary>
    /// Before a branch that was told Success (not <see cref="WorkResult.SuccessReadOnly"/>) ends:
    /// warns, once, when its transaction wrote nothing. <paramref name="wrote"/> is what the branch
    /// learnt at no extra cost (the prepare batch); null asks PostgreSQL now (the rollback path),
    /// and says nothing when it cannot tell (a failed transaction, a broken connection).
    /// </summary>
    private async Task CheckBranchWroteAsync(Branch branch, bool? wrote)
    {
        if (branch.ReadOnly || branch.WriteChecked)
        {
            return;
        }

        branch.WriteChecked = true;
        if (wrote is null && branch.Connection is { State: System.Data.ConnectionState.Open } connection && branch.Transaction is { } transaction)
        {
            try
            {
                wrote = await BranchStore.WroteAsync(connection, transaction, CancellationToken.None);
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
            {
                return; // the transaction failed or the connection broke: nothing to tell
            }
        }

        if (wrote == false)
        {
            LogSuccessWroteNothing(_logger, branch.Gid.Transaction, Id.Value);
        }
    }

    /// <summary>
    /// At disposal: rolls back every branch still working (its handler's scope is disposed with
    /// it), so no connection or scope outlives the runtime. A handler still running after
    /// <see cref="DisposeWaitForHandlers"/> is left: its process is going away, and PostgreSQL
    /// rolls its transaction back when the connection closes.
    /// </summary>
    private async Task RollBackWorkingBranchesAsync()
    {
        foreach (var candidate in _branches.Snapshot())
        {
            using var wait = new CancellationTokenSource(DisposeWaitForHandlers, _time);
            Branch branch;
            try
            {
                branch = await _branches.AcquireAsync(candidate.Gid, wait.Token);
            }
            catch (OperationCanceledException)
            {
                LogHandlerStillRunningAtDispose(_logger, candidate.Gid.Transaction, Id.Value);
                continue;
            }

            try
            {
                if (branch.Phase == BranchPhase.Working)
                {
                    await RollBackWorkingAsync(branch, StoppedReason, CancellationToken.None);
                }
                else
                {
                    _branches.Remove(branch);
                }
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
            {
                LogRollbackAtDisposeFailed(_logger, e, branch.Gid.Transaction, Id.Value);
            }
            finally
            {
                _branches.Release(branch);
            }
        }
    }

    [LoggerMessage(2700, LogLevel.Warning,
        "Transaction {TransactionId}: participant {Participant}: the work handlers answered WorkResult.Success but the branch wrote nothing on its connection. " +
        "Anything they wrote elsewhere (a DbContext not bound with branch.GetDbContext<T>(), a connection of their own) is outside the transaction and stays even when it aborts; " +
        "a work that writes nothing should answer WorkResult.SuccessReadOnly")]
    private static partial void LogSuccessWroteNothing(ILogger logger, TransactionId transactionId, string participant);

    [LoggerMessage(2701, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant}: a service of the branch's DI scope failed to dispose")]
    private static partial void LogScopeDisposeFailed(ILogger logger, Exception exception, TransactionId transactionId, string participant);

    [LoggerMessage(2702, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} is being disposed while a work handler still runs in the branch; PostgreSQL rolls it back when its connection closes")]
    private static partial void LogHandlerStillRunningAtDispose(ILogger logger, TransactionId transactionId, string participant);

    [LoggerMessage(2703, LogLevel.Warning, "Transaction {TransactionId}: participant {Participant} could not roll its working branch back at disposal")]
    private static partial void LogRollbackAtDisposeFailed(ILogger logger, Exception exception, TransactionId transactionId, string participant);
}
