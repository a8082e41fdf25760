using TxCoord.Faults;
using TxCoord.Participants;
using TxCoord.Tests.Crash.Infrastructure;

namespace TxCoord.Tests.Crash;

/// <summary>
/// Batching under kill -9. The coordinator runs with no fault switch, so it batches: at this load
/// (16 overlapping transfers) bank A gets most of its prepares and commits as PrepareBranches and
/// CommitBranches. Bank A kills itself after it prepared (or committed) a batch's branches and
/// before its one answer left; restarted, it must end with every transfer atomic and nothing
/// prepared, exactly as a lone message's crash does.
/// </summary>
[Category("Crash")]
[Parallelizable(ParallelScope.Children)]
public sealed class BatchCrashTests
{
    [TestCase(CrashPoints.ParticipantAfterPrepare)]
    [TestCase(CrashPoints.ParticipantAfterCommit)]
    public async Task BankKilledBetweenItsWorkOnABatchAndTheAnswer_EveryTransferEndsAtomic_NothingStaysPrepared(string point)
    {
        await using var system = await BankSystem.CreateAsync();
        await system.StartAllAsync(bankA: new Dictionary<string, string>
        {
            [CrashPoint.AtVariable] = point,
            [CrashPoint.AfterVariable] = "4",
        });

        var traffic = system.RunTransfersAsync(80, 16);
        await system.WaitForCrashAsync(Role.BankA, point, TimeSpan.FromSeconds(120));
        await system.StartAsync(Role.BankA);

        var result = await traffic;
        var settled = await system.AssertConvergedAsync(result.Transfers);
        await TestContext.Out.WriteLineAsync(
            $"bank A killed at {point} (4th time): {settled.Count(t => t.Outcome == CommitOutcome.Committed)} committed, " +
            $"{settled.Count(t => t.Outcome == CommitOutcome.Aborted)} aborted, all atomic");
        Assert.Multiple(async () =>
        {
            Assert.That(await system.CountPreparedAsync(), Is.Zero, "nothing left prepared");
            Assert.That(settled.Count(t => t.Outcome == CommitOutcome.Committed), Is.GreaterThan(0), "the load went on after the restart");
        });
    }
}
