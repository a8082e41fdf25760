using System.Collections.Concurrent;
using System.Collections.Immutable;
using MassTransit;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using TxCoord.Coordinator.Journal;
using TxCoord.Coordinator.Monitoring;
using TxCoord.Coordinator.Security;
using TxCoord.Security;
using TxCoord.Faults;

namespace TxCoord.Coordinator.Runtime;

/// <summary>
/// The driver around the pure engine: keeps the transactions in flight in memory, turns
/// messages, journal results and time into engine events, and carries out the effects (bus
/// sends, journal writes, replies). One transaction is handled by one caller at a time; the
/// ones that end are dropped from memory, the journal answers for them afterwards.
/// </summary>
internal sealed partial class CoordinatorRuntime
{
    /// <summary>Re-drives after which a transaction still committing is reported as stuck.</summary>
    internal const int StuckAfterRedrives = 5;

    private const string PresumedAbortReason = "presumed abort: the coordinator does not know this transaction";

    /// <summary>At most this many participants are remembered in <see cref="ParticipantsLastSeen"/>.</summary>
    internal const int MaxParticipantsSeen = 10_000;

    private readonly ConcurrentDictionary<TransactionId, Entry> _entries = new();
    private readonly ConcurrentDictionary<ParticipantId, DateTimeOffset> _lastSeen = new();
    private readonly CoordinatorMonitor? _monitor;
    private readonly TransactionEngine _engine;
    private readonly ITransactionJournal _journal;
    private readonly ICoordinatorTransport _transport;
    private readonly TimeProvider _time;
    private readonly ILogger<CoordinatorRuntime> _logger;

    public CoordinatorRuntime(
        IOptions<CoordinatorOptions> options,
        ITransactionJournal journal,
        ICoordinatorTransport transport,
        TimeProvider time,
        ILogger<CoordinatorRuntime> logger,
        CoordinatorMonitor? monitor = null)
    {
        Options = options.Value;
        Id = new CoordinatorId(Options.CoordinatorId);
        _engine = new TransactionEngine(EngineSettings.From(Options));
        _journal = journal;
        _transport = transport;
        _time = time;
        _logger = logger;
        _monitor = monitor;
    }

    public CoordinatorId Id { get; }

    public CoordinatorOptions Options { get; }

    /// <summary>How many transactions are held in memory (preparing, deciding or committing).</summary>
    public int InFlightCount => _entries.Count(e => e.Value.State is { IsTerminal: false });

    /// <summary>A snapshot of one transaction's state, or null when it is not in memory.</summary>
    public TransactionState? Find(TransactionId transactionId) =>
        _entries.TryGetValue(transactionId, out var entry) ? entry.State : null;

    /// <summary>
    /// The states of every transaction in memory, for the dashboard. Read without taking their
    /// gates: each state is an immutable record, at most a moment old.
    /// </summary>
    public IReadOnlyList<TransactionState> Snapshot() =>
        [.. _entries.Values.Select(e => e.State).OfType<TransactionState>()];

    /// <summary>When each participant last sent this coordinator a vote, an acknowledgement or an outcome question (since it started).</summary>
    public IReadOnlyDictionary<ParticipantId, DateTimeOffset> ParticipantsLastSeen => _lastSeen;

    /// <summary>
    /// An operator's "retry now": brings a pending retry of the transaction (a phase-2 re-drive,
    /// or a failed commit-decision write) forward to now and runs it. Returns the state after
    /// it, or null when the transaction is not in memory or has no retry pending.
    /// </summary>
    public async Task<TransactionState?> RetryNowAsync(TransactionId transactionId, CancellationToken cancellationToken)
    {
        TransactionState? after = null;
        if (_entries.TryGetValue(transactionId, out var entry))
        {
            await TryWithEntryAsync(transactionId, entry, async e =>
            {
                if (e.State is { RetryAt: not null } state)
                {
                    // Only the schedule changes: the engine decides what a due retry does.
                    e.State = state with { RetryAt = Now };
                    await ApplyAsync(e, new Tick(), cancellationToken);
                    after = e.State;
                }
            }, cancellationToken);
        }

        return after;
    }

