using System.Collections.Immutable;
using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;

namespace TxCoord.Tests.Unit.Engine;

/// <summary>Shared fixtures for the engine tests: fixed settings, a fixed clock origin, and transactions driven to each phase.</summary>
internal static class EngineKit
{
    public static readonly EngineSettings Settings = new(
        VoteTimeout: TimeSpan.FromSeconds(10),
        DefaultTransactionTimeout: TimeSpan.FromSeconds(60),
        RedriveInitialInterval: TimeSpan.FromSeconds(1),
        RedriveMaxInterval: TimeSpan.FromSeconds(8));

    public static readonly DateTimeOffset T0 = new(2025, 1, 1, 12, 0, 0, TimeSpan.Zero);

    public static readonly ParticipantId A = new("bank-a");
    public static readonly ParticipantId B = new("bank-b");
    public static readonly ParticipantId C = new("audit-c");
    public static readonly ParticipantId Stranger = new("stranger");

    public static readonly TransactionId Tx = new(Guid.Parse("0193a5c0-0000-7000-8000-000000000001"));

    public static TransactionEngine Rules { get; } = new(Settings);

    public static Transition Begin(params ParticipantId[] participants) => Begin(null, participants);

    public static Transition Begin(DateTimeOffset? deadline, params ParticipantId[] participants) =>
        Rules.Begin(Tx, CommitProtocol.TwoPhase, new CommitRequested([.. participants], deadline), T0);

    public static Transition Apply(this TransactionState state, TransactionEvent @event, DateTimeOffset? now = null) =>
        Rules.Apply(state, @event, now ?? T0);

    public static Transition Apply(this Transition transition, TransactionEvent @event, DateTimeOffset? now = null) =>
        Rules.Apply(transition.State, @event, now ?? T0);

    public static VoteReceived Yes(ParticipantId p) => new(p, Vote.Yes, null);

    public static VoteReceived No(ParticipantId p, string? reason = null) => new(p, Vote.No, reason);

    public static VoteReceived ReadOnly(ParticipantId p) => new(p, Vote.ReadOnly, null);

    /// <summary>A and B voted Yes at T0: the commit decision is being forced.</summary>
    public static TransactionState Deciding() => Begin(A, B).Apply(Yes(A)).Apply(Yes(B)).State;

    /// <summary>A and B voted Yes, C ReadOnly, and the decision is durable at T0.</summary>
    public static TransactionState Committing() =>
        Begin(A, B, C).Apply(Yes(A)).Apply(ReadOnly(C)).Apply(Yes(B)).Apply(new DecisionDurable()).State;

    public static TransactionState Committed() => Committing().Apply(new CommitAcknowledged(A)).Apply(new CommitAcknowledged(B)).State;

    public static TransactionState Aborted() => Begin(A, B).Apply(No(B, "constraint violated")).ThenAbortRecorded().State;

    /// <summary>
    /// An abort's two steps: checks that <paramref name="aborting"/> only writes the abort row
    /// (nothing sent, nobody answered), then returns what follows once the journal holds it.
    /// </summary>
    public static Transition ThenAbortRecorded(this Transition aborting, DateTimeOffset? now = null)
    {
        Assert.That(aborting.State.Phase, Is.EqualTo(TransactionPhase.Aborting), "an abort first writes its row");
        Assert.That(aborting.Effects, Has.Length.EqualTo(1).And.All.InstanceOf<RecordAbort>(), "nothing is sent and nobody answered before the abort row exists");
        return aborting.Apply(new AbortRecorded(), now);
    }

    public static ImmutableArray<ParticipantId> List(params ParticipantId[] participants) => [.. participants];
}
