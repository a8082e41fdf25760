using System.Reflection;
using MassTransit;
using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using TxCoord.Coordinator.Journal;
using TxCoord.Coordinator.Monitoring;
using TxCoord.Coordinator.Runtime;

namespace TxCoord.Coordinator.Host.Dashboard;

/// <summary>What the live list shows: transactions in memory and prepared branches the coordinator does not hold.</summary>
internal sealed record LiveQuery(string? Status, CommitProtocol? Protocol, ParticipantId? Participant, int Offset, int Limit);

/// <summary>
/// The read side of the dashboard: builds every answer of the JSON API from the runtime's
/// memory, the monitor's counters, the journal and the participant databases. Reads only.
/// </summary>
internal sealed class DashboardQueries
{
    /// <summary>How often the page refreshes itself.</summary>
    public const int RefreshSeconds = 3;

    /// <summary>Rates and latencies on the overview cover this many buckets of the series (one minute).</summary>
    public const int RecentBuckets = 6;

    /// <summary>Journal counts are a scan of the whole table: they are shared for this long.</summary>
    public static readonly TimeSpan JournalCountsMaxAge = TimeSpan.FromSeconds(5);

    /// <summary>How long the journal gets to answer the overview's ping.</summary>
    public static readonly TimeSpan PingTimeout = TimeSpan.FromSeconds(2);

    private static readonly string Version = ReadVersion();

    private readonly CoordinatorRuntime _runtime;
    private readonly CoordinatorMonitor _monitor;
    private readonly ITransactionJournal _journal;
    private readonly JournalQueries _queries;
    private readonly AuditLog _audit;
    private readonly ParticipantDatabaseMonitor _databases;
    private readonly DashboardSettings _settings;
    private readonly DashboardAccess _access;
    private readonly IServiceProvider _services;
    private readonly TimeProvider _time;
    private readonly SharedReading<CountsReading> _counts;

    public DashboardQueries(
        CoordinatorRuntime runtime,
        CoordinatorMonitor monitor,
        ITransactionJournal journal,
        JournalQueries queries,
        AuditLog audit,
        ParticipantDatabaseMonitor databases,
        DashboardSettings settings,
        DashboardAccess access,
        IServiceProvider services,
        TimeProvider time)
    {
        _runtime = runtime;
        _monitor = monitor;
        _journal = journal;
        _queries = queries;
        _audit = audit;
        _databases = databases;
        _settings = settings;
        _access = access;
        _services = services;
        _time = time;
        _counts = new SharedReading<CountsReading>(ReadCountsAsync, JournalCountsMaxAge, time);
    }

    public CoordinatorId CoordinatorId => _runtime.Id;

    // ---- overview -------------------------------------------------------------------------