    /// <summary>
    /// An operator's heuristic commit of a transaction this coordinator does not hold. Holding the
    /// transaction's entry, so that no commit request, vote or outcome question can start or decide
    /// it meanwhile: refused when the transaction is in memory or the journal holds a row for it;
    /// otherwise <paramref name="decision"/> is written (forced) and driven like a recovered one.
    /// </summary>
    /// <returns>Null when the decision was written and is being driven; else what refused it.</returns>
    public async Task<HeuristicCommitRefusal?> CommitHeuristicallyAsync(CommitDecision decision, CancellationToken cancellationToken)
    {
        HeuristicCommitRefusal? refusal = null;
        await WithEntryAsync(decision.TransactionId, async entry =>
        {
            if (entry.State is { } live)
            {
                refusal = new HeuristicCommitRefusal(live, null);
                return;
            }

            if (await _journal.FindAsync(decision.TransactionId, cancellationToken) is { } known)
            {
                refusal = new HeuristicCommitRefusal(null, known);
                return;
            }

            await _journal.WriteCommitDecisionAsync(decision, Now, cancellationToken);
            var row = await _journal.FindAsync(decision.TransactionId, cancellationToken)
                ?? throw new InvalidOperationException($"Transaction {decision.TransactionId}: the commit decision just written is not in the journal.");
            var transition = _engine.Recover(decision.TransactionId, RecoveredFrom(row), Now);
            LogRecovered(transition.State);
            await RunAsync(entry, transition, cancellationToken);
        }, cancellationToken);

        return refusal;
    }

    // ---- bus handlers --------------------------------------------------------------------

    public Task HandleCommitAsync(ConsumeContext<CommitTransaction> context) =>
        CommitAsync(context.Message, ReplyTarget.From(context), context.CancellationToken);

    public Task HandleRollbackAsync(ConsumeContext<RollbackTransaction> context) =>
        RollbackAsync(context.Message, ReplyTarget.From(context), context.CancellationToken);

    public async Task HandleGetOutcomeAsync(ConsumeContext<GetTransactionOutcome> context)
    {
        var outcome = await GetOutcomeAsync(context.Message, context.CancellationToken);
        await context.RespondAsync(new TransactionOutcomeReported { TransactionId = context.Message.TransactionId, Outcome = outcome });
    }

    public Task HandleVoteAsync(ConsumeContext<BranchVoted> context) => VoteAsync(context.Message, context.CancellationToken);

    public Task HandleCommittedAsync(ConsumeContext<BranchCommitted> context) =>
        CommitAcknowledgedAsync(context.Message, context.CancellationToken);

    /// <summary>Each vote of a batch on its own, at once; the delivery is retried when any of them failed (votes are idempotent).</summary>
    public Task HandleVotesAsync(ConsumeContext<BranchesVoted> context) =>
        Task.WhenAll(context.Message.Votes.Select(vote => VoteAsync(vote with { Participant = context.Message.Participant }, context.CancellationToken)));

    /// <summary>Each acknowledgement of a batch on its own, at once; the delivery is retried when any of them failed (all are idempotent).</summary>
    public Task HandleCommittedBatchAsync(ConsumeContext<BranchesCommitted> context) =>
        Task.WhenAll(context.Message.TransactionIds.Distinct().Select(id =>
            CommitAcknowledgedAsync(new BranchCommitted { TransactionId = id, Participant = context.Message.Participant }, context.CancellationToken)));

    public Task HandleAbortedAsync(ConsumeContext<BranchAborted> context) =>
        AbortAcknowledgedAsync(context.Message, context.CancellationToken);

    // ---- the messages, without the bus ----------------------------------------------------

    /// <summary>
    /// A commit request. New: prepare every participant. Known: a duplicate, answered with the
    /// outcome once there is one. Finished (only the journal knows it): answered from the journal.
    /// </summary>
    public Task CommitAsync(CommitTransaction message, ReplyTarget? replyTo, CancellationToken cancellationToken)
    {
        message = MessageLimits.Bound(message);
        var id = message.TransactionId;
        var participants = (message.Participants ?? []).ToImmutableArray();
        // Relayed early-prepare votes: only for the transaction's own participants, and with
        // authentication on only with the participant's proof; the others are asked to prepare.
        var (prepared, untrusted) = CoordinatorSenderChecks.CheckRelayedVotes(Options.Security, Id, message);
        var request = new CommitRequested(participants, message.Deadline == default ? null : message.Deadline, prepared, [.. message.WorkCounts ?? []]);
        return WithEntryAsync(id, async entry =>
        {
            entry.AddReplyTarget(replyTo);
            if (entry.State is not null)
            {
                await ApplyAsync(entry, request, cancellationToken);
                return;
            }

            var known = await _journal.FindAsync(id, cancellationToken);
            if (await TryResumePreCommitAsync(entry, known, cancellationToken))
            {
                await ApplyAsync(entry, request, cancellationToken);
                return;
            }

            if (known is not null)
            {
                var outcome = known.IsCommit ? TransactionOutcome.Committed : TransactionOutcome.Aborted;
                Log.RequestForFinished(_logger, id, nameof(CommitTransaction), outcome);
                if (known.IsCommit)
                {
                    await ReplyAsync(entry, id, TransactionOutcome.Committed, null, cancellationToken);
                }
                else
                {
                    // Its participants may still hold the work: tell them again (no more than the cap: one request must not address hundreds of queues).
                    var toTell = participants.Length <= Options.MaxParticipantsPerTransaction ? participants : [];
                    await RunAsync(entry, TransactionEngine.AbortUnknown(id, message.Protocol, toTell, known.Reason ?? "aborted", Now), cancellationToken);
                }

                return;
            }

            Log.CommitRequested(_logger, id, message.Protocol, Join(participants));
            foreach (var (participant, why) in untrusted)
            {
                CountRefused("CommitTransaction.Prepared", participants.Contains(participant) ? "relayed_vote_unproven" : "not_a_participant");
                CoordinatorSenderChecks.RelayedVoteUntrusted(_logger, id, participant.Value ?? "", why);
            }

            if (!prepared.IsEmpty)
            {
                Log.EarlyPreparedVotesRelayed(_logger, id, Join(prepared));
            }

            await RunAsync(entry, _engine.Begin(id, message.Protocol, request, Now), cancellationToken);
        }, cancellationToken);
    }

