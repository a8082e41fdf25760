using TxCoord.Samples.Bank;
using TxCoord.Tests.Crash.Infrastructure;

namespace TxCoord.Tests.Crash;

/// <summary>
/// The demo's hostile-message probe (samples/Bank/TxCoord.Samples.Bank.Hostile, run by
/// <c>TXCOORD_DEMO_HOSTILE=1 ./run.sh demo</c>) against the bank system's real processes, as
/// guest, a broker user that no service's permissions or sender map name: with every service its
/// own broker user and sender authentication on, no forged message moves money; with
/// authentication off, the same run breaks atomicity and the probe says so (so it can fail).
/// </summary>
[Category("Crash")]
public sealed class HostileProbeTests
{
    /// <summary>The attacks that commit the debit with authentication off (a fifth, the ghost-only relay, decides a commit but moves no money).</summary>
    private const int BrokenWithAuthenticationOff = 4;

    /// <summary>What the probe debits per attack (its HostileProbe.Amount).</summary>
    private const long HostileProbeAmount = 500;

    [Test]
    public async Task ForgedProtocolMessagesAsGuest_AgainstServicesAsTheirOwnBrokerUsers_ChangeNothing()
    {
        await using var system = await BankSystem.CreateAsync(new BankSystemOptions { LeastPrivilege = true, VoteTimeout = TimeSpan.FromSeconds(3) });
        await system.StartAllAsync();

        var run = await ProbeAsync(system);

        Assert.Multiple(async () =>
        {
            Assert.That(run.ExitCode, Is.EqualTo(0), run.ToString());
            Assert.That(run.Output, Does.Contain("7 attacks, none changed anything"), run.ToString());
            Assert.That(await BankLedger.TotalBalanceAsync(system.BankADataSource), Is.EqualTo(system.InitialTotalA), "money left bank A");
            Assert.That(await system.CountPreparedAsync(), Is.Zero, "a branch left prepared");
        });
        await system.AssertStillCommitsAsync();
    }

    [Test]
    public async Task ForgedProtocolMessagesAsGuest_WithSenderAuthenticationOff_BreakAtomicity_AndTheProbeSaysSo()
    {
        await using var system = await BankSystem.CreateAsync(new BankSystemOptions { VoteTimeout = TimeSpan.FromSeconds(3) });
        await system.StartAllAsync();

        var run = await ProbeAsync(system);

        // Forged CommitBranch, forged vote, relayed vote and a termination decision in a recorded
        // peer's name each commit bank A's debit; the ghost-only relay decides a commit.
        Assert.Multiple(async () =>
        {
            Assert.That(run.ExitCode, Is.EqualTo(3), run.ToString());
            Assert.That(run.Output, Does.Contain($"7 attacks, {BrokenWithAuthenticationOff + 1} broke atomicity"), run.ToString());
            Assert.That(
                await BankLedger.TotalBalanceAsync(system.BankADataSource),
                Is.EqualTo(system.InitialTotalA - (BrokenWithAuthenticationOff * HostileProbeAmount)),
                "the debits the forged messages committed");
        });
    }

    private static Task<ToolRun> ProbeAsync(BankSystem system) => RecoverTool.RunProgramAsync(
        Repository.HostileProbe,
        "hostile-message probe",
        ["--participant", system.BankA, "--timeout", "30"],
        new Dictionary<string, string>
        {
            ["ConnectionStrings__BankA"] = system.BankAConnectionString,
            ["ConnectionStrings__RabbitMq"] = CrashServices.RabbitMq.ToString(),
            ["TxCoord__CoordinatorId"] = system.CoordinatorId,
        },
        TimeSpan.FromMinutes(4));
}