    public async Task<OverviewModel> OverviewAsync(HttpContext context, CancellationToken cancellationToken)
    {
        var pingTask = PingAsync(cancellationToken);
        var countsTask = _counts.GetAsync(cancellationToken);
        var impacts = await _databases.ReadAsync(cancellationToken);
        var now = _time.GetUtcNow();
        var states = _runtime.Snapshot().Where(s => !s.IsTerminal).ToList();
        var monitor = _monitor.Read();
        var statuses = states.Select(s => (State: s, Status: LiveStatus.Of(s, now, _settings.Thresholds))).ToList();
        var orphans = Orphans(impacts, now);
        var counts = await countsTask;
        var (pingMs, pingError) = await pingTask;

        var recent = monitor.Recent(RecentBuckets);
        var window = Math.Max(1, Math.Min((now - recent.At).TotalSeconds, (now - monitor.StartedAt).TotalSeconds));
        var writes = recent.DecisionWrites;
        var rights = _access.RightsOf(context);

        var coordinator = new CoordinatorModel(
            _runtime.Id.Value,
            Version,
            monitor.StartedAt,
            Math.Round((now - monitor.StartedAt).TotalSeconds, 1),
            now,
            BusHealth(),
            new JournalHealthModel(
                pingError is null,
                pingMs,
                pingError,
                Milliseconds(writes.Quantile(0.5)),
                Milliseconds(writes.Quantile(0.99)),
                monitor.LastDecisionWriteAt is { } last ? Math.Round((now - last).TotalSeconds, 1) : null,
                monitor.DecisionWriteFailures),
            new AdminModel(
                _settings.AdminEnabled,
                rights switch { DashboardRight.Admin => "admin", DashboardRight.Read => "read", _ => "none" },
                _settings.AdminEnabled ? null : DashboardAccess.AdminOffMessage),
            new ThresholdsModel(
                _settings.Thresholds.InDoubtAfter.TotalSeconds,
                _settings.Thresholds.StuckAfter.TotalSeconds,
                _settings.Thresholds.StuckAfterRedrives),
            RefreshSeconds);

        var totals = new TotalsModel(
            states.Count,
            statuses.Count(s => s.Status == LiveStatus.InDoubt) + orphans.Count,
            orphans.Count,
            statuses.Count(s => s.Status == LiveStatus.Stuck),
            monitor.Protocols.Sum(p => p.Begun),
            monitor.Protocols.Sum(p => p.Committed),
            monitor.Protocols.Sum(p => p.Aborted),
            Math.Round(recent.Begun / window, 2),
            Math.Round(recent.Committed / window, 2),
            Math.Round(recent.Aborted / window, 2),
            Milliseconds(recent.CommitDurations.Quantile(0.5)),
            Milliseconds(recent.CommitDurations.Quantile(0.99)),
            Math.Round(window, 1));

        var protocols = Enum.GetValues<CommitProtocol>().Select(protocol =>
        {
            var seen = monitor.Protocols.FirstOrDefault(p => p.Protocol == protocol);
            var mine = statuses.Where(s => s.State.Protocol == protocol).ToList();
            return new ProtocolModel(
                CoordinatorMonitor.ProtocolLabel(protocol),
                seen?.Begun ?? 0,
                seen?.Committed ?? 0,
                seen?.Aborted ?? 0,
                seen?.Recovered ?? 0,
                mine.Count,
                mine.Count(s => s.Status == LiveStatus.InDoubt),
                mine.Count(s => s.Status == LiveStatus.Stuck),
                seen?.Redrives ?? 0,
                seen?.MessagesRetried ?? 0,
                counts.Counts.Where(c => c.Protocol == protocol).ToDictionary(c => JournalQueries.StateText(c.State), c => c.Count));
        }).ToList();

        var journal = new JournalCountsModel(
            counts.Counts.Sum(c => c.Count),
            counts.Counts.GroupBy(c => JournalQueries.StateText(c.State)).ToDictionary(g => g.Key, g => g.Sum(c => c.Count)),
            counts.Error is null ? counts.At : null,
            counts.Error);

        var series = monitor.Series.Select(p => new SeriesPointModel(
            p.At, p.Begun, p.Committed, p.Aborted, Milliseconds(p.CommitDurations.Quantile(0.5)), Milliseconds(p.CommitDurations.Quantile(0.99)))).ToList();

        return new OverviewModel(coordinator, totals, protocols, journal, series);
    }

    // ---- lists ----------------------------------------------------------------------------

    public async Task<LiveListModel> LiveAsync(LiveQuery query, CancellationToken cancellationToken)
    {
        var impacts = await _databases.ReadAsync(cancellationToken);
        var now = _time.GetUtcNow();
        var prepared = PreparedIndex(impacts);
        var items = _runtime.Snapshot()
            .Where(s => !s.IsTerminal)
            .Select(s => FromState(s, now, prepared))
            .Concat(Orphans(impacts, now))
            .Where(t => query.Status is null || t.Status == query.Status)
            .Where(t => query.Protocol is not { } p || t.Protocol == CoordinatorMonitor.ProtocolLabel(p))
            .Where(t => query.Participant is not { } p || t.Participants.Any(b => b.Participant == p.Value))
            // Oldest first by the exact start time: the rounded age would reorder items between reads.
            .OrderBy(t => t.CreatedAt ?? now - TimeSpan.FromSeconds(t.AgeSeconds))
            .ThenBy(t => t.Id, StringComparer.Ordinal)
            .ToList();
        var page = items.Skip(query.Offset).Take(query.Limit).ToList();
        var next = query.Offset + page.Count < items.Count ? query.Offset + page.Count : (int?)null;
        return new LiveListModel("live", page, items.Count, query.Offset, query.Limit, next);
    }

