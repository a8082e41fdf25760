using TxCoord.Contracts;
using TxCoord.Coordinator.Monitoring;
using TxCoord.Coordinator.Ownership;
using TxCoord.Faults;

namespace TxCoord.Coordinator.Recovery;

/// <summary>What recovery works on: the coordinator whose GIDs it may finish, its journal, and the participant databases to look in.</summary>
internal sealed record RecoverySettings(CoordinatorId Coordinator, string JournalConnectionString, IReadOnlyList<ParticipantDatabase> Participants);

/// <summary>How one step of a resolve ended.</summary>
internal enum StepOutcome
{
    /// <summary>Only planned (dry run), or left alone.</summary>
    NotRun,
    Done,
    AlreadyFinished,

    /// <summary>Another session (the coordinator or the participant, doing the same) was finishing it at that moment.</summary>
    Busy,
    Failed,
}

/// <summary>Progress and results of a scan or resolve, as they happen (so nothing has to be held for a report).</summary>
internal interface IRecoveryObserver
{
    /// <summary>A resolve found this many GIDs of the coordinator to go through.</summary>
    void Started(int total, OwnershipHolder? liveCoordinator);

    /// <summary>One prepared transaction: its plan and, for a resolve, how its action ended.</summary>
    void Step(RecoveryStep step, StepOutcome outcome, string? error);

    /// <summary>A participant database could not be worked on at all.</summary>
    void DatabaseFailed(ParticipantId participant, string error);

    /// <summary>A commit decision whose branches are prepared nowhere any more.</summary>
    void DecidedNotPrepared(DecidedNotPrepared decision);
}

/// <summary>Totals of a scan or resolve.</summary>
internal sealed record RecoverySummary(
    int Ours, int OthersPrepared, int Committed, int Aborted, int AlreadyFinished, int Left, int Failed, int RemainingInDoubt, int DatabaseErrors)
{
    public bool HasErrors => Failed > 0 || DatabaseErrors > 0;
}

/// <summary>Options of a resolve.</summary>
/// <param name="MinimumAge">Presume abort only for prepared transactions older than this.</param>
/// <param name="Parallelism">COMMIT/ROLLBACK PREPARED run at once per database.</param>
/// <param name="LockTimeout">How long to wait while another txcoord-recover works on the same coordinator.</param>
internal sealed record ResolveOptions(bool DryRun, TimeSpan MinimumAge, int Parallelism, TimeSpan LockTimeout);

/// <summary>
/// The recovery tool's work, kept in the coordinator library so the command line holds no SQL:
/// scan (compare the journal with every participant's <c>pg_prepared_xacts</c>), resolve (finish
/// what is in doubt as the journal says, presuming abort only where that is safe), force (an
/// operator's heuristic decision, recorded), verify (journal integrity). Everything streams a page
/// of prepared transactions at a time.
/// </summary>
internal sealed class RecoverySession : IAsyncDisposable
{
    private readonly RecoverySettings _settings;
    private readonly TimeProvider _time;
    private readonly List<RecoveryParticipantDatabase> _databases;

    private RecoverySession(RecoverySettings settings, TimeProvider time)
    {
        _settings = settings;
        _time = time;
        Journal = new RecoveryJournal(settings.JournalConnectionString);
        _databases = [.. settings.Participants.Select(p => new RecoveryParticipantDatabase(p))];
    }

    public RecoveryJournal Journal { get; }

    public IReadOnlyList<RecoveryParticipantDatabase> Databases => _databases;

    public CoordinatorId Coordinator => _settings.Coordinator;

    private string OurPrefix => $"{BranchGid.Prefix}:{_settings.Coordinator.Value}:";

    /// <summary>Opens the journal and (unless <paramref name="journalOnly"/>) every participant database, checking each; all problems are reported together.</summary>
    /// <exception cref="RecoveryException">One or more of them cannot be used; the message names each and what to fix.</exception>
    public static async Task<RecoverySession> OpenAsync(RecoverySettings settings, TimeProvider time, bool journalOnly, CancellationToken cancellationToken)
    {
        var session = new RecoverySession(settings, time);
        var errors = new List<string>();
        try
        {
            await session.Journal.CheckAsync(cancellationToken);
        }
        catch (RecoveryException e)
        {
            errors.Add(e.Message);
        }

        if (!journalOnly)
        {
            foreach (var database in session._databases)
            {
                try
                {
                    await database.CheckAsync(cancellationToken);
                }
                catch (RecoveryException e)
                {
                    errors.Add(e.Message);
                }
            }
        }

        if (errors.Count > 0)
        {
            await session.DisposeAsync();
            throw new RecoveryException(string.Join(Environment.NewLine, errors));
        }

        return session;
    }

