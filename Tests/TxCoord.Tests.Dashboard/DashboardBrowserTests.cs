using Dapper;
using Microsoft.Playwright;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Samples.Bank;
using TxCoord.Tests.Dashboard.Infrastructure;

namespace TxCoord.Tests.Dashboard;

/// <summary>
/// The dashboard in real headless Chromium, against the real coordinator service, the bank
/// sample's participant services and an initiator over RabbitMQ and PostgreSQL: an on-call
/// engineer's walk through the page.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class DashboardBrowserTests
{
    /// <summary>When set, the screenshot is also copied there (used to refresh docs/dashboard.png).</summary>
    public const string ScreenshotCopyVariable = "TXCOORD_DASHBOARD_SCREENSHOT";

    [Test]
    [CancelAfter(120_000)]
    public async Task Dashboard_WhileTransfersRun_CountsMoveDetailOpensAndAnInDoubtTransactionIsResolvedWithTheAdminKey(CancellationToken cancellationToken)
    {
        await using var chromium = await Chromium.LaunchAsync();
        await using var bank = await BankPeers.CreateDatabasesAsync();
        await using var host = await DashboardHost.StartAsync(s =>
        {
            s[$"TxCoord:Participants:{bank.Debit}:ConnectionString"] = bank.Databases[bank.Debit];
            s[$"TxCoord:Participants:{bank.Credit}:ConnectionString"] = bank.Databases[bank.Credit];
            s["TxCoord:Dashboard:InDoubtAfter"] = "00:00:03";
            s["TxCoord:RedriveInitialInterval"] = "00:00:01";
            s["TxCoord:RedriveMaxInterval"] = "00:00:05";
        });
        await bank.StartAsync(host.CoordinatorId);
        await using var peers = await ScriptedParticipants.StartAsync(host.CoordinatorId);

        var page = await chromium.NewPageAsync();
        var consoleErrors = new List<string>();
        page.Console += (_, message) =>
        {
            if (message.Type == "error")
            {
                consoleErrors.Add(message.Text);
            }
        };
        page.PageError += (_, error) => consoleErrors.Add(error);

        // 1. The page loads and shows this coordinator.
        await page.GotoAsync(host.BaseAddress.ToString());
        await Assertions.Expect(page.GetByTestId("coordinator-id")).ToHaveTextAsync(host.CoordinatorId);
        await Assertions.Expect(page.GetByTestId("bus-state")).ToHaveTextAsync("bus healthy");
        var committedCard = page.Locator("#c-committed");

        // 2. Transfers run; the committed count moves on the page, twice.
        using var stopTransfers = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var transfers = RunTransfersAsync(bank, stopTransfers.Token);
        var first = await WaitForCountAboveAsync(committedCard, 0);
        var second = await WaitForCountAboveAsync(committedCard, first);
        Assert.That(second, Is.GreaterThan(first));
        await Assertions.Expect(page.Locator($"[data-testid=participant-row][data-participant='{bank.Debit}']")).ToContainTextAsync("ago");

        // 3. A committed transaction's detail shows its journal history.
        await page.Locator("#tab-journal").ClickAsync();
        await page.SelectOptionAsync("#f-status", "committed");
        var committedRow = page.GetByTestId("tx-row").First;
        await Assertions.Expect(committedRow).ToHaveAttributeAsync("data-status", "committed");
        await committedRow.ClickAsync();
        await Assertions.Expect(page.GetByTestId("detail")).ToBeVisibleAsync();
        await Assertions.Expect(page.GetByTestId("history")).ToContainTextAsync("commit-decided");
        await Assertions.Expect(page.GetByTestId("history-row").Last).ToContainTextAsync("committed");
        await Assertions.Expect(page.GetByTestId("verdict")).ToContainTextAsync("commit");
        await page.Locator("#d-close").ClickAsync();

        // 4. An in-doubt transaction: bank A did its work and prepared (voted Yes); the other
        //    participant never answers. Bank A holds a prepared branch and its locks (on an
        //    account the transfers do not use, so they keep running).
        var ghost = $"ghost-{Guid.NewGuid():N}"[..16];
        await peers.ListenAsync(ghost);
        var inDoubt = bank.Initiator.Begin();
        var debit = await inDoubt.SendAsync(bank.Debit, new DebitAccount { TransferId = Guid.NewGuid(), AccountId = BankPeers.SpareAccount, Amount = 5 }, cancellationToken);
        Assert.That(debit.Succeeded, Is.True, debit.Reason);
        await peers.CommitAsync(inDoubt.Id, bank.Debit, ghost);
        await Eventually.WaitForAsync(() => CountPreparedAsync(bank.Databases[bank.Debit], inDoubt.Id), n => n == 1, TimeSpan.FromSeconds(30), "bank A to prepare");

        await page.Locator("#tab-live").ClickAsync();
        await page.SelectOptionAsync("#f-status", "in-doubt");
        var inDoubtRow = page.Locator($"[data-testid=tx-row][data-id='{inDoubt.Id.Value}']");
        await Assertions.Expect(inDoubtRow).ToBeVisibleAsync();
        await Assertions.Expect(inDoubtRow).ToContainTextAsync("in-doubt");
        await Assertions.Expect(page.Locator("#c-in-doubt")).Not.ToHaveTextAsync("0");
        var screenshot = await SaveScreenshotAsync(page, "dashboard.png");

        // 5. Its detail: the journal verdict is abort (no commit decision) and the prepared branch is listed.
        await inDoubtRow.ClickAsync();
        await Assertions.Expect(page.GetByTestId("detail-id")).ToHaveTextAsync(inDoubt.Id.Value.ToString());
        await Assertions.Expect(page.GetByTestId("verdict")).ToContainTextAsync("abort");
        await Assertions.Expect(page.GetByTestId("detail")).ToContainTextAsync($"txc:{host.CoordinatorId}:{inDoubt.Id}:{bank.Debit}");
        await Assertions.Expect(page.GetByTestId("admin-box")).ToContainTextAsync("need the admin key");

        // 6. The admin key, then "resolve per journal": the transaction aborts and bank A rolls back.
        await page.GetByTestId("admin-enter-key").ClickAsync();
        await page.GetByTestId("key-input").FillAsync(DashboardHost.AdminKey);
        await page.GetByTestId("key-save").ClickAsync();
        await Assertions.Expect(page.GetByTestId("admin-state")).ToHaveTextAsync("admin: key ok");
        await page.GetByTestId("action-resolve").ClickAsync();
        await page.GetByTestId("admin-operator").FillAsync("on-call");
        await page.GetByTestId("admin-reason").FillAsync("participant never voted; abort per journal");
        await page.GetByTestId("admin-submit").ClickAsync();
        await Assertions.Expect(page.GetByTestId("admin-outcome-done")).ToContainTextAsync("resolve-abort: done");
        await Eventually.WaitForAsync(() => CountPreparedAsync(bank.Databases[bank.Debit], inDoubt.Id), n => n == 0, TimeSpan.FromSeconds(30), "bank A to roll back its prepared branch");
        await Assertions.Expect(page.GetByTestId("detail-status")).ToHaveTextAsync("aborted");
        await Assertions.Expect(page.GetByTestId("history")).ToContainTextAsync("operator:resolve-abort");
        await page.Locator("#d-close").ClickAsync();
        await Assertions.Expect(page.GetByTestId("audit-table").Locator("[data-testid=audit-row][data-action='resolve-abort']")).ToContainTextAsync("on-call");
        await SaveScreenshotAsync(page, "dashboard-after-resolve.png");

        await stopTransfers.CancelAsync();
        var (committed, aborted) = await transfers;
        await TestContext.Progress.WriteLineAsync($"browser test: {committed} transfers committed, {aborted} aborted while the page was open; screenshot {screenshot}");
        Assert.Multiple(() =>
        {
            Assert.That(committed, Is.GreaterThan(0));
            Assert.That(consoleErrors, Is.Empty, "the page logged no error");
        });
    }

    /// <summary>Runs transfers in small batches until cancelled; returns how many committed and aborted.</summary>
    private static async Task<(int Committed, int Aborted)> RunTransfersAsync(BankPeers bank, CancellationToken cancellationToken)
    {
        var runner = new TransferRunner(bank.Initiator);
        var (committed, aborted) = (0, 0);
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                var run = await runner.RunAsync(new TransferRunOptions
                {
                    Transfers = 20,
                    Concurrency = 2,
                    Accounts = BankPeers.Accounts,
                    RefusedShare = 0.1,
                    DebitParticipant = bank.Debit,
                    CreditParticipant = bank.Credit,
                }, null, cancellationToken);
                committed += run.Committed;
                aborted += run.Aborted;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                break;
            }
        }

        return (committed, aborted);
    }

    private static async Task<long> WaitForCountAboveAsync(ILocator card, long above)
    {
        long value = 0;
        await Eventually.WaitForAsync(
            async () => value = long.TryParse((await card.TextContentAsync())?.Replace(",", "", StringComparison.Ordinal), out var v) ? v : -1,
            v => v > above,
            TimeSpan.FromSeconds(30),
            $"the committed count on the page to pass {above}");
        return value;
    }

    private static async Task<int> CountPreparedAsync(string database, TransactionId id)
    {
        await using var connection = new NpgsqlConnection(database);
        return await connection.ExecuteScalarAsync<int>(
            "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE @Pattern",
            new { Pattern = $"txc:%:{id}:%" });
    }

    private static async Task<string> SaveScreenshotAsync(IPage page, string name)
    {
        var path = Path.Combine(TestContext.CurrentContext.WorkDirectory, name);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = path, FullPage = true });
        TestContext.AddTestAttachment(path, name);
        if (name == "dashboard.png" && Environment.GetEnvironmentVariable(ScreenshotCopyVariable) is { Length: > 0 } copy)
        {
            File.Copy(path, copy, overwrite: true);
        }

        return path;
    }
}