    /// <summary>
    /// A rollback request. Aborts a transaction still preparing; after the commit decision it is
    /// answered Committed. For a transaction the coordinator does not hold: Committed when the
    /// journal says so, otherwise every named participant is told to abort and the answer is Aborted.
    /// </summary>
    public Task RollbackAsync(RollbackTransaction message, ReplyTarget? replyTo, CancellationToken cancellationToken)
    {
        message = MessageLimits.Bound(message, Options.MaxReasonLength);
        var id = message.TransactionId;
        return WithEntryAsync(id, async entry =>
        {
            entry.AddReplyTarget(replyTo);
            Log.RollbackRequested(_logger, id, message.Reason ?? "");
            if (entry.State is not null)
            {
                await ApplyAsync(entry, new RollbackRequested(message.Reason), cancellationToken);
                return;
            }

            var known = await _journal.FindAsync(id, cancellationToken);
            if (await TryResumePreCommitAsync(entry, known, cancellationToken))
            {
                await ApplyAsync(entry, new RollbackRequested(message.Reason), cancellationToken);
                return;
            }

            if (known is { IsCommit: true })
            {
                Log.RequestForFinished(_logger, id, nameof(RollbackTransaction), TransactionOutcome.Committed);
                await ReplyAsync(entry, id, TransactionOutcome.Committed, TransactionEngine.RollbackTooLate, cancellationToken);
                return;
            }

            var named = message.Participants ?? [];
            if (named.Count > Options.MaxParticipantsPerTransaction)
            {
                // Aborted all the same, but nobody is told: each participant told is one more queue declared.
                await RunAsync(entry, TransactionEngine.AbortUnknown(
                    id, message.Protocol, [], TransactionEngine.TooManyParticipants(named.Count, Options.MaxParticipantsPerTransaction), Now), cancellationToken);
                return;
            }

            var reason = TransactionEngine.RollbackReason(message.Reason);
            await RunAsync(entry, TransactionEngine.AbortUnknown(id, message.Protocol, named, reason, Now), cancellationToken);
        }, cancellationToken);
    }

    /// <summary>
    /// What became of a transaction: Pending while it prepares or its decision is being forced,
    /// Committed once the decision is durable, otherwise Aborted. A transaction nobody knows is
    /// Aborted by presumption, and that answer is recorded so a commit request arriving later
    /// cannot contradict it.
    /// </summary>
    public async Task<TransactionOutcome> GetOutcomeAsync(GetTransactionOutcome message, CancellationToken cancellationToken)
    {
        message = MessageLimits.Bound(message);
        var id = message.TransactionId;
        var outcome = TransactionOutcome.Aborted;
        if (message.Participant is { } asker)
        {
            Seen(asker);
        }

        await WithEntryAsync(id, async entry =>
        {
            if (entry.State is { } state)
            {
                outcome = state.Phase switch
                {
                    TransactionPhase.Preparing or TransactionPhase.Deciding or TransactionPhase.ForcingPreCommit or TransactionPhase.PreCommitting
                        or TransactionPhase.Aborting => TransactionOutcome.Pending,
                    TransactionPhase.Committing or TransactionPhase.Committed => TransactionOutcome.Committed,
                    _ => TransactionOutcome.Aborted,
                };
                return;
            }

            var known = await _journal.FindAsync(id, cancellationToken);
            if (await TryResumePreCommitAsync(entry, known, cancellationToken))
            {
                outcome = TransactionOutcome.Pending;
                return;
            }

            if (known is null)
            {
                ImmutableArray<ParticipantId> asker = message.Participant is { } p && BranchGid.IsValidName(p.Value) ? [p] : [];
                known = await PresumeAbortAsync(id, asker, cancellationToken);
                if (await TryResumePreCommitAsync(entry, known, cancellationToken))
                {
                    outcome = TransactionOutcome.Pending;
                    return;
                }
            }

            outcome = known is { IsCommit: true } ? TransactionOutcome.Committed : TransactionOutcome.Aborted;
        }, cancellationToken);

        Log.OutcomeAsked(_logger, id, message.Participant?.Value ?? "the initiator", outcome);
        return outcome;
    }

