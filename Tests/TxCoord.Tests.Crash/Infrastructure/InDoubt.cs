using TxCoord.Faults;
using TxCoord.Participants;
using TxCoord.Samples.Bank;

namespace TxCoord.Tests.Crash.Infrastructure;

/// <summary>
/// Leaves a bank system with transactions in doubt and every process dead, as a crash would:
/// <paramref name="decided"/> transfers whose commit decision is durable but whose branch at bank A
/// is still prepared (bank A loses every CommitBranch), then one transfer prepared at both banks
/// with no decision (the coordinator dies before forcing it).
/// </summary>
internal static class InDoubt
{
    public static async Task<IReadOnlyList<TransferRecord>> CreateAsync(BankSystem system, int decided)
    {
        await system.StartAllAsync(
            coordinator: Arm.Crash(CrashPoints.CoordinatorBeforeDecision, after: decided + 1),
            // Bank A neither hears its CommitBranch nor asks for the outcome (not before 5 minutes).
            bankA: Arm.Bus($"{BusFaults.Drop}:CommitBranch:*").With(new() { ["TxCoord__Participant__DecisionTimeout"] = "00:05:00" }),
            bankB: new Dictionary<string, string> { ["TxCoord__Participant__DecisionTimeout"] = "00:05:00" });
        var records = new List<TransferRecord>();
        for (var i = 0; i < decided; i++)
        {
            var record = await system.SettleAsync(await system.TransferAsync());
            Assert.That(record.Outcome, Is.EqualTo(CommitOutcome.Committed), $"{record.Reason}{Environment.NewLine}{system.Diagnostics()}");
            records.Add(record);
        }

        await Eventually.WaitForAsync(() => BankSystem.PreparedGidsAsync(system.BankBDataSource), gids => gids.Count == 0,
            TimeSpan.FromSeconds(30), "bank B to commit the decided transfers", system.Diagnostics);
        var undecided = system.TransferAsync();
        await system.WaitForCrashAsync(Role.Coordinator, CrashPoints.CoordinatorBeforeDecision);
        await system.Process(Role.BankA).KillAsync();
        await system.Process(Role.BankB).KillAsync();
        records.Add(await undecided);
        Assert.That(await system.CountPreparedAsync(), Is.EqualTo(decided + 2), system.Diagnostics());
        return records;
    }
}
