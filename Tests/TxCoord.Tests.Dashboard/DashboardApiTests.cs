using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Dapper;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Tests.Dashboard.Infrastructure;

namespace TxCoord.Tests.Dashboard;

/// <summary>
/// The dashboard's JSON API, /metrics and /health against a real coordinator service over real
/// PostgreSQL and RabbitMQ. Transactions are put in the states a test needs by participants the
/// test plays itself on the bus (<see cref="ScriptedParticipants"/>); each test uses participant
/// names of its own, so the tests share one coordinator without seeing each other's transactions.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class DashboardApiTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    private DashboardHost _host = null!;
    private ScriptedParticipants _peers = null!;
    private string _participantDatabase = "";
    private string _configuredParticipant = "";

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        _configuredParticipant = $"db-{suffix}";
        _participantDatabase = await TestServers.CreateDatabaseAsync($"dash_{suffix}_participant");
        _host = await DashboardHost.StartAsync(s => s[$"TxCoord:Participants:{_configuredParticipant}:ConnectionString"] = _participantDatabase);
        _peers = await ScriptedParticipants.StartAsync(_host.CoordinatorId);
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        await RollBackPreparedAsync();
        await _peers.DisposeAsync();
        await _host.DisposeAsync();
    }

    // ---- health -----------------------------------------------------------------------------

    [TestCase("/health")]
    [TestCase("/health/ready")]
    public async Task Health_JournalAndBusUp_Answers200WithBothReachable(string path)
    {
        var health = await _host.GetJsonAsync(path);
        Assert.Multiple(() =>
        {
            Assert.That(health.GetProperty("status").GetString(), Is.EqualTo("Healthy"));
            Assert.That(health.GetProperty("journalReachable").GetBoolean(), Is.True);
            Assert.That(health.GetProperty("busHealthy").GetBoolean(), Is.True);
        });
    }

    [Test]
    public async Task HealthLive_ChecksNothingButTheProcess_Answers200()
    {
        var health = await _host.GetJsonAsync("/health/live");
        Assert.Multiple(() =>
        {
            Assert.That(health.GetProperty("status").GetString(), Is.EqualTo("Healthy"));
            Assert.That(health.GetProperty("checks").EnumerateObject().Count(), Is.Zero);
        });
    }

    // ---- overview and metrics ---------------------------------------------------------------

    [Test]
    public async Task Overview_AfterACommitAndAnAbort_CountsRatesAndSeriesMove()
    {
        var before = await _host.GetJsonAsync("/api/overview");
        var p = await NewParticipantAsync();
        await CommitThroughAsync(p);
        var aborted = TransactionId.New();
        await _peers.CommitAsync(aborted, p);
        await WaitForPrepareAsync(p, aborted);
        await _peers.VoteAsync(aborted, p, Vote.No);
        await WaitForJournalStateAsync(aborted, "aborted");

        var after = await _host.GetJsonAsync("/api/overview");
        var totals = after.GetProperty("totals");
        var beforeTotals = before.GetProperty("totals");
        var series = after.GetProperty("series").EnumerateArray().ToList();
        var twoPc = after.GetProperty("protocols").EnumerateArray().Single(x => x.GetProperty("protocol").GetString() == "2pc");
        Assert.Multiple(() =>
        {
            Assert.That(after.GetProperty("coordinator").GetProperty("id").GetString(), Is.EqualTo(_host.CoordinatorId));
            Assert.That(after.GetProperty("coordinator").GetProperty("bus").GetProperty("status").GetString(), Is.EqualTo("Healthy"));
            Assert.That(after.GetProperty("coordinator").GetProperty("journal").GetProperty("reachable").GetBoolean(), Is.True);
            Assert.That(after.GetProperty("coordinator").GetProperty("journal").GetProperty("decisionWriteP50Ms").GetDouble(), Is.GreaterThan(0), "the forced decision write was timed");
            Assert.That(totals.GetProperty("committed").GetInt64(), Is.GreaterThanOrEqualTo(beforeTotals.GetProperty("committed").GetInt64() + 1));
            Assert.That(totals.GetProperty("aborted").GetInt64(), Is.GreaterThanOrEqualTo(beforeTotals.GetProperty("aborted").GetInt64() + 1));
            Assert.That(totals.GetProperty("committedPerSecond").GetDouble(), Is.GreaterThan(0));
            Assert.That(totals.GetProperty("p50Ms").GetDouble(), Is.GreaterThan(0));
            Assert.That(series, Has.Count.EqualTo(60), "10 minutes in 10-second buckets");
            Assert.That(series.Sum(s => s.GetProperty("committed").GetInt64()), Is.GreaterThanOrEqualTo(1));
            Assert.That(twoPc.GetProperty("journal").GetProperty("committed").GetInt64(), Is.GreaterThanOrEqualTo(1));
            Assert.That(after.GetProperty("journal").GetProperty("total").GetInt64(), Is.GreaterThanOrEqualTo(2));
        });
    }

    [Test]
    public async Task Metrics_AfterACommit_PrometheusTextHasOutcomesLatenciesMessagesAndParticipantImpact()
    {
        var p = await NewParticipantAsync();
        await CommitThroughAsync(p);

        using var response = await _host.Anonymous.GetAsync("/metrics");
        var text = await response.Content.ReadAsStringAsync();
        var lines = text.Split('\n');
        Assert.Multiple(() =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(response.Content.Headers.ContentType?.ToString(), Does.StartWith("text/plain; version=0.0.4"));
            Assert.That(Value(lines, "txcoord_transactions_total{protocol=\"2pc\",outcome=\"committed\"}"), Is.GreaterThanOrEqualTo(1));
            Assert.That(Value(lines, "txcoord_transaction_duration_seconds_count{protocol=\"2pc\",outcome=\"committed\"}"), Is.GreaterThanOrEqualTo(1));
            Assert.That(Value(lines, "txcoord_phase_duration_seconds_count{protocol=\"2pc\",phase=\"preparing\"}"), Is.GreaterThanOrEqualTo(1));
            Assert.That(Value(lines, "txcoord_journal_decision_write_seconds_count"), Is.GreaterThanOrEqualTo(1));
            Assert.That(Value(lines, "txcoord_messages_sent_total{type=\"CommitBranch\"}"), Is.GreaterThanOrEqualTo(1));
            Assert.That(Value(lines, "txcoord_messages_sent_total{type=\"PrepareBranch\"}"), Is.GreaterThanOrEqualTo(1));
            Assert.That(lines, Has.Some.StartWith("txcoord_transactions_in_doubt "));
            Assert.That(lines, Has.Some.StartWith("txcoord_oldest_prepared_age_seconds "));
            Assert.That(Value(lines, $"txcoord_participant_database_up{{participant=\"{_configuredParticipant}\"}}"), Is.EqualTo(1));
            Assert.That(Value(lines, $"txcoord_participant_prepared_headroom{{participant=\"{_configuredParticipant}\"}}"), Is.GreaterThan(0));
            Assert.That(lines.Where(l => l.StartsWith("# TYPE ", StringComparison.Ordinal)).Select(l => l.Split(' ')[2]), Is.Unique, "one TYPE line per metric");
        });
    }

    [Test]
    public async Task Metrics_ARelayedVoteOfANonParticipantAndAnUnknownMessageType_CountedAsRefusedAndSkipped()
    {
        var p = await NewParticipantAsync();
        string[] Series(string text) => text.Split('\n');
        var refusedSeries = "txcoord_messages_refused_total{type=\"CommitTransaction.Prepared\",reason=\"not_a_participant\"}";
        var skippedSeries = $"txcoord_messages_skipped_total{{queue=\"{TxCoordQueues.Coordinator(new CoordinatorId(_host.CoordinatorId))}\"}}";
        var before = Series(await _host.Anonymous.GetStringAsync("/metrics"));
        var (refusedBefore, skippedBefore) = (ValueOrZero(before, refusedSeries), ValueOrZero(before, skippedSeries));

        // A commit request relaying a Yes vote for a participant it does not name, and a message no handler takes.
        await _peers.SendAsync(new CommitTransaction
        {
            TransactionId = TransactionId.New(),
            Participants = [new ParticipantId(p)],
            Prepared = [new ParticipantId($"{p}-ghost")],
        });
        await _peers.SendAsync(new NoHandlerTakesThis { Text = "who reads this?" });

        var after = await Eventually.WaitForAsync(
            async () => Series(await _host.Anonymous.GetStringAsync("/metrics")),
            lines => ValueOrZero(lines, refusedSeries) > refusedBefore && ValueOrZero(lines, skippedSeries) > skippedBefore,
            Wait,
            "the refused relayed vote and the skipped message in /metrics");
        Assert.Multiple(() =>
        {
            Assert.That(ValueOrZero(after, refusedSeries), Is.EqualTo(refusedBefore + 1));
            Assert.That(ValueOrZero(after, skippedSeries), Is.EqualTo(skippedBefore + 1));
            Assert.That(after, Has.Some.EqualTo("# TYPE txcoord_messages_refused_total counter"));
            Assert.That(after, Has.Some.EqualTo("# TYPE txcoord_messages_skipped_total counter"));
        });
    }

    // ---- the live list ----------------------------------------------------------------------

    [Test]
    public async Task LiveList_OneYesVoteAndOneMissing_ListedInDoubtWithEachVoteAndFilterable()
    {
        var (voted, silent) = (await NewParticipantAsync(), await NewParticipantAsync());
        var id = TransactionId.New();
        await _peers.CommitAsync(id, voted, silent);
        await WaitForPrepareAsync(voted, id);
        await _peers.VoteAsync(id, voted, Vote.Yes);
        await WaitForLiveStatusAsync(id, "in-doubt");

        var list = await _host.GetJsonAsync($"/api/transactions?view=live&status=in-doubt&participant={voted}&protocol=2pc");
        var item = list.GetProperty("items").EnumerateArray().Single();
        var branches = item.GetProperty("participants").EnumerateArray().ToDictionary(b => b.GetProperty("participant").GetString()!);
        var other = await _host.GetJsonAsync($"/api/transactions?view=live&participant={await NewParticipantAsync()}");
        var committing = await _host.GetJsonAsync($"/api/transactions?view=live&status=committing&participant={voted}");
        Assert.Multiple(() =>
        {
            Assert.That(item.GetProperty("id").GetString(), Is.EqualTo(id.Value.ToString()));
            Assert.That(item.GetProperty("phase").GetString(), Is.EqualTo("preparing"));
            Assert.That(item.GetProperty("source").GetString(), Is.EqualTo("memory"));
            Assert.That(item.GetProperty("ageSeconds").GetDouble(), Is.GreaterThanOrEqualTo(1));
            Assert.That(branches[voted].GetProperty("vote").GetString(), Is.EqualTo("yes"));
            Assert.That(branches[silent].GetProperty("vote").ValueKind, Is.EqualTo(JsonValueKind.Null));
            Assert.That(other.GetProperty("items").GetArrayLength(), Is.Zero, "a participant filter excludes the others");
            Assert.That(committing.GetProperty("items").GetArrayLength(), Is.Zero, "a status filter excludes the others");
        });
    }

    [Test]
    public async Task LiveList_PagedByTwo_EveryTransactionOnceOldestFirst()
    {
        var p = await NewParticipantAsync();
        var ids = new List<TransactionId>();
        for (var i = 0; i < 5; i++)
        {
            var id = TransactionId.New();
            ids.Add(id);
            await _peers.CommitAsync(id, p);
        }

        await Eventually.WaitForAsync(
            async () => (await _host.GetJsonAsync($"/api/transactions?participant={p}")).GetProperty("total").GetInt32(),
            total => total == 5,
            Wait,
            "5 transactions in flight");

        var all = await _host.GetJsonAsync($"/api/transactions?view=live&participant={p}&limit=10");
        var whole = all.GetProperty("items").EnumerateArray().Select(x => (Id: x.GetProperty("id").GetString()!, Age: x.GetProperty("ageSeconds").GetDouble())).ToList();
        var seen = new List<(string Id, double Age)>();
        int? offset = 0;
        while (offset is { } o)
        {
            var page = await _host.GetJsonAsync($"/api/transactions?view=live&participant={p}&limit=2&offset={o}");
            Assert.That(page.GetProperty("items").GetArrayLength(), Is.LessThanOrEqualTo(2));
            seen.AddRange(page.GetProperty("items").EnumerateArray().Select(x => (x.GetProperty("id").GetString()!, x.GetProperty("ageSeconds").GetDouble())));
            offset = page.GetProperty("nextOffset").ValueKind == JsonValueKind.Null ? null : page.GetProperty("nextOffset").GetInt32();
        }

        Assert.Multiple(() =>
        {
            Assert.That(seen.Select(s => s.Id), Is.EquivalentTo(ids.Select(i => i.Value.ToString())));
            // Paging keeps the order of the whole list, oldest first. Ages are compared within one
            // read only: each page is read a moment later, when every age has grown.
            Assert.That(seen.Select(s => s.Id), Is.EqualTo(whole.Select(w => w.Id)));
            Assert.That(whole.Select(w => w.Age), Is.Ordered.Descending);
        });

        foreach (var id in ids)
        {
            await _peers.VoteAsync(id, p, Vote.No);
        }
    }

    [TestCase("status=bogus", "status 'bogus' is unknown")]
    [TestCase("protocol=4pc", "protocol '4pc' is unknown")]
    [TestCase("participant=bad%20name", "participant 'bad name' is not a valid id")]
    [TestCase("limit=0", "limit '0' must be a whole number from 1 to 500")]
    [TestCase("limit=abc", "limit 'abc' must be a whole number")]
    [TestCase("offset=-1", "offset '-1' must be a whole number")]
    [TestCase("sort=age", "unknown query parameter 'sort'")]
    [TestCase("status=stuck&status=preparing", "'status' is given more than once")]
    [TestCase("view=everything", "view 'everything' is unknown")]
    [TestCase("view=journal&state=running", "state 'running' is unknown")]
    [TestCase("view=journal&cursor=nope", "cursor 'nope' is not valid")]
    [TestCase("view=journal&status=stuck", "unknown query parameter 'status'")]
    [TestCase("view=journal&limit=501", "limit '501' must be a whole number from 1 to 500")]
    [TestCase("view=journal&coordinator=a%27b", "coordinator 'a'b' is not a valid id")]
    public async Task TransactionList_BadFilter_Answers400WithAMessage(string query, string message)
    {
        using var response = await _host.Anonymous.GetAsync($"/api/transactions?{query}");
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Multiple(() =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(body.GetProperty("error").GetString(), Does.Contain(message));
        });
    }

    // ---- the journal list -------------------------------------------------------------------

    [Test]
    public async Task JournalList_SevenRowsOfOneParticipant_PagesOfThreeByCursorNewestFirstWithFilters()
    {
        var p = await NewParticipantAsync();
        var ids = new List<TransactionId>();
        for (var i = 0; i < 7; i++)
        {
            if (i % 2 == 1)
            {
                ids.Add(await CommitThroughAsync(p));
                continue;
            }

            var id = TransactionId.New();
            ids.Add(id);
            await _peers.CommitAsync(id, p);
            await WaitForPrepareAsync(p, id);
            await _peers.VoteAsync(id, p, Vote.No);
            await WaitForJournalStateAsync(id, "aborted");
        }

        var seen = new List<string>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var page = await _host.GetJsonAsync($"/api/transactions?view=journal&participant={p}&limit=3" + (cursor is null ? "" : $"&cursor={cursor}"));
            pages++;
            Assert.That(page.GetProperty("matching").GetInt64(), Is.EqualTo(7), "the count covers the whole filtered list");
            seen.AddRange(page.GetProperty("items").EnumerateArray().Select(x => x.GetProperty("id").GetString()!));
            cursor = page.GetProperty("nextCursor").GetString();
        }
        while (cursor is not null);

        var aborted = await _host.GetJsonAsync($"/api/transactions?view=journal&participant={p}&state=aborted");
        var abortedIds = aborted.GetProperty("items").EnumerateArray().Select(x => x.GetProperty("id").GetString()).ToList();
        var none = await _host.GetJsonAsync($"/api/transactions?view=journal&participant={p}&protocol=3pc");
        Assert.Multiple(() =>
        {
            Assert.That(pages, Is.EqualTo(3));
            Assert.That(seen, Is.EqualTo(ids.AsEnumerable().Reverse().Select(i => i.Value.ToString()).ToList()), "newest first, each once");
            Assert.That(abortedIds, Is.EquivalentTo(ids.Where((_, i) => i % 2 == 0).Select(i => i.Value.ToString())));
            Assert.That(aborted.GetProperty("items").EnumerateArray().All(x => x.GetProperty("status").GetString() == "aborted"), Is.True);
            Assert.That(none.GetProperty("matching").GetInt64(), Is.Zero);
        });
    }

    // ---- one transaction --------------------------------------------------------------------

    [Test]
    public async Task TransactionDetail_CommittedTransaction_ShowsJournalRowAndHistory()
    {
        var p = await NewParticipantAsync();
        var id = await CommitThroughAsync(p);

        var detail = await _host.GetJsonAsync($"/api/transactions/{id.Value:N}");
        var kinds = detail.GetProperty("history").EnumerateArray().Select(h => h.GetProperty("kind").GetString()).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(detail.GetProperty("id").GetString(), Is.EqualTo(id.Value.ToString()));
            Assert.That(detail.GetProperty("journal").GetProperty("status").GetString(), Is.EqualTo("committed"));
            Assert.That(detail.GetProperty("journal").GetProperty("participants")[0].GetProperty("acknowledged").GetBoolean(), Is.True);
            Assert.That(detail.GetProperty("verdict").GetProperty("verdict").GetString(), Is.EqualTo("commit"));
            Assert.That(kinds, Is.EqualTo(new[] { "commit-decided", "committed" }));
        });
    }

    [TestCase("not-a-guid")]
    [TestCase("12345")]
    [TestCase("0195f3c2-8a4b-7c1d-9e2f-3a4b5c6d7e8")]
    public async Task TransactionDetail_BadId_Answers400WithAMessage(string id)
    {
        using var response = await _host.Anonymous.GetAsync($"/api/transactions/{id}");
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Multiple(() =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(body.GetProperty("error").GetString(), Does.Contain("is not a transaction id"));
        });
    }

    [Test]
    public async Task TransactionDetail_UnknownId_Answers404SayingPresumedAbort()
    {
        using var response = await _host.Anonymous.GetAsync($"/api/transactions/{Guid.NewGuid()}");
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Multiple(() =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That(body.GetProperty("error").GetString(), Does.Contain("aborted by presumption"));
        });
    }

    // ---- participants -----------------------------------------------------------------------

    [Test]
    public async Task Participants_PreparedBranchInConfiguredDatabase_ShowsImpactAndIsListedInDoubt()
    {
        var id = TransactionId.New();
        var gid = BranchGid.Create(new CoordinatorId(_host.CoordinatorId), id, new ParticipantId(_configuredParticipant));
        await PrepareInParticipantDatabaseAsync(gid);
        var seen = await NewParticipantAsync();
        await CommitThroughAsync(seen);

        var participants = await Eventually.WaitForAsync(
            () => _host.GetJsonAsync("/api/participants"),
            p => Database(p, _configuredParticipant).GetProperty("preparedOurs").GetInt32() >= 1,
            Wait,
            "the prepared branch to show in the participant's database");
        var database = Database(participants, _configuredParticipant);
        var row = participants.GetProperty("items").EnumerateArray().Single(i => i.GetProperty("id").GetString() == seen);
        var live = await Eventually.WaitForAsync(
            () => _host.GetJsonAsync($"/api/transactions?view=live&participant={_configuredParticipant}"),
            l => l.GetProperty("items").EnumerateArray().Any(i => i.GetProperty("id").GetString() == id.Value.ToString()),
            Wait,
            "the prepared branch to be listed in doubt");
        var orphan = live.GetProperty("items").EnumerateArray().Single(i => i.GetProperty("id").GetString() == id.Value.ToString());
        var detail = await _host.GetJsonAsync($"/api/transactions/{id.Value}");
        Assert.Multiple(() =>
        {
            Assert.That(database.GetProperty("configured").GetBoolean(), Is.True);
            Assert.That(database.GetProperty("reachable").GetBoolean(), Is.True);
            Assert.That(database.GetProperty("locksHeld").GetInt64(), Is.GreaterThanOrEqualTo(2), "a row lock's transaction id and the table's lock");
            Assert.That(database.GetProperty("maxPreparedTransactions").GetInt32(), Is.GreaterThan(0));
            Assert.That(database.GetProperty("headroom").GetInt32(), Is.LessThan(database.GetProperty("maxPreparedTransactions").GetInt32()));
            Assert.That(database.GetProperty("oldestXidAge").GetInt64(), Is.GreaterThanOrEqualTo(0));
            Assert.That(database.GetProperty("oldestPreparedAgeSeconds").GetDouble(), Is.GreaterThanOrEqualTo(0));
            Assert.That(row.GetProperty("lastSeen").ValueKind, Is.EqualTo(JsonValueKind.String), "a participant that voted was seen");
            Assert.That(row.GetProperty("database").GetProperty("configured").GetBoolean(), Is.False, "a participant without a connection string is 'not configured'");
            Assert.That(orphan.GetProperty("status").GetString(), Is.EqualTo("in-doubt"));
            Assert.That(orphan.GetProperty("source").GetString(), Is.EqualTo("participant-database"));
            Assert.That(detail.GetProperty("preparedBranches")[0].GetProperty("gid").GetString(), Is.EqualTo(gid.Value));
            Assert.That(detail.GetProperty("verdict").GetProperty("verdict").GetString(), Is.EqualTo("abort"));
        });
    }

    // ---- access -----------------------------------------------------------------------------

    [TestCase("/resolve")]
    [TestCase("/retry")]
    public async Task AdminAction_WithoutCredentials_Answers401AndWritesNoAudit(string action)
    {
        var id = TransactionId.New();
        using var response = await _host.Anonymous.PostAsJsonAsync($"/api/admin/transactions/{id.Value}{action}", new { @operator = "eve", reason = "no key" });
        await Assert.MultipleAsync(async () =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(response.Headers.WwwAuthenticate.ToString(), Does.StartWith("Bearer"));
            Assert.That(await AuditCountAsync(id), Is.Zero);
        });
    }

    [Test]
    public async Task AdminAction_WithTheReadOnlyKey_Answers403AndWritesNoAudit()
    {
        var id = TransactionId.New();
        using var reader = _host.Client(DashboardHost.ReadKey);
        var (status, body) = await _host.PostAdminAsync($"/api/admin/transactions/{id.Value}/resolve", new { @operator = "eve", reason = "read key" }, reader);
        await Assert.MultipleAsync(async () =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.Forbidden));
            Assert.That(body.GetProperty("error").GetString(), Does.Contain("may only read"));
            Assert.That(await AuditCountAsync(id), Is.Zero);
        });
    }

    [Test]
    public async Task AdminAction_WithAnUnknownKey_Answers401()
    {
        using var stranger = _host.Client("not-the-key-0123456789abcdef");
        var (status, body) = await _host.PostAdminAsync($"/api/admin/transactions/{Guid.NewGuid()}/retry", new { @operator = "eve", reason = "guess" }, stranger);
        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(body.GetProperty("error").GetString(), Does.Contain("not valid"));
        });
    }

    [TestCase("/api/overview")]
    [TestCase("/api/transactions")]
    [TestCase("/api/participants")]
    [TestCase("/api/audit")]
    [TestCase("/metrics")]
    public async Task ReadEndpoint_ThroughAProxyWithoutKey_Answers401ButTheReadKeyOpensIt(string path)
    {
        using var proxied = new HttpRequestMessage(HttpMethod.Get, path);
        proxied.Headers.Add("X-Forwarded-For", "203.0.113.7");
        using var refused = await _host.Anonymous.SendAsync(proxied);

        using var withKey = new HttpRequestMessage(HttpMethod.Get, path);
        withKey.Headers.Add("X-Forwarded-For", "203.0.113.7");
        withKey.Headers.Add("X-Api-Key", DashboardHost.ReadKey);
        using var allowed = await _host.Anonymous.SendAsync(withKey);

        using var loopback = await _host.Anonymous.GetAsync(path);
        Assert.Multiple(() =>
        {
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "a proxy speaks for a remote user");
            Assert.That(allowed.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(loopback.StatusCode, Is.EqualTo(HttpStatusCode.OK), "open on loopback");
        });
    }

    [Test]
    public async Task Overview_CallerRights_SaysWhatTheKeyAllows()
    {
        using var reader = _host.Client(DashboardHost.ReadKey);
        using var admin = _host.Admin();
        var anonymous = await _host.GetJsonAsync("/api/overview");
        var read = await _host.GetJsonAsync("/api/overview", reader);
        var full = await _host.GetJsonAsync("/api/overview", admin);
        Assert.Multiple(() =>
        {
            Assert.That(anonymous.GetProperty("coordinator").GetProperty("admin").GetProperty("enabled").GetBoolean(), Is.True);
            Assert.That(anonymous.GetProperty("coordinator").GetProperty("admin").GetProperty("rights").GetString(), Is.EqualTo("read"), "loopback reads");
            Assert.That(read.GetProperty("coordinator").GetProperty("admin").GetProperty("rights").GetString(), Is.EqualTo("read"));
            Assert.That(full.GetProperty("coordinator").GetProperty("admin").GetProperty("rights").GetString(), Is.EqualTo("admin"));
        });
    }

    // ---- admin actions ----------------------------------------------------------------------

    [Test]
    public async Task Resolve_InDoubtTransaction_AbortsPerJournalTellsEveryParticipantAndAudits()
    {
        var (voted, silent) = (await NewParticipantAsync(), await NewParticipantAsync());
        var id = TransactionId.New();
        await _peers.CommitAsync(id, voted, silent);
        await WaitForPrepareAsync(voted, id);
        await _peers.VoteAsync(id, voted, Vote.Yes);
        await WaitForLiveStatusAsync(id, "in-doubt");

        var (status, body) = await _host.PostAdminAsync($"/api/admin/transactions/{id.Value}/resolve", new { @operator = "alice", reason = "participant host lost; abort" });

        var detail = await WaitForJournalStateAsync(id, "aborted");
        await Eventually.WaitForAsync(
            () => Task.FromResult(_peers.Received(voted).OfType<AbortBranch>().Count() + _peers.Received(silent).OfType<AbortBranch>().Count()),
            n => n >= 2,
            Wait,
            "AbortBranch at both participants");
        var audit = await _host.GetJsonAsync($"/api/audit?transaction={id.Value}");
        var record = audit.GetProperty("items")[0];
        var kinds = detail.GetProperty("history").EnumerateArray().Select(h => h.GetProperty("kind").GetString()).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
            Assert.That(body.GetProperty("verdict").GetString(), Is.EqualTo("abort"));
            Assert.That(body.GetProperty("outcome").GetString(), Is.EqualTo("done"));
            Assert.That(body.GetProperty("action").GetString(), Is.EqualTo("resolve-abort"));
            Assert.That(detail.GetProperty("journal").GetProperty("reason").GetString(), Does.Contain("resolved by operator alice"));
            Assert.That(record.GetProperty("actor").GetString(), Is.EqualTo("alice"));
            Assert.That(record.GetProperty("credential").GetString(), Is.EqualTo("admin-key"));
            Assert.That(record.GetProperty("remoteAddress").GetString(), Is.EqualTo("127.0.0.1"));
            Assert.That(record.GetProperty("action").GetString(), Is.EqualTo("resolve-abort"));
            Assert.That(record.GetProperty("reason").GetString(), Is.EqualTo("participant host lost; abort"));
            Assert.That(record.GetProperty("outcome").GetString(), Is.EqualTo("done"));
            Assert.That(record.GetProperty("completedAt").ValueKind, Is.EqualTo(JsonValueKind.String));
            Assert.That(record.GetProperty("id").GetInt64(), Is.EqualTo(body.GetProperty("auditId").GetInt64()));
            Assert.That(kinds, Does.Contain("operator:resolve-abort").And.Contain("operator:done").And.Contain("aborted"));
        });
    }

    [Test]
    public async Task Resolve_OutcomeAgainstTheJournalWithoutHeuristic_Answers409AndAuditsTheRefusal()
    {
        var p = await NewParticipantAsync();
        var id = await CommitThroughAsync(p);

        var (status, body) = await _host.PostAdminAsync($"/api/admin/transactions/{id.Value}/resolve", new { @operator = "bob", reason = "I think it should abort", outcome = "abort" });
        var audit = await _host.GetJsonAsync($"/api/audit?transaction={id.Value}");
        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict));
            Assert.That(body.GetProperty("outcome").GetString(), Is.EqualTo("refused"));
            Assert.That(body.GetProperty("message").GetString(), Does.Contain("heuristic"));
            Assert.That(audit.GetProperty("items")[0].GetProperty("outcome").GetString(), Is.EqualTo("refused"));
        });
    }

    [Test]
    public async Task Resolve_HeuristicAbortOfACommittedTransaction_IsRefusedAndAudited()
    {
        var p = await NewParticipantAsync();
        var id = await CommitThroughAsync(p);

        var (status, body) = await _host.PostAdminAsync(
            $"/api/admin/transactions/{id.Value}/resolve",
            new { @operator = "bob", reason = "force it", outcome = "abort", heuristic = true, confirm = id.Value.ToString() });
        var detail = await _host.GetJsonAsync($"/api/transactions/{id.Value}");
        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict));
            Assert.That(body.GetProperty("action").GetString(), Is.EqualTo("heuristic-abort"));
            Assert.That(body.GetProperty("outcome").GetString(), Is.EqualTo("refused"));
            Assert.That(detail.GetProperty("journal").GetProperty("status").GetString(), Is.EqualTo("committed"), "nothing changed");
            Assert.That(detail.GetProperty("audit")[0].GetProperty("action").GetString(), Is.EqualTo("heuristic-abort"));
        });
    }

    [Test]
    public async Task Resolve_HeuristicCommitOfAPreparedBranchTheJournalDoesNotKnow_ForcesTheDecisionAndDrivesIt()
    {
        var id = await PrepareBranchTheJournalDoesNotKnowAsync();

        var (status, body) = await _host.PostAdminAsync(
            $"/api/admin/transactions/{id.Value}/resolve",
            new { @operator = "carol", reason = "journal restored from an old backup; business says commit", outcome = "commit", heuristic = true, confirm = id.Value.ToString("N") });

        var detail = await _host.GetJsonAsync($"/api/transactions/{id.Value}");
        await Eventually.WaitForAsync(
            () => Task.FromResult(_peers.Received(_configuredParticipant).OfType<CommitBranch>().Count(c => c.TransactionId == id)),
            n => n >= 1,
            Wait,
            "CommitBranch at the participant");
        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
            Assert.That(body.GetProperty("action").GetString(), Is.EqualTo("heuristic-commit"));
            Assert.That(body.GetProperty("outcome").GetString(), Is.EqualTo("done"));
            Assert.That(detail.GetProperty("journal").GetProperty("status").GetString(), Is.EqualTo("committing"));
            Assert.That(detail.GetProperty("live").GetProperty("phase").GetString(), Is.EqualTo("committing"), "the coordinator drives it now");
            Assert.That(detail.GetProperty("audit")[0].GetProperty("action").GetString(), Is.EqualTo("heuristic-commit"));
        });

        // The scripted participant acknowledges, so the coordinator can close the transaction.
        await _peers.AcknowledgeCommitAsync(id, _configuredParticipant);
        await WaitForJournalStateAsync(id, "committed");
    }

    /// <summary>
    /// The "the coordinator no longer holds it" check and the decision's write are one step: a
    /// commit request that starts the transaction while the operator's action is on its way (here:
    /// held at its audit record) makes the heuristic commit refused, and the transaction is then
    /// decided by its votes alone.
    /// </summary>
    [Test]
    public async Task Resolve_HeuristicCommitWhileACommitRequestStartsTheTransaction_IsRefused_AndTheVotesDecide()
    {
        var id = await PrepareBranchTheJournalDoesNotKnowAsync();

        // The admin action has looked at the coordinator's memory (nothing there) when it stops
        // at its audit record, which waits for this lock.
        await using var blocker = new NpgsqlConnection(_host.JournalConnectionString);
        await blocker.OpenAsync();
        await using var hold = await blocker.BeginTransactionAsync();
        await blocker.ExecuteAsync("LOCK TABLE txcoord.audit_log IN EXCLUSIVE MODE", transaction: hold);
        var resolve = _host.PostAdminAsync(
            $"/api/admin/transactions/{id.Value}/resolve",
            new { @operator = "erin", reason = "branch found prepared; business says commit", outcome = "commit", heuristic = true, confirm = id.Value.ToString() });
        await Eventually.WaitForAsync(
            () => blocker.ExecuteScalarAsync<long>("SELECT count(*) FROM pg_locks WHERE relation = 'txcoord.audit_log'::regclass AND NOT granted"),
            waiting => waiting > 0,
            Wait,
            "the admin action to wait for its audit record");

        // Meanwhile the initiator's commit request arrives: the coordinator starts the transaction.
        await _peers.CommitAsync(id, _configuredParticipant);
        await WaitForPrepareAsync(_configuredParticipant, id);
        await hold.CommitAsync();
        var (status, body) = await resolve;
        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict), body.ToString());
            Assert.That(body.GetProperty("outcome").GetString(), Is.EqualTo("refused"));
            Assert.That(body.GetProperty("message").GetString(), Does.Contain("the coordinator is driving this transaction"));
        });

        // The participant votes No: nothing but the votes may decide now.
        await _peers.VoteAsync(id, _configuredParticipant, Vote.No);
        var detail = await WaitForJournalStateAsync(id, "aborted");
        Assert.Multiple(() =>
        {
            Assert.That(detail.GetProperty("journal").GetProperty("status").GetString(), Is.EqualTo("aborted"));
            Assert.That(_peers.Received(_configuredParticipant).OfType<CommitBranch>().Where(c => c.TransactionId == id), Is.Empty, "no CommitBranch");
        });
    }

    [Test]
    public async Task Retry_StuckTransaction_RedrivesPhaseTwoAtOnceAndAudits()
    {
        var p = await NewParticipantAsync();
        var id = TransactionId.New();
        await _peers.CommitAsync(id, p);
        await WaitForPrepareAsync(p, id);
        await _peers.VoteAsync(id, p, Vote.Yes);
        await WaitForLiveStatusAsync(id, "stuck");
        var commitsBefore = _peers.Received(p).OfType<CommitBranch>().Count();

        var (status, body) = await _host.PostAdminAsync($"/api/admin/transactions/{id.Value}/retry", new { @operator = "dave", reason = "participant is back" });

        await Eventually.WaitForAsync(
            () => Task.FromResult(_peers.Received(p).OfType<CommitBranch>().Count()),
            n => n > commitsBefore,
            Wait,
            "another CommitBranch");
        var stuck = await _host.GetJsonAsync($"/api/transactions?view=live&status=stuck&participant={p}");
        var audit = await _host.GetJsonAsync($"/api/audit?transaction={id.Value}");
        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
            Assert.That(body.GetProperty("message").GetString(), Does.Contain("phase 2 re-driven now").And.Contain(p));
            Assert.That(stuck.GetProperty("items").GetArrayLength(), Is.EqualTo(1));
            Assert.That(audit.GetProperty("items")[0].GetProperty("action").GetString(), Is.EqualTo("retry-phase2"));
            Assert.That(audit.GetProperty("items")[0].GetProperty("outcome").GetString(), Is.EqualTo("done"));
        });

        await _peers.AcknowledgeCommitAsync(id, p);
        await WaitForJournalStateAsync(id, "committed");
    }

    [Test]
    public async Task Retry_TransactionStillPreparing_Answers409()
    {
        var p = await NewParticipantAsync();
        var id = TransactionId.New();
        await _peers.CommitAsync(id, p);
        await WaitForPrepareAsync(p, id);

        var (status, body) = await _host.PostAdminAsync($"/api/admin/transactions/{id.Value}/retry", new { @operator = "dave", reason = "try" });
        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict));
            Assert.That(body.GetProperty("message").GetString(), Does.Contain("still collecting votes"));
        });

        await _peers.VoteAsync(id, p, Vote.No);
    }

    [TestCase("{}", "'operator' is required")]
    [TestCase("{\"operator\":\"x\"}", "'reason' is required")]
    [TestCase("{\"operator\":\"x\",\"reason\":\"ok\"}", "'reason' is required")]
    [TestCase("{\"operator\":\"x\",\"reason\":\"fine\",\"outcome\":\"maybe\"}", "'outcome' must be \\\"commit\\\" or \\\"abort\\\"")]
    [TestCase("{\"operator\":\"x\",\"reason\":\"fine\",\"heuristic\":true}", "needs an explicit 'outcome'")]
    [TestCase("{\"operator\":\"x\",\"reason\":\"fine\",\"heuristic\":true,\"outcome\":\"commit\"}", "needs 'confirm' set to the transaction id")]
    [TestCase("{\"operator\":\"x\",\"reason\":\"fine\",\"force\":true}", "not valid JSON for this action")]
    [TestCase("not json", "not valid JSON")]
    public async Task Resolve_BadBody_Answers400WithAMessageAndWritesNoAudit(string json, string message)
    {
        var id = TransactionId.New();
        using var admin = _host.Admin();
        using var content = new StringContent(json, Encoding.UTF8, "application/json");
        using var response = await admin.PostAsync($"/api/admin/transactions/{id.Value}/resolve", content);
        var body = await response.Content.ReadAsStringAsync();
        await Assert.MultipleAsync(async () =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), body);
            Assert.That(JsonDocument.Parse(body).RootElement.GetProperty("error").GetString(), Does.Contain(message.Replace("\\\"", "\"", StringComparison.Ordinal)));
            Assert.That(await AuditCountAsync(id), Is.Zero);
        });
    }

    [Test]
    public async Task AdminAction_BadTransactionId_Answers400()
    {
        var (status, body) = await _host.PostAdminAsync("/api/admin/transactions/'; DROP TABLE x;--/resolve", new { @operator = "x", reason = "fine" });
        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(body.GetProperty("error").GetString(), Does.Contain("is not a transaction id"));
        });
    }

    [TestCase("transaction=nope", "is not a transaction id")]
    [TestCase("limit=1000", "limit '1000' must be a whole number from 1 to 500")]
    [TestCase("who=me", "unknown query parameter 'who'")]
    public async Task AuditList_BadFilter_Answers400(string query, string message)
    {
        using var response = await _host.Anonymous.GetAsync($"/api/audit?{query}");
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Multiple(() =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(body.GetProperty("error").GetString(), Does.Contain(message));
        });
    }

    // ---- the page itself --------------------------------------------------------------------

    [Test]
    public async Task Page_IsServedWithItsAssetsAndAStrictContentSecurityPolicy()
    {
        using var page = await _host.Anonymous.GetAsync("/");
        var html = await page.Content.ReadAsStringAsync();
        using var script = await _host.Anonymous.GetAsync("/assets/dashboard.js");
        using var style = await _host.Anonymous.GetAsync("/assets/dashboard.css");
        using var missing = await _host.Anonymous.GetAsync("/assets/nothing.js");
        Assert.Multiple(() =>
        {
            Assert.That(page.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(page.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/html"));
            Assert.That(html, Does.Contain("/assets/dashboard.js").And.Contain("TxCoord"));
            Assert.That(page.Headers.GetValues("Content-Security-Policy").Single(), Does.Contain("script-src 'self'"));
            Assert.That(script.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(script.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/javascript"));
            Assert.That(style.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(missing.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        });
    }

    // ---- helpers ----------------------------------------------------------------------------

    private async Task<string> NewParticipantAsync()
    {
        var participant = $"sp-{Guid.NewGuid():N}"[..14];
        await _peers.ListenAsync(participant);
        return participant;
    }

    /// <summary>Runs one transaction with a single scripted participant to its commit.</summary>
    private async Task<TransactionId> CommitThroughAsync(string participant)
    {
        var id = TransactionId.New();
        await _peers.CommitAsync(id, participant);
        await WaitForPrepareAsync(participant, id);
        await _peers.VoteAsync(id, participant, Vote.Yes);
        await Eventually.WaitForAsync(
            () => Task.FromResult(_peers.Received(participant).OfType<CommitBranch>().Any(c => c.TransactionId == id)),
            received => received,
            Wait,
            "CommitBranch");
        await _peers.AcknowledgeCommitAsync(id, participant);
        await WaitForJournalStateAsync(id, "committed");
        return id;
    }

    private Task WaitForPrepareAsync(string participant, TransactionId id) =>
        Eventually.WaitForAsync(
            () => Task.FromResult(_peers.Received(participant).OfType<PrepareBranch>().Any(m => m.TransactionId == id)),
            received => received,
            Wait,
            $"PrepareBranch at {participant}");

    private Task<JsonElement> WaitForLiveStatusAsync(TransactionId id, string status) =>
        Eventually.WaitForAsync(
            () => _host.GetJsonAsync($"/api/transactions/{id.Value}"),
            d => d.GetProperty("live").ValueKind == JsonValueKind.Object && d.GetProperty("live").GetProperty("status").GetString() == status,
            Wait,
            $"transaction {id} to be {status}");

    /// <summary>The transaction's detail, or an undefined element while the dashboard does not know it (404).</summary>
    private async Task<JsonElement> TryGetDetailAsync(TransactionId id)
    {
        using var response = await _host.Anonymous.GetAsync($"/api/transactions/{id.Value}");
        return response.IsSuccessStatusCode ? JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone() : default;
    }

    private Task<JsonElement> WaitForJournalStateAsync(TransactionId id, string state) =>
        Eventually.WaitForAsync(
            () => TryGetDetailAsync(id),
            d => d.ValueKind == JsonValueKind.Object && d.GetProperty("journal").ValueKind == JsonValueKind.Object
                && d.GetProperty("journal").GetProperty("status").GetString() == state,
            Wait,
            $"transaction {id} to be {state} in the journal");

    private static JsonElement Database(JsonElement participants, string participant) =>
        participants.GetProperty("items").EnumerateArray().Single(i => i.GetProperty("id").GetString() == participant).GetProperty("database");

    private static double ValueOrZero(string[] lines, string series) =>
        lines.FirstOrDefault(l => l.StartsWith(series + " ", StringComparison.Ordinal)) is { } line
            ? double.Parse(line[(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture)
            : 0;

    private static double Value(string[] lines, string series)
    {
        var line = lines.FirstOrDefault(l => l.StartsWith(series + " ", StringComparison.Ordinal));
        Assert.That(line, Is.Not.Null, $"no sample {series}");
        return double.Parse(line![(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    private async Task<long> AuditCountAsync(TransactionId id)
    {
        await using var connection = new NpgsqlConnection(_host.JournalConnectionString);
        return await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM txcoord.audit_log WHERE transaction_id = @Id", new { Id = id.Value });
    }

    /// <summary>
    /// A branch of a new transaction of this coordinator, prepared in the configured participant's
    /// database (the journal has no row for it), once the dashboard sees it; the scripted
    /// participant listens on that participant's queue.
    /// </summary>
    private async Task<TransactionId> PrepareBranchTheJournalDoesNotKnowAsync()
    {
        var id = TransactionId.New();
        var gid = BranchGid.Create(new CoordinatorId(_host.CoordinatorId), id, new ParticipantId(_configuredParticipant));
        await _peers.ListenAsync(_configuredParticipant);
        await PrepareInParticipantDatabaseAsync(gid);
        await Eventually.WaitForAsync(
            () => TryGetDetailAsync(id),
            d => d.ValueKind == JsonValueKind.Object && d.GetProperty("preparedBranches").GetArrayLength() == 1,
            Wait,
            "the prepared branch to be found");
        return id;
    }

    /// <summary>Leaves a prepared transaction holding a row lock in the participant database, as a participant that voted Yes would.</summary>
    private async Task PrepareInParticipantDatabaseAsync(BranchGid gid)
    {
        await using var connection = new NpgsqlConnection(_participantDatabase);
        await connection.OpenAsync();
        await connection.ExecuteAsync("CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, balance bigint NOT NULL)");
        await connection.ExecuteAsync("INSERT INTO accounts VALUES (1, 100) ON CONFLICT DO NOTHING");
        await using var transaction = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync("INSERT INTO accounts (id, balance) VALUES (@Id, 1)", new { Id = Random.Shared.Next(2, int.MaxValue) }, transaction);
        await connection.ExecuteAsync($"PREPARE TRANSACTION '{BranchGid.EnsureSafe(gid.Value)}'", transaction: transaction);
    }

    private async Task RollBackPreparedAsync()
    {
        if (_participantDatabase.Length == 0)
        {
            return;
        }

        await using var connection = new NpgsqlConnection(_participantDatabase);
        foreach (var gid in await connection.QueryAsync<string>("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"))
        {
            await connection.ExecuteAsync($"ROLLBACK PREPARED '{BranchGid.EnsureSafe(gid)}'");
        }
    }
}

/// <summary>A message type no TxCoord endpoint handles.</summary>
public sealed record NoHandlerTakesThis
{
    public string Text { get; init; } = "";
}