    /// <summary>Who runs the coordinator id now (a coordinator service or a recovery), or null.</summary>
    public async Task<OwnershipHolder?> FindOwnerAsync(CancellationToken cancellationToken)
    {
        await using var connection = await Journal.OpenAsync(cancellationToken);
        return await CoordinatorOwnership.FindHolderAsync(connection, _settings.Coordinator, cancellationToken);
    }

    /// <summary>
    /// Reports every prepared transaction of every configured database (with what it blocks) and
    /// the plan resolve would follow, then the open commit decisions that are prepared nowhere.
    /// Changes nothing.
    /// </summary>
    public async Task<RecoverySummary> ScanAsync(IRecoveryObserver observer, CancellationToken cancellationToken)
    {
        var owner = await FindOwnerAsync(cancellationToken);
        var live = owner is { IsCoordinator: true };
        observer.Started(await CountOursAsync(cancellationToken), live ? owner : null);
        var tally = new Tally();
        foreach (var database in _databases)
        {
            try
            {
                await foreach (var page in database.ReadPagesAsync(withLocks: true, cancellationToken))
                {
                    foreach (var step in await PlanAsync(page, live, TimeSpan.Zero, cancellationToken))
                    {
                        tally.Count(step, StepOutcome.NotRun);
                        observer.Step(step, StepOutcome.NotRun, null);
                    }
                }
            }
            catch (RecoveryException e)
            {
                tally.DatabaseErrors++;
                observer.DatabaseFailed(database.Participant, e.Message);
            }
        }

        await ReportDecidedNotPreparedAsync(observer, cancellationToken);
        return tally.Summary(tally.Ours);
    }

