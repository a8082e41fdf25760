using TxCoord.Participants.Participant;

namespace TxCoord.Tests.Unit.Participants;

/// <summary>The deterministic rotation of 3PC termination rounds over the participants sorted by id.</summary>
public sealed class TerminationRoundTests
{
    [TestCase(0, 3, 0, 1)] // the lowest id leads round 1
    [TestCase(1, 3, 0, 2)] // the next one round 2, if round 1 did not finish
    [TestCase(2, 3, 0, 3)]
    [TestCase(0, 3, 1, 4)] // after round 1 the lowest id next leads round 4
    [TestCase(1, 3, 1, 2)]
    [TestCase(2, 3, 2, 3)]
    [TestCase(2, 3, 3, 6)]
    [TestCase(0, 1, 0, 1)] // alone: every round
    [TestCase(0, 1, 7, 8)]
    [TestCase(1, 2, 9, 10)]
    public void NextRoundLedBy_IsTheFirstRoundAboveTheHighestSeenThatRotatesToThisRank(int rank, int participants, int highest, int expected) =>
        Assert.That(ParticipantRuntime.NextRoundLedBy(rank, participants, highest), Is.EqualTo(expected));

    [Test]
    public void EveryRoundHasExactlyOneLeader()
    {
        for (var round = 1; round <= 30; round++)
        {
            var leaders = Enumerable.Range(0, 4).Where(rank => ParticipantRuntime.NextRoundLedBy(rank, 4, round - 1) == round).ToList();
            Assert.That(leaders, Has.Count.EqualTo(1), $"round {round}");
        }
    }
}