    public async Task<JournalListModel> JournalAsync(JournalFilter filter, CancellationToken cancellationToken)
    {
        var page = await _queries.ListAsync(filter, cancellationToken);
        var now = _time.GetUtcNow();
        return new JournalListModel(
            "journal",
            [.. page.Entries.Select(e => FromEntry(e, now))],
            page.Matching,
            page.MatchingCapped,
            filter.Limit,
            page.Next?.ToString());
    }

    // ---- one transaction ------------------------------------------------------------------

    /// <summary>Everything known about one transaction; null when nobody knows it.</summary>
    public async Task<TransactionDetailModel?> DetailAsync(TransactionId id, CancellationToken cancellationToken)
    {
        var entryTask = _journal.FindAsync(id, cancellationToken);
        var historyTask = _queries.EventsAsync(id, cancellationToken);
        var auditTask = _audit.ListAsync(id, 50, cancellationToken);
        var impacts = await _databases.ReadAsync(cancellationToken);
        var live = _runtime.Find(id);
        var entry = await entryTask;
        var history = await historyTask;
        var audit = await auditTask;
        var now = _time.GetUtcNow();
        var branches = impacts
            .SelectMany(i => i.Branches.Where(b => b.Branch?.Transaction == id).Select(b => new PreparedBranchModel(
                i.Participant.Value, b.Gid, b.PreparedAt, Math.Round((now - b.PreparedAt).TotalSeconds, 1), b.Locks, b.XidAge, b.Owner)))
            .ToList();

        if (live is null && entry is null && history.Count == 0 && branches.Count == 0 && audit.Count == 0)
        {
            return null;
        }

        var (verdict, explanation) = TransactionVerdict.Of(live, entry);
        var canRetry = live is { IsTerminal: false, RetryAt: not null } || (live is null && entry is { State: JournalState.Committing });
        return new TransactionDetailModel(
            id.Value.ToString(),
            live is null ? null : FromState(live, now, PreparedIndex(impacts)),
            entry is null ? null : FromEntry(entry, now),
            new VerdictModel(verdict, explanation, verdict != TransactionVerdict.Deciding, canRetry),
            [.. history.Select(h => new HistoryModel(h.Id, h.At, h.Kind, h.Detail))],
            branches,
            [.. audit.Select(ToModel)]);
    }

    /// <summary>The prepared branches of <paramref name="id"/> that this coordinator made, per participant.</summary>
    public async Task<IReadOnlyList<PreparedBranch>> PreparedBranchesAsync(TransactionId id, CancellationToken cancellationToken)
    {
        var impacts = await _databases.ReadAsync(cancellationToken);
        return [.. impacts.SelectMany(i => i.Branches).Where(b => b.Branch is { } gid && gid.Transaction == id && gid.Coordinator == _runtime.Id)];
    }

    // ---- participants and audit -----------------------------------------------------------

    public async Task<ParticipantsModel> ParticipantsAsync(CancellationToken cancellationToken)
    {
        var impacts = (await _databases.ReadAsync(cancellationToken)).ToDictionary(i => i.Participant);
        var now = _time.GetUtcNow();
        var states = _runtime.Snapshot().Where(s => !s.IsTerminal).ToList();
        var lastSeen = _runtime.ParticipantsLastSeen;
        var ids = new SortedSet<string>(StringComparer.Ordinal);
        ids.UnionWith(_databases.Configured.Select(p => p.Value));
        ids.UnionWith(lastSeen.Keys.Select(p => p.Value));
        ids.UnionWith(states.SelectMany(s => s.Participants).Select(p => p.Value));

        var items = ids.Select(name =>
        {
            var participant = new ParticipantId(name);
            var mine = states.Where(s => s.Participants.Contains(participant)).ToList();
            DateTimeOffset? seen = lastSeen.TryGetValue(participant, out var at) ? at : null;
            return new ParticipantModel(
                name,
                seen,
                seen is { } s ? Math.Round((now - s).TotalSeconds, 1) : null,
                mine.Count,
                mine.Count(s => s.Phase == TransactionPhase.Preparing && !s.Votes.ContainsKey(participant)),
                mine.Count(s => s.Phase == TransactionPhase.Committing && s.UnacknowledgedYesVoters.Contains(participant)),
                impacts.TryGetValue(participant, out var impact) ? ToModel(impact) : NotConfigured);
        }).ToList();
        return new ParticipantsModel(items);
    }

