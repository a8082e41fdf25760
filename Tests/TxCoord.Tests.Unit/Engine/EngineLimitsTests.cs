using System.Collections.Immutable;
using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using static TxCoord.Tests.Unit.Engine.EngineKit;

namespace TxCoord.Tests.Unit.Engine;

/// <summary>The engine's caps on what one commit request may ask (issue 16): refused before anyone is contacted.</summary>
public sealed class EngineLimitsTests
{
    private static readonly EngineSettings Small = Settings with { MaxParticipants = 3, MaxWorksPerParticipant = 5 };

    [Test]
    public void CommitNamingMoreParticipantsThanTheCap_AbortsTellingNobody_WithAReasonNamingTheCap()
    {
        var participants = Enumerable.Range(1, 4).Select(i => new ParticipantId($"p{i}")).ToImmutableArray();

        var aborting = new TransactionEngine(Small).Begin(Tx, CommitProtocol.TwoPhase, new CommitRequested(participants, null), T0);
        var aborted = aborting.ThenAbortRecorded();

        Assert.Multiple(() =>
        {
            Assert.That(aborting.State.Participants, Is.Empty);
            Assert.That(aborting.Effects, Has.None.InstanceOf<SendPrepare>());
            Assert.That(aborted.Effects, Has.None.InstanceOf<SendAbort>());
            Assert.That(aborted.Effects.OfType<ReplyToInitiator>().Single().Reason,
                Is.EqualTo(TransactionEngine.TooManyParticipants(4, 3)).And.Contain("MaxParticipantsPerTransaction"));
        });
    }

    [Test]
    public void CommitRelayingMorePreparedThanTheCap_AbortsTellingNobody()
    {
        var prepared = Enumerable.Range(1, 4).Select(i => new ParticipantId($"p{i}")).ToImmutableArray();

        var aborting = new TransactionEngine(Small).Begin(Tx, CommitProtocol.TwoPhase, new CommitRequested([A], null, prepared), T0);

        Assert.Multiple(() =>
        {
            Assert.That(aborting.State.Phase, Is.EqualTo(TransactionPhase.Aborting));
            Assert.That(aborting.State.Participants, Is.Empty);
        });
    }

    [Test]
    public void CommitAtTheCap_Prepares()
    {
        var transition = new TransactionEngine(Small).Begin(Tx, CommitProtocol.TwoPhase, new CommitRequested([A, B, C], null, default, [5, 5, 5]), T0);

        Assert.That(transition.Effects.OfType<SendPrepare>().Count(), Is.EqualTo(3));
    }

    [Test]
    public void CommitCountingMoreWorksThanTheCap_Aborts_WithAReasonNamingTheCap()
    {
        var aborted = new TransactionEngine(Small).Begin(Tx, CommitProtocol.TwoPhase, new CommitRequested([A, B], null, default, [1, 6]), T0).ThenAbortRecorded();

        Assert.That(aborted.Effects.OfType<ReplyToInitiator>().Single().Reason, Does.Contain("MaxWorksPerParticipant").And.Contain("6"));
    }

    [Test]
    public void CommitNamingAHugeInvalidId_EchoesOnlyItsStart()
    {
        var aborted = Rules.Begin(Tx, CommitProtocol.TwoPhase, new CommitRequested([new ParticipantId(new string('h', 200_000))], null), T0).ThenAbortRecorded();

        Assert.That(aborted.Effects.OfType<ReplyToInitiator>().Single().Reason, Has.Length.LessThan(300).And.Contain("chars cut"));
    }
}
