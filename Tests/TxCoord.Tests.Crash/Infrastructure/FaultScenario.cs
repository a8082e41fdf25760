using TxCoord.Faults;
using TxCoord.Participants;
using TxCoord.Samples.Bank;

namespace TxCoord.Tests.Crash.Infrastructure;

/// <summary>What the transfers under a fault must end as.</summary>
internal enum Expected
{
    Committed,
    Aborted,

    /// <summary>Either, as long as it is one outcome everywhere and the one the initiator was told.</summary>
    Either,
}

/// <summary>
/// One fault scenario: which process gets which fault (crash point, bus or database fault) in its
/// first life, which process is expected to kill itself, what to do while it is down, and what the
/// transfers must end as. Run by <see cref="FaultScenario.RunAsync"/>.
/// </summary>
internal sealed record FaultCase
{
    public IReadOnlyDictionary<string, string>? Coordinator { get; init; }
    public IReadOnlyDictionary<string, string>? BankA { get; init; }
    public IReadOnlyDictionary<string, string>? BankB { get; init; }

    /// <summary>The process that must kill itself at its crash point; it is restarted without faults.</summary>
    public Role? Crashes { get; init; }

    public Expected Expected { get; init; } = Expected.Either;

    /// <summary>Runs alongside the transfers, e.g. a server restart once something is prepared.</summary>
    public Func<BankSystem, Task>? WhileRunning { get; init; }

    /// <summary>Runs after the crash, before the crashed process restarts.</summary>
    public Func<BankSystem, Task>? BeforeRestart { get; init; }

    public BankSystemOptions Options { get; init; } = new();

    public int Transfers { get; init; } = 1;

    public int Concurrency { get; init; } = 1;

    /// <summary>Restart the processes that still have faults armed (SIGKILL, then clean) before the closing liveness transfer.</summary>
    public bool HealBeforeLiveness { get; init; }
}

/// <summary>Builders of the fault variables a process reads.</summary>
internal static class Arm
{
    public static Dictionary<string, string> Crash(string point, int after = 1) =>
        new() { [CrashPoint.AtVariable] = point, [CrashPoint.AfterVariable] = after.ToString(System.Globalization.CultureInfo.InvariantCulture) };

    public static Dictionary<string, string> Bus(string rules) => new() { [BusFaults.Variable] = rules };

    public static Dictionary<string, string> Db(string rules) => new() { [DbFaults.Variable] = rules };

    public static Dictionary<string, string> With(this Dictionary<string, string> faults, Dictionary<string, string> more)
    {
        foreach (var (key, value) in more)
        {
            faults[key] = value;
        }

        return faults;
    }
}

/// <summary>
/// The one runner of every fault scenario: start the system with the faults armed, run the
/// transfers, wait for the expected crash and restart the process clean, then check what every
/// fault test checks (<see cref="BankSystem.AssertConvergedAsync"/>), that the transfers ended as
/// expected, and that the system still commits afterwards.
/// </summary>
internal static class FaultScenario
{
    public static async Task<IReadOnlyList<TransferRecord>> RunAsync(FaultCase fault)
    {
        await using var system = await BankSystem.CreateAsync(fault.Options);
        try
        {
            return await RunAsync(system, fault);
        }
        catch (Exception e) when (e is not AssertionException)
        {
            Assert.Fail($"{e}{Environment.NewLine}{system.Diagnostics()}");
            throw;
        }
    }

    private static async Task<IReadOnlyList<TransferRecord>> RunAsync(BankSystem system, FaultCase fault)
    {
        await system.StartAllAsync(fault.Coordinator, fault.BankA, fault.BankB);
        var transfers = system.RunTransfersAsync(fault.Transfers, fault.Concurrency);
        var during = fault.WhileRunning is { } whileRunning ? whileRunning(system) : Task.CompletedTask;
        var unrelated = new List<TransferRecord>();

        if (fault.Crashes is { } victim)
        {
            var faults = victim switch { Role.Coordinator => fault.Coordinator, Role.BankA => fault.BankA, _ => fault.BankB };
            var point = faults?.GetValueOrDefault(CrashPoint.AtVariable)
                ?? throw new InvalidOperationException($"{victim} is expected to crash but has no {CrashPoint.AtVariable}.");

            // On a machine this busy a transfer can abort (a vote or work timeout) before it reaches
            // the crash point; it must still be consistent, and the next one is sent to reach it.
            for (var attempt = 1; attempt < 3 && await FinishesBeforeCrashAsync(system, victim, transfers); attempt++)
            {
                unrelated.AddRange((await transfers).Transfers);
                transfers = system.RunTransfersAsync(fault.Transfers, fault.Concurrency);
            }

            await system.WaitForCrashAsync(victim, point);
            if (fault.BeforeRestart is { } beforeRestart)
            {
                await beforeRestart(system);
            }

            await system.StartAsync(victim);
        }

        await during;
        var run = await transfers;
        var settled = await system.AssertConvergedAsync(run.Transfers);
        if (fault.Expected != Expected.Either)
        {
            var wanted = fault.Expected == Expected.Committed ? CommitOutcome.Committed : CommitOutcome.Aborted;
            Assert.That(settled.Select(t => t.Outcome), Is.All.EqualTo(wanted),
                $"every transfer should have ended {wanted}: {string.Join("; ", settled.Select(t => $"{t.TransactionId} {t.Outcome} {t.Reason}"))}{Environment.NewLine}{system.Diagnostics()}");
        }

        if (fault.HealBeforeLiveness)
        {
            foreach (var (role, faults) in new[] { (Role.Coordinator, fault.Coordinator), (Role.BankA, fault.BankA), (Role.BankB, fault.BankB) })
            {
                if (faults is { Count: > 0 } && role != fault.Crashes)
                {
                    await system.Process(role).KillAsync();
                    await system.StartAsync(role);
                }
            }
        }

        // Still alive: the next transfer commits, and everything converges again.
        var after = await system.AssertStillCommitsAsync();
        await system.AssertConvergedAsync([.. unrelated, .. settled, .. after]);

        await TestContext.Out.WriteLineAsync(
            $"{TestContext.CurrentContext.Test.Name}: {string.Join(", ", settled.Select(t => $"{t.TransactionId} {t.Outcome}"))}; logs in {system.LogDirectory}");
        return settled;
    }

    /// <summary>True when the transfers end (not at the crash point) while <paramref name="victim"/> is still alive.</summary>
    private static async Task<bool> FinishesBeforeCrashAsync(BankSystem system, Role victim, Task<TransferRunResult> transfers)
    {
        // Whichever comes first: the transfers end, or the victim dies at its crash point.
        await Task.WhenAny(transfers, system.Process(victim).Exited);

        return transfers.IsCompleted && !system.Process(victim).HasExited
            && (await transfers).Transfers.All(t => t.Outcome == CommitOutcome.Aborted);
    }
}