    public async Task<AuditListModel> AuditAsync(TransactionId? transactionId, int limit, CancellationToken cancellationToken) =>
        new([.. (await _audit.ListAsync(transactionId, limit, cancellationToken)).Select(ToModel)]);

    // ---- for /metrics ---------------------------------------------------------------------

    /// <summary>The in-flight states with their status, the orphaned prepared branches and the participant readings, for the metrics endpoint.</summary>
    public async Task<(IReadOnlyList<(TransactionState State, string Status)> Live, int Orphans, IReadOnlyList<ParticipantDatabaseImpact> Databases)> LiveForMetricsAsync(CancellationToken cancellationToken)
    {
        var impacts = await _databases.ReadAsync(cancellationToken);
        var now = _time.GetUtcNow();
        var live = _runtime.Snapshot().Where(s => !s.IsTerminal).Select(s => (s, LiveStatus.Of(s, now, _settings.Thresholds))).ToList();
        return (live, Orphans(impacts, now).Count, impacts);
    }

    // ---- building blocks ------------------------------------------------------------------

    private static readonly ParticipantDatabaseModel NotConfigured = new(false, false, null, null, 0, 0, 0, 0, 0, null, 0, 0, null, null, null);

    private TransactionModel FromState(TransactionState state, DateTimeOffset now, ILookup<(TransactionId, ParticipantId), PreparedBranch> prepared)
    {
        var decided = state.Phase is TransactionPhase.Committing or TransactionPhase.Committed;
        var branches = state.Participants.Select(p =>
        {
            var voted = state.Votes.TryGetValue(p, out var v);
            bool? acked = decided && voted && v == Vote.Yes ? state.CommitAcknowledged.Contains(p) : null;
            bool? isPrepared = _databases.Configured.Contains(p) ? prepared.Contains((state.TransactionId, p)) : null;
            return new BranchModel(p.Value, voted ? VoteLabel(v) : null, acked, isPrepared);
        }).ToList();
        return new TransactionModel(
            state.TransactionId.Value.ToString(),
            CoordinatorMonitor.ProtocolLabel(state.Protocol),
            LiveStatus.Of(state, now, _settings.Thresholds),
            CoordinatorMonitor.PhaseLabel(state.Phase),
            "memory",
            _runtime.Id.Value,
            Math.Round((now - state.CreatedAt).TotalSeconds, 1),
            state.CreatedAt,
            state.DecidedAt,
            state.EndedAt,
            state.Redrives,
            state.Reason,
            branches);
    }

    private static TransactionModel FromEntry(JournalEntry entry, DateTimeOffset now)
    {
        var state = JournalQueries.StateText(entry.State);
        var branches = entry.Participants.Select(p => new BranchModel(
            p.Value,
            entry.IsCommit ? "yes" : null,
            entry.IsCommit ? entry.Acknowledged.Contains(p) : null,
            null)).ToList();
        return new TransactionModel(
            entry.TransactionId.Value.ToString(),
            CoordinatorMonitor.ProtocolLabel(entry.Protocol),
            state,
            state,
            "journal",
            entry.CoordinatorId.Value,
            Math.Round((now - entry.CreatedAt).TotalSeconds, 1),
            entry.CreatedAt,
            entry.DecidedAt,
            entry.EndedAt,
            0,
            entry.Reason,
            branches);
    }

