using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Contracts.Security;
using TxCoord.Faults;
using TxCoord.Participants.PostgreSql;
using TxCoord.Participants.Protocol;

namespace TxCoord.Participants.Participant;

/// <summary>
/// One participant: runs work inside branches, prepares, commits and aborts them, idempotently,
/// and finishes prepared branches whose decision it missed by asking the coordinator.
/// Every operation on a branch runs under that branch's lock, so a late or duplicated message
/// never races the branch's own work.
/// </summary>
internal sealed partial class ParticipantRuntime : IAsyncDisposable
{
    private readonly TxCoordParticipantOptions _options;
    private readonly IServiceProvider _services;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly BranchRegistry _branches = new();
    private readonly Lazy<Task> _initialized;

    /// <summary>
    /// The SDK's own statements (branch status, markers, branch state rows, COMMIT/ROLLBACK
    /// PREPARED, listings). They use only <c>SET LOCAL</c> and always end their transactions, so
    /// a pooled connection is handed back without <c>DISCARD ALL</c> (<c>NoResetOnClose</c>).
    /// </summary>
    private readonly NpgsqlDataSource _dataSource;

    /// <summary>
    /// The branches' connections, where the users' work handlers run: reset as the connection
    /// string says (by default <c>DISCARD ALL</c> on the next checkout), since a handler may leave
    /// session state behind. Each data source has its own pool of up to <c>Max Pool Size</c>.
    /// </summary>
    private readonly NpgsqlDataSource _branchDataSource;
    private readonly CoordinatorBackoff _coordinatorBackoff;
    private readonly RetryBackoff<BranchGid> _branchBackoff;
    private readonly HashSet<BranchGid> _reportedForeign = [];