    /// <summary>
    /// Finishes this coordinator's prepared transactions as the journal says. When no coordinator
    /// with this id runs, it first takes the coordinator id's ownership lock (so none can start
    /// meanwhile, and a second recovery waits), and presumes abort for GIDs the journal never saw,
    /// recording each presumed abort in the journal (forced) before rolling anything back. Beside a
    /// live coordinator it only commits what the journal decided commit and leaves everything else
    /// to it: it never aborts a transaction that may still be in flight.
    /// </summary>
    /// <exception cref="RecoveryException">The journal failed, or another recovery held the lock for longer than <see cref="ResolveOptions.LockTimeout"/>.</exception>
    public async Task<RecoverySummary> ResolveAsync(ResolveOptions options, string actor, IRecoveryObserver observer, CancellationToken cancellationToken)
    {
        OwnershipLock? held = null;
        OwnershipHolder? liveCoordinator = null;
        try
        {
            if (options.DryRun)
            {
                var owner = await FindOwnerAsync(cancellationToken);
                liveCoordinator = owner is { IsCoordinator: true } ? owner : null;
            }
            else
            {
                (held, liveCoordinator) = await TakeOwnershipAsync(options.LockTimeout, cancellationToken);
            }

            observer.Started(await CountOursAsync(cancellationToken), liveCoordinator);
            var tally = new Tally();
            foreach (var database in _databases)
            {
                try
                {
                    await foreach (var page in database.ReadPagesAsync(withLocks: false, cancellationToken))
                    {
                        await ResolvePageAsync(database, page, liveCoordinator is not null, options, actor, observer, tally, cancellationToken);
                    }
                }
                catch (RecoveryException e) when (!e.Message.StartsWith("the journal", StringComparison.Ordinal))
                {
                    tally.DatabaseErrors++;
                    observer.DatabaseFailed(database.Participant, e.Message);
                }
            }

            var remaining = options.DryRun ? tally.Ours : await CountOursAsync(cancellationToken);
            return tally.Summary(remaining);
        }
        finally
        {
            if (held is not null)
            {
                await held.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// An operator's heuristic decision on one GID of this coordinator, against or without the
    /// journal: recorded (who, when, why, what the journal said) before it is carried out, and
    /// completed with how it ended. The caller asks for the explicit confirmation.
    /// </summary>
    /// <remarks>
    /// A forced abort of a transaction the journal has no decision for first makes the abort the
    /// journal's decision (a forced 'aborted' row, as resolve's presumed abort), holding the
    /// coordinator's lock, so that no commit decision can be written for it afterwards: its other
    /// participants then roll back too. Beside a running coordinator, where the transaction may be
    /// live (still collecting votes), that is refused unless <paramref name="evenIfLive"/>: the
    /// coordinator then finds the row at its decision and aborts the transaction.
    /// </remarks>
    public async Task<(RecoveryStep Step, FinishOutcome Outcome)> ForceAsync(
        BranchGid gid, bool commit, string reason, string actor, bool evenIfLive, TimeSpan lockTimeout, CancellationToken cancellationToken)
    {
        var (database, prepared) = await FindPreparedAsync(gid, cancellationToken)
            ?? throw new RecoveryException($"{gid} is not prepared in any configured participant database ({string.Join(", ", _databases.Select(d => $"{d.Participant}: {d.DatabaseName}"))}).");
        var decisions = await Journal.FindDecisionsAsync([gid.Transaction], cancellationToken);
        var decision = decisions.GetValueOrDefault(gid.Transaction);
        var before = decision;
        OwnershipLock? held = null;
        try
        {
            if (!commit && decision is null)
            {
                OwnershipHolder? live;
                (held, live) = await TakeOwnershipAsync(lockTimeout, cancellationToken);
                if (live is not null && !evenIfLive)
                {
                    throw new ForceRefusedException(
                        $"coordinator {_settings.Coordinator} is running ({live}) and the journal has no decision for {gid.Transaction}: it may be live there, still collecting votes. " +
                        "Forcing the abort records it as the journal's decision, so that coordinator aborts the transaction everywhere instead of committing it; " +
                        "add --even-if-live to do that, or stop that coordinator first.");
                }

                await Journal.RecordPresumedAbortsAsync(
                    _settings.Coordinator, [(gid.Transaction, gid.Participant)], $"forced abort by {actor}: {reason}", _time.GetUtcNow(), cancellationToken);
                decision = (await Journal.FindDecisionsAsync([gid.Transaction], cancellationToken)).GetValueOrDefault(gid.Transaction);
                if (decision is not { State: "aborted" })
                {
                    throw new ForceRefusedException(
                        $"the coordinator wrote a decision for {gid.Transaction} ({decision?.State ?? "none"}) while the abort was being recorded: nothing was rolled back; run force again to see what it means.");
                }
            }

            return await ForceRecordedAsync(database, prepared, gid, commit, before, reason, actor, cancellationToken);
        }
        finally
        {
            if (held is not null)
            {
                await held.DisposeAsync();
            }
        }
    }

    private async Task<(RecoveryStep Step, FinishOutcome Outcome)> ForceRecordedAsync(
        RecoveryParticipantDatabase database, PreparedTransaction prepared, BranchGid gid, bool commit, JournalDecision? decision,
        string reason, string actor, CancellationToken cancellationToken)
    {
        var journalState = decision switch
        {
            { State: { } state } => state + (decision.HasCommitEvent ? " (history: commit decided)" : ""),
            { HasCommitEvent: true } => "no row (history: commit decided)",
            _ => "none",
        };
        var step = new RecoveryStep(prepared, RecoveryPlanner.Plan(prepared, _settings.Coordinator, decision, false, TimeSpan.MaxValue, TimeSpan.Zero).Verdict,
            commit ? RecoveryAction.Commit : RecoveryAction.Abort, $"forced by {actor}: {reason}");
        var id = await Journal.RecordHeuristicAsync(gid, database.Participant, commit, journalState, reason, actor, _time.GetUtcNow(), cancellationToken);
        try
        {
            var outcome = await database.FinishAsync(gid, commit, cancellationToken);
            await Journal.CompleteHeuristicAsync(id, outcome switch { FinishOutcome.Done => "done", FinishOutcome.Busy => "busy: being finished by another session", _ => "already finished" }, cancellationToken);
            return (step, outcome);
        }
        catch (RecoveryException e)
        {
            await Journal.CompleteHeuristicAsync(id, "failed: " + e.Message, cancellationToken);
            throw;
        }
    }

    /// <summary>The verdict the journal gives a GID of this coordinator (for force's confirmation message).</summary>
    public async Task<JournalVerdict> VerdictAsync(BranchGid gid, CancellationToken cancellationToken)
    {
        var found = await FindPreparedAsync(gid, cancellationToken);
        var decisions = await Journal.FindDecisionsAsync([gid.Transaction], cancellationToken);
        var prepared = found?.Prepared ?? new PreparedTransaction(gid.Participant, "", gid.Value, gid, _time.GetUtcNow(), "", 0, null, 0);
        return RecoveryPlanner.Plan(prepared, _settings.Coordinator, decisions.GetValueOrDefault(gid.Transaction), false, TimeSpan.MaxValue, TimeSpan.Zero).Verdict;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var database in _databases)
        {
            await database.DisposeAsync();
        }

        await Journal.DisposeAsync();
    }

    private async Task<(OwnershipLock? Held, OwnershipHolder? LiveCoordinator)> TakeOwnershipAsync(TimeSpan lockTimeout, CancellationToken cancellationToken)
    {
        var deadline = _time.GetUtcNow() + lockTimeout;
        while (true)
        {
            OwnershipLock? held;
            OwnershipHolder? holder;
            try
            {
                (held, holder) = await OwnershipLock.TryAcquireAsync(
                    _settings.JournalConnectionString, _settings.Coordinator, CoordinatorOwnership.RecoveryApplicationName, cancellationToken);
            }
            catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException)
            {
                throw RecoveryException.From(e, "the journal", _settings.JournalConnectionString, RecoveryJournal.Setting);
            }

            if (held is not null)
            {
                return (held, null);
            }

            if (holder is { IsCoordinator: true })
            {
                return (null, holder);
            }

            if (_time.GetUtcNow() >= deadline)
            {
                throw new RecoveryException(
                    $"another recovery holds coordinator {_settings.Coordinator}'s lock: {holder}; waited {lockTimeout.TotalSeconds:0} s (--lock-timeout).");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(500), _time, cancellationToken);
        }
    }

    private async Task ResolvePageAsync(
        RecoveryParticipantDatabase database,
        IReadOnlyList<PreparedTransaction> page,
        bool live,
        ResolveOptions options,
        string actor,
        IRecoveryObserver observer,
        Tally tally,
        CancellationToken cancellationToken)
    {
        var steps = await PlanAsync(page, live, options.MinimumAge, cancellationToken);
        if (!options.DryRun)
        {
            // Presumed abort is made durable before anything rolls back; then the journal is read
            // again, so a decision that won the race (impossible while we hold the lock, but cheap
            // to rule out) is followed instead.
            var presumed = steps.Where(s => s is { Action: RecoveryAction.Abort, Verdict: JournalVerdict.None }).ToList();
            if (presumed.Count > 0)
            {
                await Journal.RecordPresumedAbortsAsync(
                    _settings.Coordinator,
                    [.. presumed.Select(s => (s.Prepared.Branch!.Value.Transaction, s.Prepared.Branch.Value.Participant))],
                    $"presumed abort by txcoord-recover ({actor}): no commit decision in the journal",
                    _time.GetUtcNow(),
                    cancellationToken);
                var recheck = await Journal.FindDecisionsAsync([.. presumed.Select(s => s.Prepared.Branch!.Value.Transaction)], cancellationToken);
                steps = [.. steps.Select(s => s is { Action: RecoveryAction.Abort, Verdict: JournalVerdict.None }
                    && recheck.GetValueOrDefault(s.Prepared.Branch!.Value.Transaction) is { State: not "aborted" } decided
                        ? RecoveryPlanner.Plan(s.Prepared, _settings.Coordinator, decided, live, TimeSpan.MaxValue, TimeSpan.Zero)
                        : s)];
            }
        }

        var outcomes = new (StepOutcome Outcome, string? Error)[steps.Count];
        if (!options.DryRun)
        {
            await Parallel.ForEachAsync(
                Enumerable.Range(0, steps.Count).Where(i => steps[i].Action != RecoveryAction.Leave),
                new ParallelOptions { MaxDegreeOfParallelism = options.Parallelism, CancellationToken = cancellationToken },
                async (i, token) =>
                {
                    try
                    {
                        var finished = await database.FinishAsync(steps[i].Prepared.Branch!.Value, steps[i].Action == RecoveryAction.Commit, token);
                        outcomes[i] = (finished switch
                        {
                            FinishOutcome.Done => StepOutcome.Done,
                            FinishOutcome.Busy => StepOutcome.Busy,
                            _ => StepOutcome.AlreadyFinished,
                        }, null);
                        CrashPoint.Hit(CrashPoints.RecoveryToolAfterAction);
                    }
                    catch (RecoveryException e)
                    {
                        outcomes[i] = (StepOutcome.Failed, e.Message);
                    }
                });

            var audit = steps.Select((s, i) => (Step: s, outcomes[i].Outcome))
                .Where(x => x.Outcome == StepOutcome.Done)
                .Select(x => (x.Step.Prepared.Branch!.Value.Transaction,
                    $"txcoord-recover ({actor}): {(x.Step.Action == RecoveryAction.Commit ? "COMMIT" : "ROLLBACK")} PREPARED {x.Step.Prepared.Gid} at {database.Participant}: {x.Step.Why}"))
                .ToList();
            await Journal.RecordActionsAsync(audit, _time.GetUtcNow(), cancellationToken);
        }

        for (var i = 0; i < steps.Count; i++)
        {
            tally.Count(steps[i], outcomes[i].Outcome);
            observer.Step(steps[i], outcomes[i].Outcome, outcomes[i].Error);
        }
    }

    private async Task<List<RecoveryStep>> PlanAsync(IReadOnlyList<PreparedTransaction> page, bool live, TimeSpan minimumAge, CancellationToken cancellationToken)
    {
        var ours = page.Where(p => p.Branch is { } b && b.Coordinator == _settings.Coordinator).Select(p => p.Branch!.Value.Transaction).ToList();
        var decisions = await Journal.FindDecisionsAsync(ours, cancellationToken);
        var now = _time.GetUtcNow();
        return [.. page.Select(p => RecoveryPlanner.Plan(
            p, _settings.Coordinator, p.Branch is { } b ? decisions.GetValueOrDefault(b.Transaction) : null, live, now - p.PreparedAt, minimumAge))];
    }

    private async Task<int> CountOursAsync(CancellationToken cancellationToken)
    {
        var total = 0;
        foreach (var database in _databases)
        {
            try
            {
                total += (await database.CountAsync(OurPrefix, cancellationToken)).Ours;
            }
            catch (RecoveryException)
            {
                // Reported when the database is worked on.
            }
        }

        return total;
    }

    private async Task<(RecoveryParticipantDatabase Database, PreparedTransaction Prepared)?> FindPreparedAsync(BranchGid gid, CancellationToken cancellationToken)
    {
        // Its own participant's database first, then the others (two participants may share a database).
        foreach (var database in _databases.OrderBy(d => d.Participant == gid.Participant ? 0 : 1))
        {
            if ((await database.WhichPreparedAsync([gid.Value], cancellationToken)).Count > 0)
            {
                await foreach (var page in database.ReadPagesAsync(withLocks: false, cancellationToken))
                {
                    if (page.FirstOrDefault(p => p.Gid == gid.Value) is { } prepared)
                    {
                        return (database, prepared);
                    }
                }
            }
        }

        return null;
    }

    private async Task ReportDecidedNotPreparedAsync(IRecoveryObserver observer, CancellationToken cancellationToken)
    {
        var configured = _databases.ToDictionary(d => d.Participant);
        await foreach (var page in Journal.ReadOpenDecisionsAsync(_settings.Coordinator, cancellationToken))
        {
            var stillPrepared = new HashSet<string>();
            foreach (var group in page.SelectMany(d => d.Participants.Except(d.Acknowledged).Select(p => (Decision: d, Participant: p))).GroupBy(x => x.Participant))
            {
                if (configured.TryGetValue(group.Key, out var database))
                {
                    stillPrepared.UnionWith(await database.WhichPreparedAsync(
                        [.. group.Select(x => BranchGid.Create(_settings.Coordinator, x.Decision.TransactionId, group.Key).Value)], cancellationToken));
                }
            }

            foreach (var decision in page)
            {
                var waiting = decision.Participants.Except(decision.Acknowledged).ToList();
                if (waiting.Any(p => stillPrepared.Contains(BranchGid.Create(_settings.Coordinator, decision.TransactionId, p).Value)))
                {
                    continue;
                }

                observer.DecidedNotPrepared(new DecidedNotPrepared(decision.TransactionId, decision.DecidedAt, waiting, [.. waiting.Where(p => !configured.ContainsKey(p))]));
            }
        }
    }

    /// <summary>Counts steps as they are reported.</summary>
    private sealed class Tally
    {
        public int Ours;
        public int Others;
        public int Committed;
        public int Aborted;
        public int AlreadyFinished;
        public int Left;
        public int Failed;
        public int DatabaseErrors;

        public void Count(RecoveryStep step, StepOutcome outcome)
        {
            if (step.Verdict is JournalVerdict.OtherCoordinator or JournalVerdict.UnknownGid)
            {
                Others++;
                return;
            }

            Ours++;
            switch (outcome)
            {
                case StepOutcome.Done when step.Action == RecoveryAction.Commit:
                    Committed++;
                    break;
                case StepOutcome.Done:
                    Aborted++;
                    break;
                case StepOutcome.AlreadyFinished:
                    AlreadyFinished++;
                    break;
                case StepOutcome.Failed:
                    Failed++;
                    break;
                default:
                    Left++;
                    break;
            }
        }

        public RecoverySummary Summary(int remaining) =>
            new(Ours, Others, Committed, Aborted, AlreadyFinished, Left, Failed, remaining, DatabaseErrors);
    }
}
