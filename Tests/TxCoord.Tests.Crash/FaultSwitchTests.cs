using TxCoord.Faults;

namespace TxCoord.Tests.Crash;

/// <summary>The crash-point and fault-rule switches the processes read from their environment (no servers).</summary>
[Category("Faults")]
public sealed class FaultSwitchTests
{
    [Test]
    public void CrashPointUnset_IsNotArmed()
    {
        Assert.That(CrashPlan.Parse(null, null), Is.Null);
        Assert.That(CrashPlan.Parse(" ", "3"), Is.Null);
    }

    [Test]
    public void CrashPointWithOccurrence_IsArmedForThatOccurrence()
    {
        var plan = CrashPlan.Parse(CrashPoints.CoordinatorAfterCommitSent, "2");
        Assert.That((plan!.Point, plan.After), Is.EqualTo((CrashPoints.CoordinatorAfterCommitSent, 2)));
        plan.Hit(CrashPoints.CoordinatorAfterAck); // another point: nothing happens
        Assert.That(CrashPlan.Parse(CrashPoints.ParticipantAfterPrepare, null)!.After, Is.EqualTo(1));
    }

    [TestCase("coordinator.before-lunch", null, "is not a crash point")]
    [TestCase(CrashPoints.CoordinatorRecovery, "0", "positive whole number")]
    [TestCase(CrashPoints.CoordinatorRecovery, "two", "positive whole number")]
    public void BadCrashPointSettings_AreRejectedWithWhatToFix(string at, string? after, string message) =>
        Assert.That(() => CrashPlan.Parse(at, after), Throws.InvalidOperationException.With.Message.Contains(message));

    [Test]
    public void FaultRules_ApplyInOrderUntilTheirCountIsUsedUp()
    {
        var rules = FaultRuleSet.Parse("V", "drop:CommitBranch:2, delay:PrepareBranch:1:4000; duplicate:BranchVoted:*", ["drop", "delay", "duplicate"], null, ["delay"])!;
        Assert.That(rules.Rules, Has.Count.EqualTo(3));
        Assert.That(rules.Take("CommitBranch")?.Action, Is.EqualTo("drop"));
        Assert.That(rules.Take("CommitBranch")?.Action, Is.EqualTo("drop"));
        Assert.That(rules.Take("CommitBranch"), Is.Null, "used up");
        Assert.That(rules.Take("PrepareBranch")?.Delay, Is.EqualTo(TimeSpan.FromSeconds(4)));
        Assert.That(Enumerable.Range(0, 10).Select(_ => rules.Take("BranchVoted")?.Action), Is.All.EqualTo("duplicate"));
        Assert.That(rules.Take("AbortBranch"), Is.Null);
    }

    [Test]
    public void DatabaseFaultRules_MatchTheirActionAtTheirPoint()
    {
        var rules = FaultRuleSet.Parse("V", "fail-after:journal.end:1", ["fail-before", "fail-after"], DbFaultPoints.All, [])!;
        Assert.That(rules.Take(DbFaultPoints.JournalEnd, "fail-before"), Is.Null);
        Assert.That(rules.Take(DbFaultPoints.JournalEnd, "fail-after"), Is.Not.Null);
    }

    [TestCase("drop", "expected action:target")]
    [TestCase("explode:CommitBranch", "expected action:target")]
    [TestCase("drop:Commit Branch", "expected action:target")]
    [TestCase("drop:CommitBranch:0", "invalid count")]
    [TestCase("delay:PrepareBranch:1", "needs the milliseconds field")]
    [TestCase("delay:PrepareBranch:1:soon", "invalid milliseconds")]
    public void MalformedFaultRules_AreRejectedWithWhatToFix(string text, string message) =>
        Assert.That(() => FaultRuleSet.Parse("TXCOORD_BUS_FAULTS", text, ["drop", "delay", "duplicate", "throw"], null, ["delay"]),
            Throws.InvalidOperationException.With.Message.Contains(message));

    [Test]
    public void DatabaseFaultAtAnUnknownPoint_IsRejected() =>
        Assert.That(() => FaultRuleSet.Parse("TXCOORD_DB_FAULTS", "fail-before:journal.lunch", ["fail-before", "fail-after"], DbFaultPoints.All, []),
            Throws.InvalidOperationException.With.Message.Contains("journal.commit-decision"));
}