    /// <summary>
    /// Presumed abort made durable (forced) before anyone is told: inserts the abort row unless a row
    /// exists, then reads the row back and returns it. A commit decision that an earlier
    /// incarnation sent just before it died can land between a first read and the insert; the
    /// read-back sees it, so the caller answers Committed instead of a false Aborted (found by
    /// the 2PC model in Coordinator/models).
    /// </summary>
    private async Task<JournalEntry?> PresumeAbortAsync(TransactionId id, ImmutableArray<ParticipantId> participants, CancellationToken cancellationToken)
    {
        // Forced: the asker may be a prepared participant (early prepare) whose Yes vote a later
        // CommitTransaction could still relay; a crash of the journal's server that lost this row
        // would let that commit be decided after this participant was told Aborted.
        await _journal.RecordAbortAsync(
            new AbortRecord(id, Id, CommitProtocol.TwoPhase, participants, PresumedAbortReason, Now, Forced: true), Now, cancellationToken);
        Log.PresumedAbortRecorded(_logger, id);
        return await _journal.FindAsync(id, cancellationToken);
    }

    /// <summary>
    /// A vote. For a transaction not in memory a Yes voter is waiting for the decision: it is
    /// told to commit when the journal holds a commit decision, otherwise to abort (presumed abort).
    /// </summary>
    public Task VoteAsync(BranchVoted message, CancellationToken cancellationToken)
    {
        message = MessageLimits.Bound(message, Options.MaxReasonLength);
        CrashPoint.Hit(CrashPoints.CoordinatorAfterVote);
        Seen(message.Participant);
        var id = message.TransactionId;
        return WithEntryAsync(id, async entry =>
        {
            if (entry.State is { } state)
            {
                if (!state.Participants.Contains(message.Participant))
                {
                    Log.StrayVote(_logger, id, message.Participant.Value ?? "");
                }

                await ApplyAsync(entry, new VoteReceived(message.Participant, message.Vote, message.Reason), cancellationToken);
                return;
            }

            if (message.Vote != Vote.Yes || !BranchGid.IsValidName(message.Participant.Value))
            {
                Log.IgnoredForUnknown(_logger, id, $"{nameof(BranchVoted)} {message.Vote}", message.Participant.Value ?? "");
                return;
            }

            var known = await _journal.FindAsync(id, cancellationToken);
            if (await TryResumePreCommitAsync(entry, known, cancellationToken))
            {
                await ApplyAsync(entry, new VoteReceived(message.Participant, message.Vote, message.Reason), cancellationToken);
                return;
            }

            if (known is null)
            {
                // Answer Abort only once the journal holds the abort: without the row, a duplicate
                // CommitTransaction could begin the transaction again and commit it (found by spin).
                known = await PresumeAbortAsync(id, [message.Participant], cancellationToken);
                if (await TryResumePreCommitAsync(entry, known, cancellationToken))
                {
                    await ApplyAsync(entry, new VoteReceived(message.Participant, message.Vote, message.Reason), cancellationToken);
                    return;
                }
            }

            if (known is { IsCommit: true })
            {
                Log.VoteForUnknown(_logger, id, message.Participant.Value, TransactionOutcome.Committed, nameof(CommitBranch));
                await SendAsync(id, message.Participant, new CommitBranch { TransactionId = id, Coordinator = Id, Participant = message.Participant }, cancellationToken);
            }
            else
            {
                Log.VoteForUnknown(_logger, id, message.Participant.Value, TransactionOutcome.Aborted, nameof(AbortBranch));
                var reason = known?.Reason ?? PresumedAbortReason;
                await SendAsync(id, message.Participant, new AbortBranch { TransactionId = id, Coordinator = Id, Participant = message.Participant, Reason = reason }, cancellationToken);
            }
        }, cancellationToken);
    }

    /// <summary>A commit acknowledgement. Ignored for a transaction not in memory (it has ended, or recovery will re-drive it).</summary>
    public Task CommitAcknowledgedAsync(BranchCommitted message, CancellationToken cancellationToken)
    {
        message = MessageLimits.Bound(message);
        CrashPoint.Hit(CrashPoints.CoordinatorAfterAck);
        Seen(message.Participant);
        return WithExistingEntryAsync(message.TransactionId, nameof(BranchCommitted), message.Participant, entry =>
            ApplyAsync(entry, new CommitAcknowledged(message.Participant), cancellationToken), cancellationToken);
    }

