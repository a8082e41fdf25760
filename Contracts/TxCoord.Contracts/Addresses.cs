namespace TxCoord.Contracts;

/// <summary>
/// Queue names: the one convention coordinator, participants and initiators share.
/// </summary>
public static class TxCoordQueues
{
    /// <summary>The queue of a coordinator node.</summary>
    public static string Coordinator(CoordinatorId id) => $"txcoord-coordinator-{id.Value}";

    /// <summary>The queue of a participant (work messages and protocol messages).</summary>
    public static string Participant(ParticipantId id) => $"txcoord-participant-{id.Value}";

    /// <summary>
    /// The exchange every sender addresses a coordinator through. The coordinator binds it to its
    /// queue when its endpoint starts; it is named apart from any queue, so that a broker user
    /// allowed to send to it (configure and write on this name) can neither delete, purge nor read
    /// the queue (RabbitMQ permissions match names, not kinds: docs/least-privilege.md#rabbitmq).
    /// </summary>
    public static string CoordinatorInbox(CoordinatorId id) => $"txcoord-to-coordinator-{id.Value}";

    /// <summary>The exchange every sender addresses a participant through (see <see cref="CoordinatorInbox"/>).</summary>
    public static string ParticipantInbox(ParticipantId id) => $"txcoord-to-participant-{id.Value}";

    /// <summary>
    /// Where to send to a coordinator: its inbox exchange only. Sending declares that exchange and
    /// nothing else (no queue, no binding): a message to a coordinator that has never started is
    /// dropped by the broker, which the protocol already tolerates (timeouts, re-drives, outcome queries).
    /// </summary>
    public static Uri CoordinatorAddress(CoordinatorId id) => new($"exchange:{CoordinatorInbox(id)}");

    /// <summary>Where to send to a participant: its inbox exchange only (see <see cref="CoordinatorAddress"/>).</summary>
    public static Uri ParticipantAddress(ParticipantId id) => new($"exchange:{ParticipantInbox(id)}");
}