    /// <summary>
    /// Prepared branches of this coordinator, older than the in-doubt threshold, whose transaction
    /// it does not hold in memory: someone must decide them (the participant asks, or an operator resolves).
    /// </summary>
    private List<TransactionModel> Orphans(IReadOnlyList<ParticipantDatabaseImpact> impacts, DateTimeOffset now) =>
        [.. impacts
            .SelectMany(i => i.Branches.Select(b => (i.Participant, i.ReadAt, Branch: b)))
            .Where(x => x.Branch.Branch is { } gid && gid.Coordinator == _runtime.Id
                // Old already when the database was read: a reading is a few seconds old at
                // most, and a branch young then may well have finished since.
                && x.ReadAt - x.Branch.PreparedAt >= _settings.Thresholds.InDoubtAfter
                && _runtime.Find(gid.Transaction) is null)
            .GroupBy(x => x.Branch.Branch!.Value.Transaction)
            .Select(g =>
            {
                var oldest = g.Min(x => x.Branch.PreparedAt);
                return new TransactionModel(
                    g.Key.Value.ToString(),
                    "unknown",
                    LiveStatus.InDoubt,
                    "prepared",
                    "participant-database",
                    _runtime.Id.Value,
                    Math.Round((now - oldest).TotalSeconds, 1),
                    oldest,
                    null,
                    null,
                    0,
                    "prepared in a participant database; the coordinator does not hold this transaction",
                    [.. g.Select(x => new BranchModel(x.Participant.Value, "yes", null, true))]);
            })];

    private static ILookup<(TransactionId, ParticipantId), PreparedBranch> PreparedIndex(IReadOnlyList<ParticipantDatabaseImpact> impacts) =>
        impacts
            .SelectMany(i => i.Branches.Where(b => b.Branch is not null).Select(b => (Key: (b.Branch!.Value.Transaction, i.Participant), Branch: b)))
            .ToLookup(x => x.Key, x => x.Branch);

    private static ParticipantDatabaseModel ToModel(ParticipantDatabaseImpact impact) => new(
        true,
        impact.Reachable,
        impact.Error,
        impact.Database,
        impact.PreparedHere,
        impact.PreparedOurs,
        impact.PreparedServerWide,
        impact.MaxPreparedTransactions,
        impact.Headroom,
        impact.OldestPreparedAge is { } age ? Math.Round(age.TotalSeconds, 1) : null,
        impact.LocksHeld,
        impact.BlockedSessions,
        impact.OldestXidAge,
        impact.DatabaseFrozenXidAge,
        impact.ReadAt);

    internal static AuditModel ToModel(AuditRecord record) => new(
        record.Id,
        record.At,
        record.CoordinatorId,
        record.Actor,
        record.Credential,
        record.RemoteAddress,
        record.Action,
        record.TransactionId?.ToString(),
        record.Reason,
        record.Outcome,
        record.Result,
        record.CompletedAt);

    private static string VoteLabel(Vote vote) => vote switch
    {
        Vote.Yes => "yes",
        Vote.No => "no",
        Vote.ReadOnly => "readonly",
        _ => vote.ToString().ToLowerInvariant(),
    };

    private BusModel BusHealth()
    {
        var bus = _services.GetService<IBusControl>();
        if (bus is null)
        {
            return new BusModel("Unknown", "no bus registered");
        }

        var health = bus.CheckHealth();
        return new BusModel(health.Status.ToString(), health.Description);
    }

    private async Task<(double? Ms, string? Error)> PingAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(PingTimeout);
        var started = _time.GetTimestamp();
        try
        {
            await _journal.PingAsync(timeout.Token);
            return (Math.Round(_time.GetElapsedTime(started).TotalMilliseconds, 2), null);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            return (null, ex is OperationCanceledException ? $"no answer within {PingTimeout.TotalSeconds:0} s" : ex.Message);
        }
    }

    private async Task<CountsReading> ReadCountsAsync()
    {
        var at = _time.GetUtcNow();
        try
        {
            return new CountsReading(await _queries.CountAsync(CancellationToken.None), at, null);
        }
        catch (Exception ex) when (ex is Npgsql.NpgsqlException or TimeoutException or InvalidOperationException)
        {
            return new CountsReading([], at, ex.Message);
        }
    }

    private static double? Milliseconds(double? seconds) => seconds is { } s ? Math.Round(s * 1000, 2) : null;

    private static string ReadVersion()
    {
        var version = typeof(DashboardQueries).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";
        var plus = version.IndexOf('+', StringComparison.Ordinal);
        return plus >= 0 && version.Length > plus + 8 ? version[..(plus + 8)] : version;
    }

    private sealed record CountsReading(IReadOnlyList<JournalCount> Counts, DateTimeOffset At, string? Error);
}
