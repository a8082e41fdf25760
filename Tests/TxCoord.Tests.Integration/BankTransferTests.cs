using Npgsql;
using TxCoord.Participants;
using TxCoord.Samples.Bank;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// The bank in the style of Jepsen's: concurrent transfers between accounts in two databases, a
/// share of them refused. At quiescence the total is unchanged, every transfer reported committed
/// is applied exactly once in both databases, every one reported aborted in neither, and nothing
/// is left prepared.
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class BankTransferTests
{
    private const int Accounts = 1000;
    private const long InitialBalance = 1000;

    [TestCase(Transport.RabbitMq, 500, 32, false)]
    [TestCase(Transport.InMemory, 500, 32, false)]
    [TestCase(Transport.RabbitMq, 500, 32, true, TestName = "ConcurrentTransfers_EarlyPrepare_SomeRefused_TotalUnchanged_EachCommittedAppliedOnce(RabbitMq)")]
    [TestCase(Transport.InMemory, 500, 32, true, TestName = "ConcurrentTransfers_EarlyPrepare_SomeRefused_TotalUnchanged_EachCommittedAppliedOnce(InMemory)")]
    public async Task ConcurrentTransfers_SomeRefused_TotalUnchanged_EachCommittedAppliedOnce(Transport transport, int transfers, int concurrency, bool earlyPrepare)
    {
        await using var cluster = await TxCoordCluster.StartAsync(new ClusterOptions
        {
            Transport = transport,
            Handlers = o => o.HandleBankWork(),
        });
        var (debit, credit) = (cluster.ParticipantIds[0], cluster.ParticipantIds[1]);
        await using var bankA = NpgsqlDataSource.Create(cluster.ParticipantDatabases[debit]);
        await using var bankB = NpgsqlDataSource.Create(cluster.ParticipantDatabases[credit]);
        foreach (var bank in new[] { bankA, bankB })
        {
            await BankSchema.EnsureCreatedAsync(bank);
            await BankSchema.SeedAsync(bank, Accounts, InitialBalance);
        }

        var run = await new TransferRunner(cluster.Initiator).RunAsync(new TransferRunOptions
        {
            Transfers = transfers,
            Concurrency = concurrency,
            Accounts = Accounts,
            RefusedShare = 0.15,
            DebitParticipant = debit,
            CreditParticipant = credit,
            RandomSeed = 7,
            EarlyPrepare = earlyPrepare,
        }, TestContext.Progress);

        var prepared = await BankLedger.WaitForNoPreparedAsync(
            [new BankDatabase("a", bankA), new BankDatabase("b", bankB)], TimeSpan.FromSeconds(60), TestContext.Progress);
        var verification = await BankLedger.VerifyAsync(bankA, bankB, run.Transfers, Accounts * InitialBalance, Accounts * InitialBalance);
        var total = await BankLedger.TotalBalanceAsync(bankA) + await BankLedger.TotalBalanceAsync(bankB);
        await TestContext.Progress.WriteLineAsync(
            $"{transport}{(earlyPrepare ? ", early prepare" : "")}: {run.Committed} committed, {run.Aborted} aborted, {run.InDoubt} in doubt in {run.Elapsed.TotalSeconds:F1} s ({run.TransfersPerSecond:F0}/s)");
        foreach (var why in run.Transfers.Where(t => t.Outcome != CommitOutcome.Committed)
                     .GroupBy(t => System.Text.RegularExpressions.Regex.Replace(t.Refusal ?? t.Reason ?? "?", "[0-9a-f-]{8,}|\\d+", "N"))
                     .OrderByDescending(g => g.Count()).Take(5))
        {
            await TestContext.Progress.WriteLineAsync($"  {why.Count(),5} not committed: {why.Key}");
        }

        Assert.Multiple(() =>
        {
            Assert.That(run.Transfers, Has.Count.EqualTo(transfers));
            Assert.That(run.Committed, Is.GreaterThan(transfers / 2), "most transfers commit");
            Assert.That(run.Aborted, Is.GreaterThan(0), "the oversized ones are refused");
            Assert.That(run.InDoubt, Is.Zero, "nothing fails here, so nothing may end in doubt");
            Assert.That(prepared, Is.All.Zero, "nothing left prepared");
            Assert.That(verification.Violations, Is.Empty);
            Assert.That(total, Is.EqualTo(2 * Accounts * InitialBalance), "money is neither made nor lost");
        });
    }
}
