namespace TxCoord.Coordinator.Host.Dashboard;

// The JSON the dashboard API answers with (camelCase). Times are ISO 8601 UTC; durations in
// seconds or milliseconds as their names say. The README's "Dashboard" section shows examples.

internal sealed record ErrorBody(string Error);

internal sealed record OverviewModel(
    CoordinatorModel Coordinator,
    TotalsModel Totals,
    IReadOnlyList<ProtocolModel> Protocols,
    JournalCountsModel Journal,
    IReadOnlyList<SeriesPointModel> Series);

internal sealed record CoordinatorModel(
    string Id,
    string Version,
    DateTimeOffset StartedAt,
    double UptimeSeconds,
    DateTimeOffset Now,
    BusModel Bus,
    JournalHealthModel Journal,
    AdminModel Admin,
    ThresholdsModel Thresholds,
    int RefreshSeconds);

internal sealed record BusModel(string Status, string? Description);

/// <param name="DecisionWriteP50Ms">Forced commit-decision writes over the last minute: the journal's lag as commits see it.</param>
internal sealed record JournalHealthModel(
    bool Reachable,
    double? PingMs,
    string? Error,
    double? DecisionWriteP50Ms,
    double? DecisionWriteP99Ms,
    double? LastDecisionWriteAgoSeconds,
    long DecisionWriteFailures);

/// <param name="Rights">What the caller's credentials allow: "admin", "read" or "none".</param>
internal sealed record AdminModel(bool Enabled, string Rights, string? Message);

internal sealed record ThresholdsModel(double InDoubtAfterSeconds, double StuckAfterSeconds, int StuckAfterRedrives);

/// <param name="InDoubtNotInMemory">Prepared branches of this coordinator in the participant databases whose transaction it does not hold.</param>
/// <param name="WindowSeconds">The window of the rates and latencies.</param>
internal sealed record TotalsModel(
    int InFlight,
    int InDoubt,
    int InDoubtNotInMemory,
    int Stuck,
    long Begun,
    long Committed,
    long Aborted,
    double BegunPerSecond,
    double CommittedPerSecond,
    double AbortedPerSecond,
    double? P50Ms,
    double? P99Ms,
    double WindowSeconds);

internal sealed record ProtocolModel(
    string Protocol,
    long Begun,
    long Committed,
    long Aborted,
    long Recovered,
    int InFlight,
    int InDoubt,
    int Stuck,
    long Redrives,
    long MessagesRetried,
    IReadOnlyDictionary<string, long> Journal);

/// <param name="CountedAt">When the counts were taken (they are cached for a few seconds).</param>
internal sealed record JournalCountsModel(long Total, IReadOnlyDictionary<string, long> ByState, DateTimeOffset? CountedAt, string? Error);

internal sealed record SeriesPointModel(DateTimeOffset At, long Begun, long Committed, long Aborted, double? P50Ms, double? P99Ms);

/// <param name="Vote">"yes", "no", "readonly", or null while it has not voted.</param>
/// <param name="Acknowledged">For a Yes voter once the transaction decided commit: whether it acknowledged; otherwise null.</param>
/// <param name="Prepared">Whether a prepared branch of it was found in its database (null: database not configured or not read).</param>
internal sealed record BranchModel(string Participant, string? Vote, bool? Acknowledged, bool? Prepared);

/// <param name="Source">"memory" (the coordinator drives it), "journal", or "participant-database" (prepared branches the coordinator does not hold).</param>
internal sealed record TransactionModel(
    string Id,
    string Protocol,
    string Status,
    string Phase,
    string Source,
    string? Coordinator,
    double AgeSeconds,
    DateTimeOffset? CreatedAt,
    DateTimeOffset? DecidedAt,
    DateTimeOffset? EndedAt,
    int Redrives,
    string? Reason,
    IReadOnlyList<BranchModel> Participants);

internal sealed record LiveListModel(string View, IReadOnlyList<TransactionModel> Items, int Total, int Offset, int Limit, int? NextOffset);

internal sealed record JournalListModel(string View, IReadOnlyList<TransactionModel> Items, long Matching, bool MatchingCapped, int Limit, string? NextCursor);

internal sealed record HistoryModel(long Id, DateTimeOffset At, string Kind, string? Detail);

internal sealed record PreparedBranchModel(string Participant, string Gid, DateTimeOffset PreparedAt, double AgeSeconds, long Locks, long XidAge, string Owner);

/// <param name="Verdict">What the journal says the outcome must be: "commit", "abort", or "deciding" while the decision is being made durable.</param>
internal sealed record VerdictModel(string Verdict, string Explanation, bool CanResolve, bool CanRetry);

internal sealed record TransactionDetailModel(
    string Id,
    TransactionModel? Live,
    TransactionModel? Journal,
    VerdictModel Verdict,
    IReadOnlyList<HistoryModel> History,
    IReadOnlyList<PreparedBranchModel> PreparedBranches,
    IReadOnlyList<AuditModel> Audit);

internal sealed record ParticipantDatabaseModel(
    bool Configured,
    bool Reachable,
    string? Error,
    string? Database,
    int PreparedHere,
    int PreparedOurs,
    int PreparedServerWide,
    int MaxPreparedTransactions,
    int Headroom,
    double? OldestPreparedAgeSeconds,
    long LocksHeld,
    int BlockedSessions,
    long? OldestXidAge,
    long? DatabaseFrozenXidAge,
    DateTimeOffset? ReadAt);

/// <param name="AwaitingVote">Transactions in flight waiting for this participant's vote.</param>
/// <param name="AwaitingAck">Transactions decided commit waiting for this participant's acknowledgement.</param>
internal sealed record ParticipantModel(
    string Id,
    DateTimeOffset? LastSeen,
    double? LastSeenAgoSeconds,
    int InFlight,
    int AwaitingVote,
    int AwaitingAck,
    ParticipantDatabaseModel Database);

internal sealed record ParticipantsModel(IReadOnlyList<ParticipantModel> Items);

internal sealed record AuditModel(
    long Id,
    DateTimeOffset At,
    string Coordinator,
    string Actor,
    string Credential,
    string? RemoteAddress,
    string Action,
    string? TransactionId,
    string Reason,
    string Outcome,
    string? Result,
    DateTimeOffset? CompletedAt);

internal sealed record AuditListModel(IReadOnlyList<AuditModel> Items);

internal sealed record ResolveRequestModel(string? Operator, string? Reason, string? Outcome, bool Heuristic, string? Confirm);

internal sealed record RetryRequestModel(string? Operator, string? Reason);

/// <param name="Outcome">"done", "refused" or "failed" (as in the audit log).</param>
internal sealed record AdminResultModel(long AuditId, string Action, string Verdict, string Outcome, string Message);
