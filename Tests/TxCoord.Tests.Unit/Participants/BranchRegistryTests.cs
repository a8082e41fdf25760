using TxCoord.Contracts;
using TxCoord.Participants.Participant;

namespace TxCoord.Tests.Unit.Participants;

/// <summary>The participant's branches in memory are keyed by the whole GID: coordinator, transaction and participant.</summary>
public sealed class BranchRegistryTests
{
    private static readonly TransactionId Tx = new(Guid.Parse("0193a5c0-0000-7000-8000-000000000001"));
    private static readonly ParticipantId Bank = new("bank-a");

    [Test]
    public async Task TheSameTransactionIdFromTwoCoordinators_IsTwoBranches_NeitherWaitsForTheOther()
    {
        var registry = new BranchRegistry();
        var fromC1 = BranchGid.Create(new CoordinatorId("c1"), Tx, Bank);
        var fromC2 = BranchGid.Create(new CoordinatorId("c2"), Tx, Bank);

        var first = await registry.AcquireAsync(fromC1, CancellationToken.None);
        // Held: were both one entry, this acquire would wait for the first branch's lock.
        var acquiring = registry.AcquireAsync(fromC2, CancellationToken.None);

        Assert.That(acquiring.IsCompleted, Is.True, "c2's branch must not wait for the lock of c1's branch of the same transaction id");
        var second = await acquiring;
        Assert.Multiple(() =>
        {
            Assert.That(second, Is.Not.SameAs(first));
            Assert.That(second.Gid, Is.EqualTo(fromC2));
            Assert.That(registry.Count, Is.EqualTo(2));
        });
        registry.Release(first);
        registry.Release(second);
    }

    [Test]
    public async Task TryAcquire_NeverWaits_FailsWhileTheLockIsHeld_AndOnABranchThatLeftMemory()
    {
        var registry = new BranchRegistry();
        var gid = BranchGid.Create(new CoordinatorId("c1"), Tx, Bank);
        var branch = await registry.AcquireAsync(gid, CancellationToken.None);

        Assert.That(registry.TryAcquire(branch), Is.False, "held by a running operation");
        registry.Remove(branch);
        registry.Release(branch);

        Assert.Multiple(() =>
        {
            Assert.That(registry.TryAcquire(branch), Is.False, "removed: a fresh entry stands for the GID now");
            Assert.That(registry.Count, Is.Zero);
        });
        var fresh = await registry.AcquireAsync(gid, CancellationToken.None);
        registry.Release(fresh);
        Assert.That(registry.TryAcquire(fresh), Is.True);
        registry.Release(fresh);
    }
}
