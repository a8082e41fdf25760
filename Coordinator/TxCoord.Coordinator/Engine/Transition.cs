using System.Collections.Immutable;

namespace TxCoord.Coordinator.Engine;

/// <summary>The result of applying an event: the new state and the effects the driver must carry out, in order.</summary>
internal sealed record Transition(TransactionState State, ImmutableArray<TransactionEffect> Effects)
{
    public static Transition Unchanged(TransactionState state) => new(state, []);
}
