using TxCoord.Contracts;

namespace TxCoord.Coordinator.Runtime;

/// <summary>
/// The boundary where text from the wire enters the coordinator: every message is passed through
/// here first, so that nothing downstream (the engine, the journal, the replies, the log, the
/// dashboard) ever holds a reason longer than <see cref="CoordinatorOptions.MaxReasonLength"/>, a
/// control character that could forge a log line, or more than the start of an invalid id. Valid
/// ids are left as they are (they cannot hold anything to escape), and so is a null id, which the
/// handlers read as "not given". The participant cap is the engine's rule
/// (<see cref="Engine.TransactionEngine.Begin"/>); a rollback applies it in the runtime.
/// </summary>
internal static class MessageLimits
{
    public static CommitTransaction Bound(CommitTransaction message) =>
        NeedsBounding(message.Participants) || NeedsBounding(message.Prepared)
            ? message with { Participants = Ids(message.Participants), Prepared = Ids(message.Prepared) }
            : message;

    public static RollbackTransaction Bound(RollbackTransaction message, int maxReason) =>
        message with
        {
            Participants = NeedsBounding(message.Participants) ? Ids(message.Participants) : message.Participants,
            Reason = UntrustedText.Bound(message.Reason, maxReason),
        };

    public static BranchVoted Bound(BranchVoted message, int maxReason) =>
        message with { Participant = Id(message.Participant), Reason = UntrustedText.Bound(message.Reason, maxReason) };

    public static BranchCommitted Bound(BranchCommitted message) => message with { Participant = Id(message.Participant) };

    public static BranchAborted Bound(BranchAborted message) => message with { Participant = Id(message.Participant) };

    public static BranchPreCommitted Bound(BranchPreCommitted message) => message with { Participant = Id(message.Participant) };

    public static GetTransactionOutcome Bound(GetTransactionOutcome message) =>
        message.Participant is { } participant ? message with { Participant = Id(participant) } : message;

    public static TerminationDecided Bound(TerminationDecided message) => message with { Leader = Id(message.Leader) };

    /// <summary>A valid (or absent) id unchanged; an invalid one escaped and cut, so that it stays invalid and short.</summary>
    public static ParticipantId Id(ParticipantId participant) =>
        participant.Value is null || BranchGid.IsValidName(participant.Value) ? participant : new ParticipantId(UntrustedText.Id(participant.Value));

    private static bool NeedsBounding(IReadOnlyList<ParticipantId>? participants) =>
        participants is not null && participants.Any(p => p.Value is not null && !BranchGid.IsValidName(p.Value));

    private static IReadOnlyList<ParticipantId> Ids(IReadOnlyList<ParticipantId>? participants) =>
        participants is null ? [] : [.. participants.Select(Id)];
}
