using TxCoord.Contracts;
using TxCoord.Participants.Participant;

namespace TxCoord.Tests.Unit.Participants;

/// <summary>A branch prepares only when it holds works 1..n of the n its initiator sent (<see cref="Branch.MissingWorks"/>).</summary>
public sealed class BranchWorksTests
{
    private static Branch With(params int[] works)
    {
        var branch = new Branch(BranchGid.Create(new CoordinatorId("c1"), new TransactionId(Guid.Parse("0193a5c0-0000-7000-8000-000000000001")), new ParticipantId("bank-a")));
        foreach (var work in works)
        {
            branch.Works.Add(work);
        }

        return branch;
    }

    [TestCase(new[] { 1 }, 1)]
    [TestCase(new[] { 1, 2, 3 }, 3)]
    [TestCase(new[] { 2, 1 }, 2, TestName = "works that arrived out of order")]
    [TestCase(new int[0], 0, TestName = "nothing expected (an initiator that does not count)")]
    [TestCase(new[] { 5 }, 0, TestName = "nothing expected, whatever the branch holds")]
    public void HoldsEveryWork_MayPrepare(int[] works, int expected) =>
        Assert.That(With(works).MissingWorks(expected), Is.Null);

    [TestCase(new[] { 2 }, 2, "work 1 was lost")]
    [TestCase(new[] { 3 }, 3, "works 1, 2 were lost")]
    [TestCase(new[] { 1, 3 }, 3, "work 2 was lost")]
    [TestCase(new int[0], 2, "holds works none of the 2")]
    [TestCase(new[] { 1, 2, 3 }, 2, "more than the 2 the initiator counted")]
    public void LacksAWorkOrHoldsMore_MustNotPrepare(int[] works, int expected, string reason) =>
        Assert.That(With(works).MissingWorks(expected), Does.Contain(reason));
}
