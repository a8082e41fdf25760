using System.Collections.Immutable;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using TxCoord.Contracts;
using TxCoord.Coordinator.Journal;
using TxCoord.Tests.Dashboard.Infrastructure;

namespace TxCoord.Tests.Dashboard;

/// <summary>
/// How fast the dashboard answers with 10,000 transactions in the journal, written through the
/// journal class itself (the coordinator's own writes: a forced commit decision and its end for
/// each committed one, an abort for each aborted one). Prints the figures (and writes them as
/// JSON next to the test results); the bounds asserted are generous, for a shared, busy machine.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class DashboardLoadTimeTests
{
    public const int Transactions = 10_000;

    /// <summary>Every figure below must stay under this, median or first load alike.</summary>
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(3);

    private const int Repeats = 15;

    [Test]
    [CancelAfter(240_000)]
    public async Task JournalWith10000Transactions_PageAndListApiLoadWithinBounds(CancellationToken cancellationToken)
    {
        var journalDatabase = await TestServers.CreateDatabaseAsync($"dash_{Guid.NewGuid():N}"[..20] + "_load");
        var coordinator = new CoordinatorId($"load-{Guid.NewGuid():N}"[..16]);
        var written = Stopwatch.StartNew();
        var ids = await FillJournalAsync(journalDatabase, coordinator, cancellationToken);
        written.Stop();

        await using var host = await DashboardHost.StartAsync(s => s["TxCoord:CoordinatorId"] = coordinator.Value, journalDatabase);
        var figures = new List<(string What, double FirstMs, double MedianMs)>();
        var client = host.Anonymous;

        var total = (await host.GetJsonAsync("/api/overview")).GetProperty("journal").GetProperty("total").GetInt64();
        Assert.That(total, Is.EqualTo(Transactions));

        figures.Add(await TimeAsync("GET / (page HTML)", client, "/"));
        figures.Add(await TimeAsync("GET /assets/dashboard.js", client, "/assets/dashboard.js"));
        figures.Add(await TimeAsync("GET /api/overview", client, "/api/overview"));
        figures.Add(await TimeAsync("GET /api/transactions (live)", client, "/api/transactions"));
        figures.Add(await TimeAsync("GET /api/transactions?view=journal (page 1 of 50)", client, "/api/transactions?view=journal&limit=50"));
        figures.Add(await TimeAsync("GET /api/transactions?view=journal&state=aborted", client, "/api/transactions?view=journal&state=aborted&limit=50"));
        figures.Add(await TimeAsync("GET /api/transactions?view=journal&participant=...", client, "/api/transactions?view=journal&participant=bank-b&limit=50"));
        var deepCursor = await CursorAfterPagesAsync(host, 100);
        figures.Add(await TimeAsync("GET /api/transactions?view=journal (page 101, by cursor)", client, $"/api/transactions?view=journal&limit=50&cursor={deepCursor}"));
        figures.Add(await TimeAsync("GET /api/transactions?view=journal&limit=500", client, "/api/transactions?view=journal&limit=500"));
        figures.Add(await TimeAsync("GET /api/transactions/{id}", client, $"/api/transactions/{ids[Transactions / 2].Value}"));
        figures.Add(await TimeAsync("GET /api/participants", client, "/api/participants"));
        figures.Add(await TimeAsync("GET /metrics", client, "/metrics"));

        // The page in a real browser, timed with requestAnimationFrame polling: from navigation
        // until the cards and the live list are drawn, then from a click on the journal tab
        // until its first 50 rows (of 10,000) are on screen.
        await using var chromium = await Chromium.LaunchAsync();
        var loads = new List<double>();
        var journalTabs = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            var page = await chromium.NewPageAsync();
            var started = Stopwatch.StartNew();
            await page.GotoAsync(host.BaseAddress.ToString());
            await page.WaitForFunctionAsync("() => document.querySelector('#c-in-flight').textContent !== '–' && document.querySelector('#page-info').textContent.includes('in flight')");
            loads.Add(started.Elapsed.TotalMilliseconds);
            started.Restart();
            await page.Locator("#tab-journal").ClickAsync();
            await page.WaitForFunctionAsync("() => document.querySelectorAll('[data-testid=tx-row]').length === 50 && document.querySelector('#page-info').textContent.includes('of 10,000 journal rows')");
            journalTabs.Add(started.Elapsed.TotalMilliseconds);
            await page.Context.CloseAsync();
        }

        figures.Add(("Chromium: navigate until cards and live list are drawn", loads[0], Median(loads)));
        figures.Add(("Chromium: journal tab until 50 of 10,000 rows are drawn", journalTabs[0], Median(journalTabs)));

        var report = new StringBuilder();
        report.AppendLine(CultureInfo.InvariantCulture, $"Dashboard load times with {Transactions:N0} transactions in the journal (written in {written.Elapsed.TotalSeconds:F1} s); first / median of {Repeats} (browser: of 5):");
        foreach (var (what, firstMs, medianMs) in figures)
        {
            report.AppendLine(CultureInfo.InvariantCulture, $"  {what,-62} {firstMs,8:F1} ms {medianMs,8:F1} ms");
        }

        await TestContext.Progress.WriteAsync(report.ToString());
        var json = Path.Combine(TestContext.CurrentContext.WorkDirectory, "dashboard-load-times.json");
        await File.WriteAllTextAsync(json, JsonSerializer.Serialize(figures.Select(f => new { f.What, f.FirstMs, f.MedianMs }), DashboardHost.Json), cancellationToken);
        TestContext.AddTestAttachment(json, "dashboard load times");

        Assert.Multiple(() =>
        {
            foreach (var (what, firstMs, medianMs) in figures)
            {
                Assert.That(medianMs, Is.LessThan(Bound.TotalMilliseconds), $"{what}: median");
                Assert.That(firstMs, Is.LessThan(Bound.TotalMilliseconds * 2), $"{what}: first load");
            }
        });
    }

    /// <summary>Writes <see cref="Transactions"/> transactions through <see cref="PostgresTransactionJournal"/>: 80% committed, 20% aborted.</summary>
    private static async Task<IReadOnlyList<TransactionId>> FillJournalAsync(string connectionString, CoordinatorId coordinator, CancellationToken cancellationToken)
    {
        await using var journal = new PostgresTransactionJournal(connectionString);
        await journal.EnsureSchemaAsync(cancellationToken);
        ImmutableArray<ParticipantId> participants = [new("bank-a"), new("bank-b")];
        var ids = Enumerable.Range(0, Transactions).Select(_ => TransactionId.New()).ToArray();
        var start = DateTimeOffset.UtcNow.AddHours(-1);
        await Parallel.ForEachAsync(
            Enumerable.Range(0, Transactions),
            new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = cancellationToken },
            async (i, token) =>
            {
                var created = start.AddMilliseconds(i * 300);
                if (i % 5 == 4)
                {
                    await journal.RecordAbortAsync(new AbortRecord(ids[i], coordinator, CommitProtocol.TwoPhase, participants, "participant bank-a voted No: insufficient funds", created), created.AddMilliseconds(12), token);
                    return;
                }

                var decision = new CommitDecision(ids[i], coordinator, CommitProtocol.TwoPhase, participants, created, created.AddMilliseconds(9));
                await journal.WriteCommitDecisionAsync(decision, created.AddMilliseconds(10), token);
                await journal.RecordEndAsync(decision, created.AddMilliseconds(25), token);
            });
        return ids;
    }

    private static async Task<(string, double, double)> TimeAsync(string what, HttpClient client, string path)
    {
        var times = new List<double>();
        for (var i = 0; i < Repeats; i++)
        {
            var watch = Stopwatch.StartNew();
            using var response = await client.GetAsync(path);
            await response.Content.ReadAsByteArrayAsync();
            watch.Stop();
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), $"{what}: GET {path}");
            times.Add(watch.Elapsed.TotalMilliseconds);
        }

        return (what, times[0], Median(times));
    }

    private static async Task<string> CursorAfterPagesAsync(DashboardHost host, int pages)
    {
        string? cursor = null;
        for (var i = 0; i < pages; i++)
        {
            var page = await host.GetJsonAsync("/api/transactions?view=journal&limit=50" + (cursor is null ? "" : $"&cursor={cursor}"));
            cursor = page.GetProperty("nextCursor").GetString();
            Assert.That(cursor, Is.Not.Null, $"page {i + 1} has a next page");
        }

        return cursor!;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
    }
}
