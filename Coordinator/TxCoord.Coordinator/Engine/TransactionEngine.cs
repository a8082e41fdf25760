using System.Collections.Immutable;
using TxCoord.Contracts;

namespace TxCoord.Coordinator.Engine;

/// <summary>
/// The entry point to the pure engine: picks the protocol of each transaction, rejects what no
/// protocol can run, and answers for transactions the coordinator does not know.
/// </summary>
internal sealed class TransactionEngine
{
    /// <summary>The reason given with Committed to a rollback that came after the commit decision.</summary>
    public const string RollbackTooLate = "rollback refused: the transaction had already decided commit";

    /// <summary>The reason given with Committed when an abort found a commit decision in the journal instead.</summary>
    public const string CommitFoundInJournal = "the journal holds a commit decision for this transaction";

    private readonly EngineSettings _settings;
    private readonly ImmutableDictionary<CommitProtocol, ICommitProtocolEngine> _protocols;

    public TransactionEngine(EngineSettings settings)
        : this(settings, new TwoPhaseCommitEngine(settings), new ThreePhaseCommitEngine(settings))
    {
    }

    public TransactionEngine(EngineSettings settings, params ICommitProtocolEngine[] protocols)
    {
        _settings = settings;
        _protocols = protocols.ToImmutableDictionary(p => p.Protocol);
    }

    public bool Supports(CommitProtocol protocol) => _protocols.ContainsKey(protocol);

    /// <summary>
    /// Starts a transaction. A request naming an invalid participant id or a protocol this
    /// coordinator does not run is aborted at once: every addressable participant is told to
    /// abort and the initiator gets Aborted with the reason.
    /// </summary>
    public Transition Begin(TransactionId transactionId, CommitProtocol protocol, CommitRequested request, DateTimeOffset now)
    {
        // First, before anyone is contacted: every participant told would be one more queue
        // declared, and the aborts below tell every valid one.
        var named = Math.Max(request.Participants.Length, request.Prepared.IsDefault ? 0 : request.Prepared.Length);
        if (named > _settings.MaxParticipants)
        {
            return AbortUnknown(transactionId, protocol, [], TooManyParticipants(named, _settings.MaxParticipants), now);
        }

        foreach (var participant in request.Participants)
        {
            if (!BranchGid.IsValidName(participant.Value))
            {
                return AbortUnknown(
                    transactionId,
                    protocol,
                    request.Participants,
                    $"invalid participant id '{UntrustedText.Id(participant.Value)}': use 1 to {BranchGid.MaxNameLength} characters of letters, digits, '_', '.' or '-'",
                    now);
            }
        }

        if (!request.WorkCounts.IsDefault && request.WorkCounts.Any(count => count > _settings.MaxWorksPerParticipant))
        {
            return AbortUnknown(
                transactionId,
                protocol,
                request.Participants,
                $"refused: the request counts {request.WorkCounts.Max()} works for one participant, more than this coordinator's cap of {_settings.MaxWorksPerParticipant} (option MaxWorksPerParticipant)",
                now);
        }

        if (!_protocols.TryGetValue(protocol, out var engine))
        {
            return AbortUnknown(transactionId, protocol, request.Participants, $"protocol {protocol} is not supported by this coordinator", now);
        }

        var prepared = request.PreparedOrEmpty;
        if (!prepared.IsEmpty && protocol != CommitProtocol.TwoPhase)
        {
            return AbortUnknown(transactionId, protocol, request.Participants, $"early prepare (Yes votes relayed by the initiator) is for 2PC only, not {protocol}", now);
        }

        foreach (var participant in prepared)
        {
            if (!request.Participants.Contains(participant))
            {
                return AbortUnknown(
                    transactionId,
                    protocol,
                    [.. request.Participants, .. prepared],
                    $"participant '{UntrustedText.Id(participant.Value)}' is named as prepared but is not among the transaction's participants",
                    now);
            }
        }

        return engine.Begin(transactionId, request, now);
    }

    /// <summary>Rebuilds a transaction found in state 'committing' (or, 3PC, 'precommitting') in the journal.</summary>
    /// <exception cref="NotSupportedException">The row names a protocol this coordinator does not run.</exception>
    public Transition Recover(TransactionId transactionId, Recovered recovered, DateTimeOffset now) =>
        _protocols.TryGetValue(recovered.Protocol, out var engine)
            ? engine.Recover(transactionId, recovered, now)
            : throw new NotSupportedException(
                $"Transaction {transactionId}: the journal says it is committing under protocol {recovered.Protocol}, which this coordinator does not run.");

    public Transition Apply(TransactionState state, TransactionEvent @event, DateTimeOffset now) =>
        state.Phase == TransactionPhase.Aborting
            ? ApplyAborting(state, @event, now)
            : _protocols[state.Protocol].Apply(state, @event, now);

    /// <summary>
    /// Aborts a transaction the coordinator has no state for (a rollback of an unknown
    /// transaction, a rejected request): abort every named participant, answer Aborted, record it.
    /// </summary>
    public static Transition AbortUnknown(
        TransactionId transactionId,
        CommitProtocol protocol,
        IEnumerable<ParticipantId> participants,
        string reason,
        DateTimeOffset now)
    {
        var state = new TransactionState
        {
            TransactionId = transactionId,
            Protocol = protocol,
            Phase = TransactionPhase.Preparing,
            Participants = [.. participants.Where(p => BranchGid.IsValidName(p.Value)).Distinct()],
            CreatedAt = now,
            VoteDeadline = now,
            TransactionDeadline = now,
        };
        return Abort(state, reason, now);
    }

