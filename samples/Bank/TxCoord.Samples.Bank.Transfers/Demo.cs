using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using TxCoord.Participants;

namespace TxCoord.Samples.Bank.Transfers;

/// <summary>One run of the demo: seed, wait for the services, transfer, wait for phase 2, verify, summarize.</summary>
internal sealed partial class Demo(DemoArguments arguments, DemoSettings settings, IHost host, TextWriter output)
{
    /// <summary>Every seeded account starts with this balance.</summary>
    public const long InitialBalance = 1000;

    private const string InsufficientFunds = "insufficient funds";

    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    public async Task<int> RunAsync()
    {
        // Ctrl-C stops the host's lifetime: the run stops where it is.
        var cancellationToken = host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;
        await using var bankA = NpgsqlDataSource.Create(settings.BankA);
        await using var bankB = NpgsqlDataSource.Create(settings.BankB);
        var nameA = SampleSettings.DatabaseName(settings.BankA, "bank A");
        var nameB = SampleSettings.DatabaseName(settings.BankB, "bank B");

        await Line($"bank-transfer demo: seeding {nameA} and {nameB} with {arguments.Accounts:N0} accounts x {InitialBalance:N0} each");
        await BankSchema.SeedAsync(bankA, arguments.Accounts, InitialBalance, cancellationToken);
        await BankSchema.SeedAsync(bankB, arguments.Accounts, InitialBalance, cancellationToken);

        await host.StartAsync(cancellationToken);
        try
        {
            return await RunTransfersAsync(bankA, bankB, nameA, nameB, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync("bank-transfer demo: interrupted");
            return 1;
        }
        catch (TimeoutException e)
        {
            await Console.Error.WriteLineAsync($"bank-transfer demo: {e.Message}");
            return 1;
        }
        finally
        {
            await host.StopAsync(CancellationToken.None);
        }
    }

    private async Task<int> RunTransfersAsync(NpgsqlDataSource bankA, NpgsqlDataSource bankB, string nameA, string nameB, CancellationToken cancellationToken)
    {
        var initiator = host.Services.GetRequiredService<ITransactionInitiator>();
        string[] participants = [BankReadiness.DefaultDebitParticipant, BankReadiness.DefaultCreditParticipant];
        await Line($"waiting for coordinator {settings.CoordinatorId} and participants {string.Join(", ", participants)} ...");
        await BankReadiness.WaitForCoordinatorAsync(initiator, arguments.Timeout, cancellationToken: cancellationToken);
        await BankReadiness.WaitForParticipantsAsync(initiator, participants, arguments.Timeout, cancellationToken: cancellationToken);

        var totalBefore = await BankLedger.TotalBalanceAsync(bankA, cancellationToken) + await BankLedger.TotalBalanceAsync(bankB, cancellationToken);
        await Line($"running {arguments.Transfers:N0} transfers from {nameA} to {nameB}, {arguments.Concurrency} at a time, {arguments.RefusedShare * 100:0.#}% of them larger than any balance ({arguments.Protocol}{(arguments.EarlyPrepare ? ", early prepare" : "")})");
        var options = new TransferRunOptions
        {
            Transfers = arguments.Transfers,
            Concurrency = arguments.Concurrency,
            Accounts = arguments.Accounts,
            RefusedShare = arguments.RefusedShare,
            RandomSeed = arguments.Seed,
            Transaction = new TransactionOptions { Protocol = arguments.Protocol },
            EarlyPrepare = arguments.EarlyPrepare,
        };
        var run = await new TransferRunner(initiator).RunAsync(options, output, cancellationToken);

        var left = await BankLedger.WaitForNoPreparedAsync(
            [new BankDatabase(nameA, bankA), new BankDatabase(nameB, bankB)], arguments.Timeout, output, cancellationToken: cancellationToken);
        var totalAfter = await BankLedger.TotalBalanceAsync(bankA, cancellationToken) + await BankLedger.TotalBalanceAsync(bankB, cancellationToken);
        var seeded = arguments.Accounts * InitialBalance;
        var verification = await BankLedger.VerifyAsync(bankA, bankB, run.Transfers, seeded, seeded, cancellationToken);

        return await SummarizeAsync(run, totalBefore, totalAfter, (nameA, left[0]), (nameB, left[1]), verification);
    }

    private async Task<int> SummarizeAsync(
        TransferRunResult run, long totalBefore, long totalAfter, (string Name, int Left) a, (string Name, int Left) b, BankVerificationResult verification)
    {
        var failures = new List<string>();
        await output.WriteLineAsync();
        await Line($"TxCoord bank-transfer demo: {run.Transfers.Count:N0} transfers, concurrency {arguments.Concurrency}, {run.Elapsed.TotalSeconds:0.0} s ({run.TransfersPerSecond:0.0} transfers/s)");
        await Line($"  {"committed",-10}{run.Committed,5}");
        var abortReasons = AbortReasons(run);
        var aborted = abortReasons.Count == 1 ? $"   ({abortReasons[0].Reason})" : abortReasons.Count > 1 ? "   (reasons below)" : "";
        await Line($"  {"aborted",-10}{run.Aborted,5}{aborted}");
        if (abortReasons.Count > 1)
        {
            foreach (var (reason, count) in abortReasons.Take(8))
            {
                await Line($"    {count,5} x {Shorten(reason, 160)}");
            }

            if (abortReasons.Count > 8)
            {
                await Line($"    ... and {abortReasons.Count - 8} more reasons");
            }
        }

        await Line($"  {"in doubt",-10}{run.InDoubt,5}");

        var unchanged = totalBefore == totalAfter;
        var change = unchanged ? "(unchanged)" : string.Create(Invariant, $"(CHANGED by {totalAfter - totalBefore:+#,0;-#,0})");
        await Line($"  total balance before {totalBefore:N0}   after {totalAfter:N0}   {change}");
        if (!unchanged)
        {
            failures.Add("the total balance changed");
        }

        await Line($"  left prepared: {a.Name} {a.Left}, {b.Name} {b.Left}");
        if (a.Left + b.Left > 0)
        {
            failures.Add($"{a.Left + b.Left} prepared transaction(s) left after {arguments.Timeout.TotalSeconds:0} s");
        }

        await Line($"  every committed transfer applied exactly once in both databases; no aborted one applied: {(verification.IsOk ? "OK" : "FAILED")}");
        foreach (var violation in verification.Violations.Take(20))
        {
            await Line($"    - {violation}");
        }

        if (verification.Violations.Count > 20)
        {
            await Line($"    ... and {verification.Violations.Count - 20} more");
        }

        if (!verification.IsOk)
        {
            failures.Add($"{verification.Violations.Count} ledger violation(s)");
        }

        if (run.InDoubt > 0)
        {
            await Line($"  in-doubt transfers: {verification.InDoubtApplied} applied in both databases, {verification.InDoubtNotApplied} in neither");
            foreach (var transfer in run.Transfers.Where(t => t.Outcome == CommitOutcome.InDoubt).Take(5))
            {
                await Line($"    - transfer {transfer.TransferId} (transaction {transfer.TransactionId}): {transfer.Reason}");
            }
        }

        var oversizedCommitted = run.Transfers.Count(t => t.Oversized && t.Outcome == CommitOutcome.Committed);
        if (oversizedCommitted > 0)
        {
            await Line($"  {oversizedCommitted} transfer(s) larger than any balance committed: FAILED");
            failures.Add("a transfer larger than any balance committed");
        }

        if (failures.Count == 0)
        {
            return 0;
        }

        await Line($"demo FAILED: {string.Join("; ", failures)}");
        return 1;
    }

    /// <summary>The reasons of the aborted transfers, most frequent first, e.g. "refused: insufficient funds".</summary>
    private static List<(string Reason, int Count)> AbortReasons(TransferRunResult run) =>
        run.Transfers
            .Where(t => t.Outcome == CommitOutcome.Aborted)
            .GroupBy(AbortReason)
            .Select(g => (Reason: g.Key, Count: g.Count()))
            .OrderByDescending(r => r.Count)
            .ToList();

    private static string Shorten(string text, int length) => text.Length <= length ? text : string.Concat(text.AsSpan(0, length - 3), "...");

    private static string AbortReason(TransferRecord transfer)
    {
        if (transfer.Refusal is { } refusal)
        {
            // "insufficient funds in account 17" -> "insufficient funds": group by kind, not by account.
            return refusal.Contains(InsufficientFunds, StringComparison.Ordinal)
                ? $"refused: {InsufficientFunds}"
                : $"refused: {TrailingNumber().Replace(refusal, "")}";
        }

        return transfer.Reason ?? "no reason given";
    }

    [GeneratedRegex(@"\s*\d+$")]
    private static partial Regex TrailingNumber();

    private Task Line(FormattableString text) => output.WriteLineAsync(text.ToString(Invariant));
}