    public ParticipantRuntime(TxCoordParticipantOptions options, IServiceProvider services, TimeProvider time, ILogger<ParticipantRuntime> logger)
    {
        options.Validate();
        _options = options;
        _services = services;
        _time = time;
        _logger = logger;
        Id = new ParticipantId(options.ParticipantId);
        _dataSource = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(options.ConnectionString) { NoResetOnClose = true }.ConnectionString);
        _branchDataSource = NpgsqlDataSource.Create(options.ConnectionString);
        Store = new BranchStore(_dataSource);
        _initialized = new Lazy<Task>(InitializeStoresAsync);
        _coordinatorBackoff = new CoordinatorBackoff(options.ResolveInterval, options.CoordinatorRetryMaxInterval, time);
        _branchBackoff = new RetryBackoff<BranchGid>(options.ResolveInterval, options.CoordinatorRetryMaxInterval, time);
    }

    public ParticipantId Id { get; }

    public TxCoordParticipantOptions Options => _options;

    internal BranchStore Store { get; }

    /// <summary>Branches currently working (not yet prepared) in this process.</summary>
    public int WorkingBranches => _branches.CountWorking();

    /// <summary>Prepared branches that could not learn their outcome on the last pass (blocked on the coordinator).</summary>
    public int BlockedBranches { get; private set; }

    /// <summary>Prepared branches whose last resolution attempt failed (a coordinator fault, a database error); each retries after its back-off.</summary>
    public int FailingBranches { get; private set; }

    /// <summary>When the last resolution pass ended (null before the first): a loop that stops passing shows here.</summary>
    public DateTimeOffset? LastResolutionPass { get; private set; }

    /// <summary>Creates the schema and checks the server; every handler waits for it.</summary>
    public Task InitializeAsync() => _initialized.Value;

    public async Task HandleWorkAsync<TMessage>(ConsumeContext<TMessage> context, WorkHandler<TMessage> handler)
        where TMessage : class
    {
        await InitializeAsync();
        var cancellationToken = context.CancellationToken;
        if (!TryReadWorkHeaders(context, out var transactionId, out var coordinator, out var timeout, out var headerError))
        {
            Log.WorkRejected(_logger, Id.Value, typeof(TMessage).Name, headerError);
            await context.RespondAsync(new WorkCompleted { TransactionId = transactionId, Participant = Id, Succeeded = false, Reason = headerError });
            return;
        }

        if (!_options.Serves(coordinator))
        {
            var notServed = $"participant {Id} does not serve coordinator {coordinator} (option Coordinators: {string.Join(", ", _options.Coordinators)})";
            Log.WorkRejected(_logger, Id.Value, typeof(TMessage).Name, notServed);
            await context.RespondAsync(new WorkCompleted { TransactionId = transactionId, Participant = Id, Succeeded = false, Reason = notServed });
            return;
        }

        LearnCoordinator(coordinator);
        if (!TryReadEarlyPrepare(context, coordinator, transactionId, out var earlyPrepare, out var prepareError))
        {
            Log.WorkRejected(_logger, Id.Value, typeof(TMessage).Name, prepareError);
            await context.RespondAsync(new WorkCompleted { TransactionId = transactionId, Participant = Id, Succeeded = false, Reason = prepareError });
            return;
        }

        // 0 from initiators that do not number their works: nothing to check at prepare then.
        var sequence = (int)Math.Clamp(context.Headers.Get<long>(TxCoordHeaders.WorkSequence, default(long?)) ?? 0, 0, int.MaxValue);
        if (sequence > _options.MaxWorksPerTransaction)
        {
            var tooMany = $"work number {sequence} is more than participant {Id} takes in one transaction ({_options.MaxWorksPerTransaction}, option MaxWorksPerTransaction)";
            Log.WorkRejected(_logger, Id.Value, typeof(TMessage).Name, tooMany);
            await context.RespondAsync(new WorkCompleted { TransactionId = transactionId, Participant = Id, Succeeded = false, Reason = tooMany });
            return;
        }

        if (earlyPrepare is not null)
        {
            // The work that asks for early prepare is its participant's last: the branch must hold it and all before it.
            earlyPrepare = earlyPrepare with { WorkCount = sequence };
        }

        var gid = BranchGid.Create(coordinator, transactionId, Id);
        var branch = await _branches.AcquireAsync(gid, cancellationToken);
        string? refusal;
        try
        {
            refusal = await RunWorkAsync(branch, timeout, sequence, context.Message, handler, cancellationToken);
            if (refusal is null && earlyPrepare is not null)
            {
                refusal = await PrepareEarlyAsync(branch, earlyPrepare);
            }
        }
        finally
        {
            _branches.Release(branch);
        }

        CrashPoint.Hit(CrashPoints.ParticipantAfterWork);
        var prepared = refusal is null && earlyPrepare is not null;
        await context.RespondAsync(new WorkCompleted
        {
            TransactionId = transactionId, Participant = Id, Succeeded = refusal is null, Reason = refusal, Prepared = prepared,
            PreparedProof = prepared && SecurityOptionsCheck.ProofKeyOf(_options.Security, Id.Value) is { } key
                ? VoteProof.Compute(key, transactionId, Id, coordinator, sequence)
                : null,
        });
    }

    private const string WorkStoppedReason =
        "the work handler was stopped half-way (its delivery was given up: the broker's consumer timeout, a lost channel or a shutdown); the branch rolled back";

    private const string HandlerPastDeadlineReason =
        "branch timeout: the work handler still ran at the branch's deadline and was cancelled; the branch rolled back";

    /// <summary>The delay until <paramref name="deadline"/>, 0 when it has passed, at most what a timer takes.</summary>
    private TimeSpan DelayUntil(DateTimeOffset deadline)
    {
        var delay = deadline - _time.GetUtcNow();
        return delay <= TimeSpan.Zero ? TimeSpan.Zero : TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds, int.MaxValue));
    }

    private async Task<string?> RunWorkAsync<TMessage>(
        Branch branch, TimeSpan timeout, int sequence, TMessage message, WorkHandler<TMessage> handler, CancellationToken cancellationToken)
        where TMessage : class
    {
        var gid = branch.Gid;
        var step = BranchRules.OnWork(branch.Phase == BranchPhase.Working, branch.Works, sequence, stored: null);
        if (step == WorkStep.SkipDuplicate)
        {
            // A redelivery of a work that already ran in this branch (its answer was lost): the
            // work is in the branch once, and running it again would apply it twice.
            Log.DuplicateWork(_logger, gid.Transaction, Id.Value, sequence);
            return null;
        }

        if (step == WorkStep.Begin)
        {
            // The status is read on the branch's own connection, before its transaction begins: no
            // pooled checkout of its own, and the work's transaction still starts with the handler's
            // first statement (BEGIN goes out with it).
            var connection = await _branchDataSource.OpenConnectionAsync(cancellationToken);
            BranchStatus status;
            try
            {
                status = await BranchStore.GetStatusAsync(connection, gid, cancellationToken);
            }
            catch
            {
                await connection.DisposeAsync();
                throw;
            }

            if (BranchRules.OnWork(working: false, branch.Works, sequence, status) == WorkStep.Refuse)
            {
                await connection.DisposeAsync();
                _branches.Remove(branch);
                var reason = BranchRules.AlreadyEnded(status);
                Log.WorkRefused(_logger, gid.Transaction, Id.Value, reason);
                return reason;
            }

            // Not cancellable: a cancel here would leave the branch New with this connection in
            // it, and the redelivery would open another one over it (Npgsql sends the BEGIN with
            // the first statement, so this does not wait on the server).
            try
            {
                branch.Transaction = await connection.BeginTransactionAsync(CancellationToken.None);
            }
            catch
            {
                await connection.DisposeAsync();
                throw;
            }

            branch.Connection = connection;
            // The branch's own DI scope, from here until the branch ends (CloseAsync).
            branch.Scope = _services.CreateAsyncScope();
            branch.Phase = BranchPhase.Working;
            branch.Deadline = _time.GetUtcNow() + timeout;
            Log.BranchStarted(_logger, gid.Transaction, Id.Value, gid.Value);
        }

        // The branch's deadline bounds its handlers too: one still running then (a statement waiting
        // on a row lock, perhaps of a prepared branch whose decision is late) is cancelled, and the
        // branch rolls back as an idle expired one would. The background loop only tries an
        // expired branch's lock, so it never waits on a handler either way.
        using var deadline = new CancellationTokenSource(DelayUntil(branch.Deadline), _time);
        using var handlerCancellation = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        WorkResult result;
        try
        {
            var context = new BranchContext(gid.Transaction, Id, branch.Connection!, branch.Transaction!, branch.Scope!.Value.ServiceProvider);
            result = await handler(context, message, handlerCancellation.Token);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            Log.WorkCancelledAtDeadline(_logger, gid.Transaction, Id.Value);
            result = WorkResult.Refuse(HandlerPastDeadlineReason);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            result = WorkResult.Refuse($"the work handler failed: {e.GetType().Name}: {e.Message}");
            Log.WorkHandlerFailed(_logger, e, gid.Transaction, Id.Value);
        }
        catch (OperationCanceledException)
        {
            // Stopped half-way: the transport gave the delivery up (the broker's consumer timeout
            // closed the channel, the connection was lost, the host stops) and will deliver it
            // again. How much of this message's work is in the branch is unknown: a statement
            // cancelled mid-flight aborts the transaction, one cancelled between statements leaves
            // part of the work in it (and a handler's duplicate check would then skip the rest on
            // the redelivery). The branch cannot go on: it rolls back, the redelivery is refused.
            DeliveryWatch.WorkStopped(_logger, gid.Transaction, Id.Value);
            await RollBackWorkingAsync(branch, WorkStoppedReason, CancellationToken.None);
            throw;
        }

        if (result.Succeeded)
        {
            branch.ReadOnly &= result.ReadOnly;
            if (sequence > 0)
            {
                branch.Works.Add(sequence);
            }

            return null;
        }

        var refusal = result.Reason ?? "refused";
        Log.WorkRefused(_logger, gid.Transaction, Id.Value, refusal);
        await RollBackWorkingAsync(branch, refusal, CancellationToken.None);
        return refusal;
    }

    public async Task HandlePrepareAsync(ConsumeContext<PrepareBranch> context)
    {
        await InitializeAsync();
        var message = context.Message;
        if (!IsForMe(message.Participant, message.TransactionId) || !TryCreateGid(message.Coordinator, message.TransactionId, out var gid)
            || !PeersWithinCap(message.Participants, message.TransactionId, nameof(PrepareBranch))
            || !await KnowsCoordinatorAsync(message.Coordinator, message.TransactionId, nameof(PrepareBranch), context.CancellationToken))
        {
            return;
        }

        var vote = await VoteAsync(gid, message, context.CancellationToken);
        var coordinator = await context.GetSendEndpoint(TxCoordQueues.CoordinatorAddress(message.Coordinator));
        CrashPoint.Hit(CrashPoints.ParticipantAfterPrepare);
        await coordinator.Send(vote);
    }

    /// <summary>Prepares the branch under its lock and returns the vote to send.</summary>
    private async Task<BranchVoted> VoteAsync(BranchGid gid, PrepareBranch message, CancellationToken cancellationToken)
    {
        var branch = await _branches.AcquireAsync(gid, cancellationToken);
        (Vote Vote, string? Reason) vote;
        try
        {
            vote = await PrepareAsync(branch, message, cancellationToken);
        }
        finally
        {
            _branches.Release(branch);
        }

        Log.Voted(_logger, gid.Transaction, Id.Value, vote.Vote, vote.Reason ?? "");
        return new BranchVoted { TransactionId = message.TransactionId, Participant = Id, Vote = vote.Vote, Reason = vote.Reason };
    }

    /// <param name="mayVoteReadOnly">
    /// False for early prepare: the initiator relays its answer as a Yes vote, so the branch must prepare.
    /// </param>
    private async Task<(Vote, string?)> PrepareAsync(Branch branch, PrepareBranch message, CancellationToken cancellationToken, bool mayVoteReadOnly = true)
    {
        var gid = branch.Gid;
        if (branch.Phase == BranchPhase.Working)
        {
            var step = BranchRules.PrepareWorking(branch.Works, message.WorkCount, branch.ReadOnly, message.Protocol, mayVoteReadOnly, out var missing);
            if (step == PrepareStep.RollBack)
            {
                await RollBackWorkingAsync(branch, missing!, CancellationToken.None);
                return (Vote.No, missing);
            }

            try
            {
                if (step == PrepareStep.TryReadOnly)
                {
                    if (await BranchStore.TryFinishReadOnlyAsync(branch.Connection!, branch.Transaction!, gid, cancellationToken))
                    {
                        await CloseAsync(branch);
                        _branches.Remove(branch);
                        Log.FinishedReadOnly(_logger, gid.Transaction, Id.Value);
                        return (Vote.ReadOnly, null);
                    }

                    Log.ReadOnlyClaimWrote(_logger, gid.Transaction, Id.Value);
                }

                await RecordPreparingAsync(gid, message, cancellationToken);
                var wrote = await BranchStore.PrepareAsync(branch.Connection!, branch.Transaction!, gid, checkWrote: !branch.ReadOnly, cancellationToken);
                await CheckBranchWroteAsync(branch, wrote);
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
            {
                var reason = PostgresErrors.DescribePrepareFailure(e);
                Log.PrepareFailed(_logger, e, gid.Transaction, Id.Value, reason);
                await RollBackWorkingAsync(branch, reason, CancellationToken.None);
                return (Vote.No, reason);
            }

            await CloseAsync(branch);
            _branches.Remove(branch);
            return (Vote.Yes, null);
        }

        // Nothing in memory: a duplicate Prepare, a Prepare after a restart, or one that overtook its work.
        var status = await Store.GetStatusAsync(gid, cancellationToken);
        _branches.Remove(branch);
        var stored = BranchRules.VoteFromStatus(status, message.WorkCount);
        if (stored.Fence)
        {
            // Fence: the work, if it comes late, must never prepare.
            await Store.RecordAbortedAsync(gid, cancellationToken);
        }

        return (stored.Vote, stored.Reason);
    }

    public async Task HandleCommitAsync(ConsumeContext<CommitBranch> context)
    {
        await InitializeAsync();
        var message = context.Message;
        if (!IsForMe(message.Participant, message.TransactionId) || !TryCreateGid(message.Coordinator, message.TransactionId, out var gid)
            || !await KnowsCoordinatorAsync(message.Coordinator, message.TransactionId, nameof(CommitBranch), context.CancellationToken))
        {
            return;
        }

        if (await CommitAsync(gid, context.CancellationToken))
        {
            var coordinator = await context.GetSendEndpoint(TxCoordQueues.CoordinatorAddress(message.Coordinator));
            CrashPoint.Hit(CrashPoints.ParticipantAfterCommit);
            await coordinator.Send(new BranchCommitted { TransactionId = message.TransactionId, Participant = Id });
        }
    }

    /// <summary>
    /// <see cref="CommitBranch"/> for several transactions: each branch commits exactly as for a
    /// lone CommitBranch, up to <see cref="BatchParallelism"/> at once (each COMMIT PREPARED needs
    /// its own round trip, as PostgreSQL refuses it inside a batch's implicit transaction;
    /// concurrent ones share WAL flushes), then one <see cref="BranchesCommitted"/> names those
    /// committed, in the order asked. When one failed, the delivery fails after that answer and is
    /// retried whole (committing is idempotent: the committed ones are acknowledged again).
    /// </summary>
    public async Task HandleCommitBatchAsync(ConsumeContext<CommitBranches> context)
    {
        await InitializeAsync();
        var message = context.Message;
        var ids = BatchFor(message.Coordinator, message.Participant, message.TransactionIds);
        if (ids.Length > 0 && !await KnowsCoordinatorAsync(message.Coordinator, ids[0], nameof(CommitBranches), context.CancellationToken))
        {
            return;
        }

        var committed = await ForEachBranchAsync(ids, id => CommitAsync(BranchGid.Create(message.Coordinator, id, Id), context.CancellationToken));
        var acknowledged = ids.Where((_, i) => committed.Results[i]).ToArray();
        if (acknowledged.Length > 0)
        {
            var coordinator = await context.GetSendEndpoint(TxCoordQueues.CoordinatorAddress(message.Coordinator));
            CrashPoint.Hit(CrashPoints.ParticipantAfterCommit);
            await coordinator.Send(new BranchesCommitted { Participant = Id, TransactionIds = acknowledged });
        }

        committed.ThrowIfAnyFailed();
    }

    /// <summary>
    /// <see cref="PrepareBranch"/> for several transactions: each branch prepares exactly as for a
    /// lone PrepareBranch, up to <see cref="BatchParallelism"/> at once, then one
    /// <see cref="BranchesVoted"/> carries the votes, in the order asked. A branch whose prepare
    /// failed with an exception gets no vote; the delivery then fails after the answer and is
    /// retried whole (a prepared branch votes Yes again).
    /// </summary>
    public async Task HandlePrepareBatchAsync(ConsumeContext<PrepareBranches> context)
    {
        await InitializeAsync();
        var message = context.Message;
        var branches = message.Branches.DistinctBy(b => b.TransactionId)
            .Where(b => IsForMe(b.Participant, b.TransactionId) && b.Coordinator == message.Coordinator)
            .ToArray();
        if (branches.Length == 0 || !TryCreateGid(message.Coordinator, branches[0].TransactionId, out _)
            || Array.Exists(branches, b => !PeersWithinCap(b.Participants, b.TransactionId, nameof(PrepareBranches)))
            || !await KnowsCoordinatorAsync(message.Coordinator, branches[0].TransactionId, nameof(PrepareBranches), context.CancellationToken))
        {
            return;
        }

        var voted = await ForEachBranchAsync(branches, prepare =>
            VoteAsync(BranchGid.Create(prepare.Coordinator, prepare.TransactionId, Id), prepare, context.CancellationToken));

        var votes = voted.Results.Where(v => v is not null).Select(v => v!).ToArray();
        if (votes.Length > 0)
        {
            var coordinator = await context.GetSendEndpoint(TxCoordQueues.CoordinatorAddress(message.Coordinator));
            CrashPoint.Hit(CrashPoints.ParticipantAfterPrepare);
            await coordinator.Send(new BranchesVoted { Participant = Id, Votes = votes });
        }

        voted.ThrowIfAnyFailed();
    }

    /// <summary>The distinct transactions of a batch message, or none when the message is not for this participant.</summary>
    private TransactionId[] BatchFor(CoordinatorId coordinator, ParticipantId participant, IReadOnlyList<TransactionId> transactionIds)
    {
        var ids = transactionIds.Distinct().ToArray();
        return ids.Length > 0 && IsForMe(participant, ids[0]) && TryCreateGid(coordinator, ids[0], out _) ? ids : [];
    }

    /// <summary>How many branches of one batch message are worked on at once.</summary>
    internal const int BatchParallelism = 8;

    /// <summary>Runs <paramref name="action"/> for every item, <see cref="BatchParallelism"/> at once; a failure leaves its result default.</summary>
    private static async Task<BatchResults<TResult>> ForEachBranchAsync<TItem, TResult>(IReadOnlyList<TItem> items, Func<TItem, Task<TResult>> action)
    {
        var results = new TResult[items.Count];
        var failures = new List<Exception>();
        await Parallel.ForEachAsync(
            Enumerable.Range(0, items.Count),
            new ParallelOptions { MaxDegreeOfParallelism = BatchParallelism },
            async (i, _) =>
            {
                try
                {
                    results[i] = await action(items[i]);
                }
                catch (Exception e)
                {
                    lock (failures)
                    {
                        failures.Add(e);
                    }
                }
            });
        return new BatchResults<TResult>(results, failures);
    }

    private sealed record BatchResults<TResult>(TResult[] Results, List<Exception> Failures)
    {
        public void ThrowIfAnyFailed()
        {
            if (Failures.Count > 0)
            {
                throw Failures.Count == 1 ? Failures[0] : new AggregateException(Failures);
            }
        }
    }

    /// <summary>Commits a prepared branch. True when the branch is committed (now or before).</summary>
    internal async Task<bool> CommitAsync(BranchGid gid, CancellationToken cancellationToken)
    {
        var branch = await _branches.AcquireAsync(gid, cancellationToken);
        try
        {
            if (!BranchRules.MayCommit(working: branch.Phase == BranchPhase.Working))
            {
                Log.CommitForUnpreparedBranch(_logger, gid.Transaction, Id.Value);
                return false;
            }

            _branches.Remove(branch);
            try
            {
                await Store.CommitPreparedAsync(gid, cancellationToken);
                Log.Committed(_logger, gid.Transaction, Id.Value);
                return true;
            }
            catch (Exception e) when (PostgresErrors.IsNoSuchPreparedTransaction(e))
            {
                var status = await Store.GetStatusAsync(gid, cancellationToken);
                if (BranchRules.CommitAlreadyDone(status))
                {
                    return true; // a duplicate Commit, a reply lost after the commit ran, or nothing to commit
                }

                Log.CommitImpossible(_logger, gid.Transaction, Id.Value, status);
                return false;
            }
        }
        finally
        {
            _branches.Release(branch);
        }
    }

    public async Task HandleAbortAsync(ConsumeContext<AbortBranch> context)
    {
        await InitializeAsync();
        var message = context.Message;
        if (!IsForMe(message.Participant, message.TransactionId) || !TryCreateGid(message.Coordinator, message.TransactionId, out var gid)
            || !await KnowsCoordinatorAsync(message.Coordinator, message.TransactionId, nameof(AbortBranch), context.CancellationToken))
        {
            return;
        }

        if (await AbortAsync(gid, BoundReason(message.Reason) ?? "aborted by the coordinator", context.CancellationToken))
        {
            var coordinator = await context.GetSendEndpoint(TxCoordQueues.CoordinatorAddress(message.Coordinator));
            CrashPoint.Hit(CrashPoints.ParticipantAfterAbort);
            await coordinator.Send(new BranchAborted { TransactionId = message.TransactionId, Participant = Id });
        }
    }

    /// <summary>Aborts a branch in any state. False only when the branch had committed (a protocol violation, logged).</summary>
    internal async Task<bool> AbortAsync(BranchGid gid, string reason, CancellationToken cancellationToken)
    {
        var branch = await _branches.AcquireAsync(gid, cancellationToken);
        try
        {
            if (branch.Phase == BranchPhase.Working)
            {
                await RollBackWorkingAsync(branch, reason, cancellationToken);
                return true;
            }

            _branches.Remove(branch);
            var status = await Store.GetStatusAsync(gid, cancellationToken);
            if (BranchRules.AbortStored(status) == AbortStep.RollBackPrepared)
            {
                try
                {
                    await Store.RollbackPreparedAsync(gid, cancellationToken);
                }
                catch (Exception e) when (PostgresErrors.IsNoSuchPreparedTransaction(e))
                {
                    status = await Store.GetStatusAsync(gid, cancellationToken);
                }
            }

            if (BranchRules.AbortStored(status) == AbortStep.RefuseCommitted)
            {
                Log.AbortAfterCommit(_logger, gid.Transaction, Id.Value);
                return false;
            }

            await Store.RecordAbortedAsync(gid, cancellationToken);
            Log.Aborted(_logger, gid.Transaction, Id.Value, reason);
            return true;
        }
        finally
        {
            _branches.Release(branch);
        }
    }

    /// <summary>
    /// Rolls back the working branches whose timeout passed: their initiator or coordinator is gone.
    /// Never waits on a running work handler: a branch whose lock is taken is left for the next pass
    /// (its handler is cancelled at the deadline and rolls the branch back itself). Waiting would hold
    /// the resolution of prepared branches, which runs after this in the same loop, behind a handler
    /// that may be waiting on a row lock of one of them: a cycle.
    /// </summary>
    internal async Task ExpireBranchesAsync(CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        foreach (var branch in _branches.Expired(now))
        {
            if (!_branches.TryAcquire(branch))
            {
                continue;
            }

            try
            {
                if (branch.Phase == BranchPhase.Working && branch.Deadline <= now)
                {
                    Log.BranchTimedOut(_logger, branch.Gid.Transaction, Id.Value);
                    await RollBackWorkingAsync(branch, "branch timeout: no Prepare arrived in time", cancellationToken);
                }
                else if (branch.Phase == BranchPhase.New)
                {
                    _branches.Remove(branch);
                }
            }
            finally
            {
                _branches.Release(branch);
            }
        }
    }

    /// <summary>
    /// Finishes this participant's prepared branches whose decision did not arrive: asks each one's
    /// coordinator, commits or rolls back as told, and leaves the branch prepared (and counts it as
    /// blocked) when the coordinator does not answer or has not decided. In 2PC a participant that
    /// voted Yes never decides alone. Each branch is handled on its own: one that fails (its
    /// coordinator faults on the question, its database refuses the commit) is logged, retried after
    /// its own back-off (doubling from <see cref="TxCoordParticipantOptions.ResolveInterval"/> up to
    /// <see cref="TxCoordParticipantOptions.CoordinatorRetryMaxInterval"/>) and counted in
    /// <see cref="FailingBranches"/>, and the pass goes on with the others.
    /// </summary>
    internal async Task ResolvePreparedAsync(IClientFactory clients, TimeSpan minimumAge, CancellationToken cancellationToken)
    {
        await InitializeAsync();
        var prepared = await Store.ListPreparedAsync(Id, cancellationToken);
        var blocked = 0;
        foreach (var branch in prepared)
        {
            if (branch.Age < minimumAge || !_branchBackoff.MayAsk(branch.Gid))
            {
                continue;
            }

            try
            {
                if (await ResolveAsync(clients, branch, cancellationToken) == TerminationResult.Blocked)
                {
                    blocked++;
                }

                _branchBackoff.Answered(branch.Gid);
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                var retryIn = _branchBackoff.Failed(branch.Gid);
                Log.BranchResolutionFailed(_logger, e, branch.Gid.Transaction, Id.Value, retryIn);
            }
        }

        _branchBackoff.Retain(prepared.Select(p => p.Gid).ToHashSet());
        await TidyTerminationsAsync(prepared, cancellationToken);
        BlockedBranches = blocked;
        FailingBranches = _branchBackoff.Failing;
        LastResolutionPass = _time.GetUtcNow();
    }

    /// <summary>One prepared branch of a resolution pass: Blocked when it stays prepared, stuck.</summary>
    private async Task<TerminationResult> ResolveAsync(IClientFactory clients, PreparedBranch branch, CancellationToken cancellationToken)
    {
        var gid = branch.Gid;
        if (!_options.Serves(gid.Coordinator))
        {
            if (_reportedForeign.Add(gid))
            {
                Log.NotServedLeftAlone(_logger, gid.Transaction, Id.Value, gid.Value, gid.Coordinator.Value);
            }

            return TerminationResult.InProgress;
        }

        if (!_coordinatorBackoff.MayAsk(gid.Coordinator))
        {
            return await TerminateAsync(clients, branch, coordinatorAnswered: false, cancellationToken);
        }

        TransactionOutcome outcome;
        try
        {
            var client = clients.CreateRequestClient<GetTransactionOutcome>(
                TxCoordQueues.CoordinatorAddress(gid.Coordinator), RequestTimeout.After(ms: (int)_options.OutcomeQueryTimeout.TotalMilliseconds));
            var response = await client.GetResponse<TransactionOutcomeReported>(
                new GetTransactionOutcome { TransactionId = gid.Transaction, Participant = Id }, cancellationToken);
            outcome = response.Message.Outcome;
            _coordinatorBackoff.Answered(gid.Coordinator);
        }
        catch (RequestTimeoutException)
        {
            var retryIn = _coordinatorBackoff.Failed(gid.Coordinator);
            Log.CoordinatorBackoff(_logger, gid.Transaction, Id.Value, gid.Coordinator.Value, retryIn);
            var result = await TerminateAsync(clients, branch, coordinatorAnswered: false, cancellationToken);
            if (result == TerminationResult.Blocked)
            {
                Log.Blocked(_logger, gid.Transaction, Id.Value, gid.Coordinator.Value, branch.Age);
            }

            return result;
        }

        switch (outcome)
        {
            case TransactionOutcome.Committed:
                await CommitAsync(gid, cancellationToken);
                CrashPoint.Hit(CrashPoints.ParticipantResolution);
                return TerminationResult.Finished;
            case TransactionOutcome.Aborted:
                await AbortAsync(gid, "the coordinator reports the transaction aborted", cancellationToken);
                CrashPoint.Hit(CrashPoints.ParticipantResolution);
                return TerminationResult.Finished;
            default:
                Log.StillPending(_logger, gid.Transaction, Id.Value, branch.Age);
                return await TerminateAsync(clients, branch, coordinatorAnswered: true, cancellationToken);
        }
    }

    private async Task RollBackWorkingAsync(Branch branch, string reason, CancellationToken cancellationToken, bool forced = false)
    {
        try
        {
            await CheckBranchWroteAsync(branch, wrote: null);
            if (branch.Transaction is { } transaction && branch.Connection is { State: System.Data.ConnectionState.Open })
            {
                await transaction.RollbackAsync(cancellationToken);
            }
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            // The connection broke: PostgreSQL rolls the open transaction back itself.
            Log.RollbackFailed(_logger, e, branch.Gid.Transaction, Id.Value);
        }
        finally
        {
            // Even when the rollback was cancelled: closing the connection rolls the transaction
            // back, and the branch's scope and connection must not outlive it.
            await CloseAsync(branch);
            branch.Phase = BranchPhase.New;
            _branches.Remove(branch);
        }

        await Store.RecordAbortedAsync(branch.Gid, cancellationToken, forced);
        Log.Aborted(_logger, branch.Gid.Transaction, Id.Value, reason);
    }

    /// <summary>Ends the branch's scope, transaction and connection, in that order: the handler's services go before the connection they may hold.</summary>
    private async Task CloseAsync(Branch branch)
    {
        await DisposeScopeAsync(branch);
        if (branch.Transaction is { } transaction)
        {
            await transaction.DisposeAsync();
            branch.Transaction = null;
        }

        if (branch.Connection is { } connection)
        {
            await connection.DisposeAsync();
            branch.Connection = null;
        }
    }

    private bool IsForMe(ParticipantId participant, TransactionId transactionId)
    {
        if (participant == Id)
        {
            return true;
        }

        Log.MisaddressedMessage(_logger, transactionId, Id.Value, UntrustedText.Id(participant.Value));
        return false;
    }

    private bool TryCreateGid(CoordinatorId coordinator, TransactionId transactionId, out BranchGid gid)
    {
        if (BranchGid.IsValidName(coordinator.Value))
        {
            gid = BranchGid.Create(coordinator, transactionId, Id);
            return true;
        }

        Log.InvalidCoordinatorId(_logger, transactionId, Id.Value);
        gid = default;
        return false;
    }

    private bool TryReadWorkHeaders<TMessage>(ConsumeContext<TMessage> context, out TransactionId transactionId, out CoordinatorId coordinator, out TimeSpan timeout, out string error)
        where TMessage : class
    {
        transactionId = default;
        coordinator = default;
        timeout = _options.BranchTimeout;
        error = "";
        if (!TransactionId.TryParse(context.Headers.Get<string>(TxCoordHeaders.TransactionId), out transactionId))
        {
            error = $"the work message has no valid {TxCoordHeaders.TransactionId} header: send it through IGlobalTransaction.SendAsync";
            return false;
        }

        var coordinatorText = context.Headers.Get<string>(TxCoordHeaders.CoordinatorId);
        if (!BranchGid.IsValidName(coordinatorText))
        {
            error = $"the work message has no valid {TxCoordHeaders.CoordinatorId} header";
            return false;
        }

        coordinator = new CoordinatorId(coordinatorText);
        var timeoutMs = context.Headers.Get<long>(TxCoordHeaders.BranchTimeoutMs, default(long?));
        if (timeoutMs is > 0)
        {
            timeout = TimeSpan.FromMilliseconds(timeoutMs.Value);
        }

        return true;
    }

    public async ValueTask DisposeAsync()
    {
        await RollBackWorkingBranchesAsync();
        await _branchDataSource.DisposeAsync();
        await _dataSource.DisposeAsync();
    }

    /// <param name="Services">The branch's own DI scope: one per branch, shared by its works, disposed when it ends.</param>
    private sealed record BranchContext(
        TransactionId TransactionId, ParticipantId Participant, NpgsqlConnection Connection, NpgsqlTransaction Transaction, IServiceProvider Services)
        : IBranchContext;
}