    /// <summary>An abort acknowledgement. Aborts await none, so it only matters when it contradicts a commit decision.</summary>
    public Task AbortAcknowledgedAsync(BranchAborted message, CancellationToken cancellationToken)
    {
        message = MessageLimits.Bound(message);
        Seen(message.Participant);
        return WithExistingEntryAsync(message.TransactionId, nameof(BranchAborted), message.Participant, entry =>
        {
            if (entry.State is { Phase: TransactionPhase.Committing or TransactionPhase.Committed } state && state.YesVoters.Contains(message.Participant))
            {
                Log.AbortedAfterCommit(_logger, message.TransactionId, message.Participant.Value ?? "");
            }

            return ApplyAsync(entry, new AbortAcknowledged(message.Participant), cancellationToken);
        }, cancellationToken);
    }

    // ---- time and recovery ----------------------------------------------------------------

    /// <summary>Delivers a tick to every transaction whose next deadline has passed.</summary>
    public async Task TickAsync(CancellationToken cancellationToken)
    {
        var now = Now;
        foreach (var (id, entry) in _entries)
        {
            if (entry.NextDueAt is not { } due || due > now)
            {
                continue;
            }

            try
            {
                // An entry busy with a message (or a slow journal write) is ticked next time
                // round, so one slow transaction never holds up the deadlines of the others.
                await TryWithEntryAsync(id, entry, e => e.State is null ? Task.CompletedTask : ApplyAsync(e, new Tick(), cancellationToken), cancellationToken, waitForGate: false);
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                Log.TickFailed(_logger, ex, id);
            }
        }
    }

    /// <summary>
    /// Resumes every transaction this coordinator left committing: re-sends CommitBranch to the
    /// participants not known to have acknowledged and keeps re-driving them. Safe to run again
    /// after a failure part-way: transactions already held are skipped.
    /// </summary>
    /// <returns>How many transactions were resumed.</returns>
    public async Task<int> RecoverAsync(CancellationToken cancellationToken)
    {
        var count = 0;
        await foreach (var row in _journal.LoadUnfinishedAsync(Id, cancellationToken))
        {
            await WithEntryAsync(row.TransactionId, async entry =>
            {
                if (entry.State is not null)
                {
                    return;
                }

                var transition = _engine.Recover(row.TransactionId, RecoveredFrom(row), Now);
                LogRecovered(transition.State);
                await RunAsync(entry, transition, cancellationToken);
                count++;
                CrashPoint.Hit(CrashPoints.CoordinatorRecovery);
            }, cancellationToken);
        }

        return count;
    }