    /// <summary>The abort reason of a request naming more participants than <see cref="EngineSettings.MaxParticipants"/>.</summary>
    public static string TooManyParticipants(int named, int max) =>
        $"refused: the request names {named} participants, more than this coordinator's cap of {max} (option MaxParticipantsPerTransaction); none of them was contacted";

    /// <summary>The abort reason of a commit requested after its own deadline.</summary>
    public const string DeadlinePassedAtStart = "the transaction deadline had passed when the commit was requested";

    /// <summary>A new transaction collecting votes: the state every protocol begins from.</summary>
    internal static TransactionState Preparing(
        TransactionId transactionId, CommitProtocol protocol, CommitRequested request, EngineSettings settings, DateTimeOffset now) => new()
    {
        TransactionId = transactionId,
        Protocol = protocol,
        Phase = TransactionPhase.Preparing,
        Participants = [.. request.Participants.Distinct()],
        WorkCounts = request.WorkCountsByParticipant,
        CreatedAt = now,
        VoteDeadline = now + settings.VoteTimeout,
        TransactionDeadline = request.Deadline ?? now + settings.DefaultTransactionTimeout,
    };

    /// <summary>The abort reason of a rollback requested by the initiator.</summary>
    public static string RollbackReason(string? reason) =>
        string.IsNullOrWhiteSpace(reason) ? "rollback requested by the initiator" : $"rollback requested: {reason}";

    /// <summary>
    /// The abort every protocol shares. First the abort row, forced; only once the journal
    /// holds it durably is every participant told to abort and the initiator answered Aborted. No
    /// acknowledgements are awaited: a participant that misses the abort asks later and is
    /// answered Aborted from the row (or by presumption).
    /// <para>
    /// The order matters: with the participants told (or the initiator answered) before the row
    /// exists, a coordinator that dies or fails the write leaves no trace of the abort, a duplicate
    /// commit request begins the transaction again, and a late AbortBranch of the first attempt
    /// rolls back a branch that voted Yes in the second, which commits (finding 1 of the 2PC model
    /// in Coordinator/models). Forced for the same reason: a row written unforced and lost in a crash
    /// of the journal's server is no row at all, once the participants have been told (finding 5
    /// of the 2PC model, with journal crashes).
    /// </para>
    /// </summary>
    /// <param name="afterPreCommit">3PC: a PreCommit record may be in the journal; the abort record replaces it.</param>
    internal static Transition Abort(TransactionState state, string reason, DateTimeOffset now, bool afterPreCommit = false)
    {
        var aborting = state with
        {
            Phase = TransactionPhase.Aborting,
            Reason = reason,
            AbortReplacesPreCommit = afterPreCommit,
            AbortWriteAttempts = 1,
            RetryInterval = TimeSpan.Zero,
            RetryAt = null,
        };
        return new Transition(aborting, [new RecordAbort(reason, afterPreCommit)]);
    }

    /// <summary>
    /// Waiting for the abort row: requests and votes wait too (answered once it exists); a failed
    /// write is retried with back-off; a commit decision (or 3PC PreCommit) found in the journal
    /// instead, written by an earlier incarnation of this coordinator, is finished, not aborted.
    /// </summary>
    private Transition ApplyAborting(TransactionState state, TransactionEvent @event, DateTimeOffset now)
    {
        switch (@event)
        {
            case AbortRecorded:
                return Aborted(state, now);

            case AbortWriteFailed when state.RetryAt is null:
                var interval = state.RetryInterval == TimeSpan.Zero
                    ? _settings.RedriveInitialInterval
                    : _settings.NextInterval(state.RetryInterval);
                return Transition.Unchanged(state with { RetryAt = now + interval, RetryInterval = interval });

            case Tick when state.RetryAt is { } retryAt && now >= retryAt:
                return new Transition(
                    state with { RetryAt = null, AbortWriteAttempts = state.AbortWriteAttempts + 1 },
                    [new RecordAbort(state.Reason ?? "aborted", state.AbortReplacesPreCommit)]);

            case JournalHoldsDecision found:
                var resumed = Recover(state.TransactionId, found.Row, now);
                return resumed.State.Phase is TransactionPhase.Committing or TransactionPhase.Committed
                    ? new Transition(resumed.State, [.. resumed.Effects, new ReplyToInitiator(TransactionOutcome.Committed, CommitFoundInJournal)])
                    : resumed;

            default:
                // Commit and rollback requests are answered, Yes voters told to abort, once the row exists.
                return Transition.Unchanged(state);
        }
    }

    /// <summary>The abort row exists: tell every participant, answer the initiator.</summary>
    private static Transition Aborted(TransactionState state, DateTimeOffset now)
    {
        var reason = state.Reason ?? "aborted";
        var effects = ImmutableArray.CreateBuilder<TransactionEffect>(state.Participants.Length + 1);
        foreach (var participant in state.Participants)
        {
            effects.Add(new SendAbort(participant, reason));
        }

        effects.Add(new ReplyToInitiator(TransactionOutcome.Aborted, reason));
        var aborted = state with
        {
            Phase = TransactionPhase.Aborted,
            EndedAt = now,
            RetryAt = null,
        };
        return new Transition(aborted, effects.MoveToImmutable());
    }
}
