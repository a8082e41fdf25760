using System.Collections.Immutable;
using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using static TxCoord.Tests.Unit.Engine.EngineKit;

namespace TxCoord.Tests.Unit.Engine;

/// <summary>The initiator's work counts reach each participant's prepare, in 2PC and 3PC; a count that does not fit is not passed on.</summary>
public sealed class EngineWorkCountTests
{
    private static Transition Begin(CommitProtocol protocol, ImmutableArray<int> workCounts, params ParticipantId[] participants) =>
        Rules.Begin(Tx, protocol, new CommitRequested([.. participants], null, WorkCounts: workCounts), T0);

    [TestCase(CommitProtocol.TwoPhase)]
    [TestCase(CommitProtocol.ThreePhase)]
    public void EachPrepareCarriesItsParticipantsWorkCount(CommitProtocol protocol)
    {
        var transition = Begin(protocol, [2, 1, 3], A, B, C);

        Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendPrepare(A, 2), new SendPrepare(B, 1), new SendPrepare(C, 3) }));
    }

    [Test]
    public void EarlyPreparedParticipantsGetNoPrepare_TheOthersTheirCount()
    {
        var transition = Rules.Begin(Tx, CommitProtocol.TwoPhase, new CommitRequested([A, B], null, Prepared: [A], WorkCounts: [2, 4]), T0);

        Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendPrepare(B, 4) }));
    }

    [TestCase(new int[0], TestName = "no counts (an initiator that does not count)")]
    [TestCase(new[] { 1 }, TestName = "fewer counts than participants")]
    [TestCase(new[] { 1, 2, 3 }, TestName = "more counts than participants")]
    public void CountsThatDoNotFitTheParticipants_AreNotPassedOn(int[] counts)
    {
        var transition = Begin(CommitProtocol.TwoPhase, [.. counts], A, B);

        Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendPrepare(A, 0), new SendPrepare(B, 0) }));
    }

    [Test]
    public void AZeroCount_IsNotChecked()
    {
        var transition = Begin(CommitProtocol.TwoPhase, [0, 2], A, B);

        Assert.That(transition.Effects, Is.EqualTo(new TransactionEffect[] { new SendPrepare(A, 0), new SendPrepare(B, 2) }));
    }
}