    /// <summary>
    /// The background loop: recovery first (retried with back-off until it succeeds), then a
    /// tick every <see cref="CoordinatorOptions.TickInterval"/>, until cancelled.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(Options.TickInterval, _time);
        var recovered = false;
        var recoveryDelay = Options.RedriveInitialInterval;
        var nextRecoveryAt = Now;
        var settings = EngineSettings.From(Options);
        do
        {
            if (!recovered && Now >= nextRecoveryAt)
            {
                try
                {
                    var count = await RecoverAsync(cancellationToken);
                    recovered = true;
                    Log.RecoveryDone(_logger, Id.Value, count);
                }
                catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
                {
                    Log.RecoveryFailed(_logger, ex, Id.Value, InFlightCount, recoveryDelay);
                    nextRecoveryAt = Now + recoveryDelay;
                    recoveryDelay = settings.NextInterval(recoveryDelay);
                }
            }

            await TickAsync(cancellationToken);
        }
        while (await timer.WaitForNextTickAsync(cancellationToken));
    }

    // ---- the driver's core ------------------------------------------------------------------

    private DateTimeOffset Now => _time.GetUtcNow();

    /// <summary>
    /// Runs <paramref name="action"/> holding the transaction's entry, created empty when absent.
    /// </summary>
    private async Task WithEntryAsync(TransactionId id, Func<Entry, Task> action, CancellationToken cancellationToken)
    {
        while (!await TryWithEntryAsync(id, _entries.GetOrAdd(id, static _ => new Entry()), action, cancellationToken))
        {
            // The entry left memory while we waited for it: take the current one.
        }
    }

    /// <summary>Runs <paramref name="action"/> holding the transaction's entry when it is in memory; otherwise does nothing.</summary>
    private async Task WithExistingEntryAsync(
        TransactionId id, string messageType, ParticipantId participant, Func<Entry, Task> action, CancellationToken cancellationToken)
    {
        if (_entries.TryGetValue(id, out var entry) && await TryWithEntryAsync(id, entry, e => e.State is null ? Task.CompletedTask : action(e), cancellationToken))
        {
            return;
        }

        if (participant != default)
        {
            Log.IgnoredForUnknown(_logger, id, messageType, participant.Value ?? "");
        }
    }

    /// <summary>
    /// Runs <paramref name="action"/> holding <paramref name="entry"/>'s gate; false, without
    /// running it, when the entry has already left memory. An entry left empty or terminal is
    /// dropped from memory afterwards: the journal answers for it from then on.
    /// </summary>
    /// <param name="waitForGate">False to give up at once (returning true) when someone else holds the entry.</param>
    private async Task<bool> TryWithEntryAsync(
        TransactionId id, Entry entry, Func<Entry, Task> action, CancellationToken cancellationToken, bool waitForGate = true)
    {
        if (!waitForGate)
        {
            if (!await entry.Gate.WaitAsync(0, cancellationToken))
            {
                return true;
            }
        }
        else
        {
            await entry.Gate.WaitAsync(cancellationToken);
        }

        try
        {
            if (entry.Removed)
            {
                return false;
            }

            try
            {
                await action(entry);
            }
            finally
            {
                if (entry.State is null or { IsTerminal: true })
                {
                    entry.Removed = true;
                    _entries.TryRemove(new KeyValuePair<TransactionId, Entry>(id, entry));
                }
            }

            return true;
        }
        finally
        {
            entry.Gate.Release();
        }
    }

    private Task ApplyAsync(Entry entry, TransactionEvent @event, CancellationToken cancellationToken) =>
        RunAsync(entry, _engine.Apply(entry.State!, @event, Now), cancellationToken);

    /// <summary>
    /// Adopts the transition's state and carries out its effects in order; an effect that yields
    /// an event (the decision write) feeds it back to the engine before returning.
    /// </summary>
    private async Task RunAsync(Entry entry, Transition transition, CancellationToken cancellationToken)
    {
        var pending = new Queue<TransactionEvent>();
        try
        {
            while (true)
            {
                var previous = entry.State;
                entry.State = transition.State;
                _monitor?.Observe(previous, transition.State);
                if (previous?.Phase != transition.State.Phase)
                {
                    LogPhase(transition.State);
                }
                else if (transition.State.Redrives > previous.Redrives)
                {
                    LogRedrive(transition.State);
                }

                var effects = transition.Effects;
                for (var i = 0; i < effects.Length; i++)
                {
                    var sends = CountSends(effects, i);
                    if (sends > 1)
                    {
                        // Messages of one step (Prepare to every participant, Commit to every Yes
                        // voter, ...) go out together: each waits for the broker's confirm, and
                        // nothing orders them. Sends never yield an event.
                        await Task.WhenAll(Enumerable.Range(i, sends).Select(k => ExecuteAsync(entry, effects[k], cancellationToken)));
                        i += sends - 1;
                        continue;
                    }

                    if (await ExecuteAsync(entry, effects[i], cancellationToken) is { } next)
                    {
                        pending.Enqueue(next);
                    }
                }

                if (!pending.TryDequeue(out var @event))
                {
                    return;
                }

                transition = _engine.Apply(entry.State, @event, Now);
            }
        }
        finally
        {
            entry.NextDueAt = entry.State?.NextDeadline;
        }
    }

    /// <summary>
    /// How many messages to participants follow one another from <paramref name="start"/>. One
    /// at a time while a crash point is armed, so that a point named "between" two sends strikes
    /// between them.
    /// </summary>
    private static int CountSends(ImmutableArray<TransactionEffect> effects, int start)
    {
        if (CrashPoint.IsArmed)
        {
            return 1;
        }

        var end = start;
        while (end < effects.Length && effects[end] is SendPrepare or SendCommit or SendAbort or SendPreCommit)
        {
            end++;
        }

        return end - start;
    }

    private async Task<TransactionEvent?> ExecuteAsync(Entry entry, TransactionEffect effect, CancellationToken cancellationToken)
    {
        var state = entry.State!;
        var id = state.TransactionId;
        switch (effect)
        {
            case SendPrepare prepare:
                CrashPoint.Hit(CrashPoints.CoordinatorBeforePrepare);
                await SendAsync(id, prepare.Participant, new PrepareBranch
                {
                    TransactionId = id,
                    Coordinator = Id,
                    Participant = prepare.Participant,
                    Protocol = state.Protocol,
                    Participants = state.Participants,
                    WorkCount = prepare.WorkCount,
                }, cancellationToken);
                CrashPoint.Hit(CrashPoints.CoordinatorAfterPrepare);
                return null;

            case SendCommit commit:
                await SendAsync(id, commit.Participant, new CommitBranch { TransactionId = id, Coordinator = Id, Participant = commit.Participant }, cancellationToken);
                CrashPoint.Hit(CrashPoints.CoordinatorAfterCommitSent);
                return null;

            case SendPreCommit preCommit:
                await SendAsync(id, preCommit.Participant, new PreCommitBranch { TransactionId = id, Coordinator = Id, Participant = preCommit.Participant }, cancellationToken);
                CrashPoint.Hit(CrashPoints.CoordinatorAfterPreCommitSent);
                return null;

            case ForcePreCommit:
                return await ForcePreCommitAsync(state, cancellationToken);

            case SendAbort abort:
                await SendAsync(id, abort.Participant, new AbortBranch { TransactionId = id, Coordinator = Id, Participant = abort.Participant, Reason = abort.Reason }, cancellationToken);
                CrashPoint.Hit(CrashPoints.CoordinatorAfterAbortSent);
                return null;

            case ForceCommitDecision:
                var writeStarted = _time.GetTimestamp();
                try
                {
                    CrashPoint.Hit(CrashPoints.CoordinatorBeforeDecision);
                    await _journal.WriteCommitDecisionAsync(Decision(state), Now, cancellationToken);
                    CrashPoint.Hit(CrashPoints.CoordinatorAfterDecision);
                    _monitor?.DecisionWritten(_time.GetElapsedTime(writeStarted), succeeded: true);
                    Log.DecisionDurable(_logger, id, state.DecisionWriteAttempts);
                    return new DecisionDurable();
                }
                catch (JournalDecisionRefusedException refused)
                {
                    _monitor?.DecisionWritten(_time.GetElapsedTime(writeStarted), succeeded: false);
                    Log.DecisionRefused(_logger, id, refused.Message);
                    return new DecisionRefused(refused.Message);
                }
                catch (Exception ex)
                {
                    // Including a cancellation: the write's outcome is unknown either way.
                    _monitor?.DecisionWritten(_time.GetElapsedTime(writeStarted), succeeded: false);
                    Log.DecisionWriteFailed(_logger, ex, id, state.DecisionWriteAttempts);
                    return new DecisionWriteFailed(ex.Message);
                }

            case RecordAbort abort:
                return await RecordAbortAsync(state, abort, cancellationToken);

            case RecordEnd:
                CrashPoint.Hit(CrashPoints.CoordinatorBeforeEnd);
                await UnforcedAsync(id, "the end", ct => _journal.RecordEndAsync(Decision(state), Now, ct), cancellationToken);
                return null;

            case RecordAck ack:
                await UnforcedAsync(id, $"the acknowledgement of {ack.Participant}", ct => _journal.RecordAckAsync(id, ack.Participant, Now, ct), cancellationToken);
                return null;

            case ReplyToInitiator reply:
                await ReplyAsync(entry, id, reply.Outcome, reply.Reason, cancellationToken);
                return null;

            default:
                throw new InvalidOperationException($"Transaction {id}: unknown effect {effect}.");
        }
    }

    /// <summary>
    /// Writes the abort row and says what the journal holds afterwards: the abort (go on, tell
    /// everyone), a commit decision or PreCommit of an earlier incarnation (finish that instead),
    /// or nothing known (retry; nobody is told anything meanwhile).
    /// </summary>
    private async Task<TransactionEvent> RecordAbortAsync(TransactionState state, RecordAbort abort, CancellationToken cancellationToken)
    {
        var id = state.TransactionId;
        try
        {
            if (await _journal.RecordAbortAsync(
                    new AbortRecord(id, Id, state.Protocol, state.Participants, abort.Reason, state.CreatedAt, abort.AfterPreCommit, Forced: true), Now, cancellationToken))
            {
                return new AbortRecorded();
            }

            // A row was there already: an abort (a repeated abort of a finished transaction), or
            // a decision an earlier incarnation of this coordinator wrote.
            var row = await _journal.FindAsync(id, cancellationToken);
            switch (row)
            {
                case { State: JournalState.Aborted }:
                    return new AbortRecorded();
                case not null when row.CoordinatorId != Id:
                    Log.AbortWriteFailed(_logger, null, id, state.AbortWriteAttempts, $"the journal holds this transaction id for coordinator {row.CoordinatorId}");
                    return new AbortWriteFailed($"row of coordinator {row.CoordinatorId}");
                case { IsCommit: true } or { State: JournalState.PreCommitting }:
                    Log.AbortFoundDecision(_logger, id, row.State);
                    return new JournalHoldsDecision(RecoveredFrom(row));
                default:
                    Log.AbortWriteFailed(_logger, null, id, state.AbortWriteAttempts, "no row found after the write");
                    return new AbortWriteFailed("no row found after the write");
            }
        }
        catch (Exception ex)
        {
            // Including a cancellation: whether the row exists is unknown, so nobody is told.
            Log.AbortWriteFailed(_logger, ex, id, state.AbortWriteAttempts, ex.Message);
            return new AbortWriteFailed(ex.Message);
        }
    }

    private CommitDecision Decision(TransactionState state) =>
        new(state.TransactionId, Id, state.Protocol, [.. state.YesVoters], state.CreatedAt, state.DecidedAt ?? state.CreatedAt);

    private async Task SendAsync<T>(TransactionId id, ParticipantId participant, T message, CancellationToken cancellationToken)
        where T : class
    {
        try
        {
            await _transport.SendToParticipantAsync(participant, message, cancellationToken);
            _monitor?.MessageSent(typeof(T).Name, succeeded: true);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            _monitor?.MessageSent(typeof(T).Name, succeeded: false);
            // Safe to lose: a lost Prepare ends in a vote timeout, a lost Commit is re-driven,
            // a lost Abort is answered by presumption when the participant asks.
            Log.SendFailed(_logger, ex, id, typeof(T).Name, participant.Value);
        }
    }

    private async Task ReplyAsync(Entry entry, TransactionId id, TransactionOutcome outcome, string? reason, CancellationToken cancellationToken)
    {
        var message = new TransactionCompleted { TransactionId = id, Outcome = outcome, Reason = reason };
        foreach (var target in entry.TakeReplyTargets())
        {
            try
            {
                await _transport.ReplyAsync(target, message, cancellationToken);
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                // The initiator times out and asks for the outcome.
                Log.ReplyFailed(_logger, ex, id, outcome, target.Address);
            }
        }
    }

    private async Task UnforcedAsync(TransactionId id, string step, Func<CancellationToken, Task> write, CancellationToken cancellationToken)
    {
        try
        {
            await write(cancellationToken);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            Log.UnforcedWriteFailed(_logger, ex, id, step);
        }
    }

    private void LogPhase(TransactionState state)
    {
        switch (state.Phase)
        {
            case TransactionPhase.Committed:
                Log.Committed(_logger, state.TransactionId, state.Protocol, Join(state.Participants));
                break;
            case TransactionPhase.Aborted:
                Log.Aborted(_logger, state.TransactionId, state.Protocol, state.Reason ?? "");
                break;
            default:
                Log.PhaseChanged(_logger, state.TransactionId, state.Phase);
                break;
        }

    }

    private void LogRedrive(TransactionState state)
    {
        var waiting = Join(state.UnacknowledgedYesVoters);
        if (state.Redrives >= StuckAfterRedrives)
        {
            Log.StuckCommitting(_logger, state.TransactionId, waiting, state.Redrives);
        }
        else
        {
            Log.Redriving(_logger, state.TransactionId, state.Redrives, waiting);
        }
    }

    /// <summary>The participants for a log line: at most <see cref="JoinedAtMost"/> names, then how many more.</summary>
    private static string Join(IEnumerable<ParticipantId> participants)
    {
        var list = participants as IReadOnlyCollection<ParticipantId> ?? [.. participants];
        return list.Count <= JoinedAtMost
            ? string.Join(", ", list)
            : $"{string.Join(", ", list.Take(JoinedAtMost))} and {list.Count - JoinedAtMost} more";
    }

    private const int JoinedAtMost = 40;

    /// <summary>Remembers when a participant last spoke to this coordinator (valid names only, bounded).</summary>
    private void Seen(ParticipantId participant)
    {
        if (BranchGid.IsValidName(participant.Value) && (_lastSeen.Count < MaxParticipantsSeen || _lastSeen.ContainsKey(participant)))
        {
            _lastSeen[participant] = Now;
        }
    }

    /// <summary>One transaction in memory. Every field is read and written holding <see cref="Gate"/>, except <see cref="NextDueAt"/>.</summary>
    private sealed class Entry
    {
        private readonly List<ReplyTarget> _replyTargets = [];
        private long _nextDueTicks = long.MaxValue;

        public SemaphoreSlim Gate { get; } = new(1, 1);

        public TransactionState? State { get; set; }

        /// <summary>Set once the entry left the dictionary: whoever waited for it must look again.</summary>
        public bool Removed { get; set; }

        /// <summary>When the state next needs a tick; read by the tick loop without the gate.</summary>
        public DateTimeOffset? NextDueAt
        {
            get
            {
                var ticks = Volatile.Read(ref _nextDueTicks);
                return ticks == long.MaxValue ? null : new DateTimeOffset(ticks, TimeSpan.Zero);
            }
            set => Volatile.Write(ref _nextDueTicks, value?.UtcTicks ?? long.MaxValue);
        }

        public void AddReplyTarget(ReplyTarget? target)
        {
            if (target is not null && !_replyTargets.Contains(target))
            {
                _replyTargets.Add(target);
            }
        }

        public ReplyTarget[] TakeReplyTargets()
        {
            var targets = _replyTargets.ToArray();
            _replyTargets.Clear();
            return targets;
        }
    }
}

/// <summary>Why <see cref="CoordinatorRuntime.CommitHeuristicallyAsync"/> wrote nothing: the transaction in memory, or the journal's row for it.</summary>
internal sealed record HeuristicCommitRefusal(TransactionState? Live, JournalEntry? Journal);
