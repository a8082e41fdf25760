using TxCoord.Contracts;

namespace TxCoord.Coordinator.Engine;

/// <summary>
/// The rules of one commit protocol: pure functions from (state, event, now) to a
/// <see cref="Transition"/>. A new protocol (3PC) is a new implementation registered with
/// <see cref="TransactionEngine"/>; the driver does not change.
/// </summary>
internal interface ICommitProtocolEngine
{
    CommitProtocol Protocol { get; }

    /// <summary>Starts a transaction the coordinator did not know.</summary>
    Transition Begin(TransactionId transactionId, CommitRequested request, DateTimeOffset now);

    /// <summary>Rebuilds a transaction whose commit decision was found durable in the journal at start.</summary>
    Transition Recover(TransactionId transactionId, Recovered recovered, DateTimeOffset now);

    /// <summary>Applies one event. Total: every event is accepted in every phase (most are no-ops there).</summary>
    Transition Apply(TransactionState state, TransactionEvent @event, DateTimeOffset now);
}
