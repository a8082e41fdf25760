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

    /// <summary>A short address MassTransit resolves on any transport.</summary>
    public static Uri CoordinatorAddress(CoordinatorId id) => new($"queue:{Coordinator(id)}");

    /// <summary>A short address MassTransit resolves on any transport.</summary>
    public static Uri ParticipantAddress(ParticipantId id) => new($"queue:{Participant(id)}");
}
