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

    private readonly ImmutableDictionary<CommitProtocol, ICommitProtocolEngine> _protocols;

    public TransactionEngine(EngineSettings settings)
        : this(new TwoPhaseCommitEngine(settings), new ThreePhaseCommitEngine(settings))
    {
    }

    public TransactionEngine(params ICommitProtocolEngine[] protocols)
    {
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
        foreach (var participant in request.Participants)
        {
            if (!BranchGid.IsValidName(participant.Value))
            {
                return AbortUnknown(
                    transactionId,
                    protocol,
                    request.Participants,
                    $"invalid participant id '{participant.Value}': use 1 to {BranchGid.MaxNameLength} characters of letters, digits, '_', '.' or '-'",
                    now);
            }
        }

        if (!_protocols.TryGetValue(protocol, out var engine))
        {
            return AbortUnknown(transactionId, protocol, request.Participants, $"protocol {protocol} is not supported by this coordinator", now);
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
        _protocols[state.Protocol].Apply(state, @event, now);

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

    /// <summary>The abort reason of a rollback requested by the initiator.</summary>
    public static string RollbackReason(string? reason) =>
        string.IsNullOrWhiteSpace(reason) ? "rollback requested by the initiator" : $"rollback requested: {reason}";

    /// <summary>
    /// The abort every protocol shares: tell every participant, answer the initiator, record it
    /// unforced. No acknowledgements are awaited: a participant that misses the abort asks later
    /// and is answered Aborted by presumption.
    /// </summary>
    /// <param name="afterPreCommit">3PC: a PreCommit record may be in the journal; the abort record replaces it.</param>
    internal static Transition Abort(TransactionState state, string reason, DateTimeOffset now, bool afterPreCommit = false)
    {
        var effects = ImmutableArray.CreateBuilder<TransactionEffect>(state.Participants.Length + 2);
        foreach (var participant in state.Participants)
        {
            effects.Add(new SendAbort(participant, reason));
        }

        effects.Add(new ReplyToInitiator(TransactionOutcome.Aborted, reason));
        effects.Add(new RecordAbort(reason, afterPreCommit));
        var aborted = state with
        {
            Phase = TransactionPhase.Aborted,
            Reason = reason,
            EndedAt = now,
            RetryAt = null,
        };
        return new Transition(aborted, effects.MoveToImmutable());
    }
}
