using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Dapper;
using Npgsql;
using TxCoord.Tests.Dashboard.Infrastructure;

namespace TxCoord.Tests.Dashboard;

/// <summary>
/// The dashboard under hostile requests, against a real coordinator service on Kestrel over real
/// PostgreSQL and RabbitMQ (issue 16): a page of another site reaching it through DNS rebinding,
/// bodies larger than the limit sent chunked, keys guessed in a loop.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class DashboardHardeningTests
{
    private const string AllowedHost = "dash.internal";

    private DashboardHost _host = null!;

    [OneTimeSetUp]
    public async Task StartAsync() =>
        _host = await DashboardHost.StartAsync(s => s["TxCoord:Dashboard:AllowedHosts"] = AllowedHost);

    [OneTimeTearDown]
    public async Task StopAsync() => await _host.DisposeAsync();

    // ---- the Host header (DNS rebinding) ----------------------------------------------------

    // A page of evil.example whose name the attacker re-points at 127.0.0.1 talks to the
    // dashboard from the operator's own browser: the connection is loopback, only the Host
    // header tells it apart.
    [TestCase("/api/overview", "evil.example")]
    [TestCase("/api/transactions", "evil.example:5080")]
    [TestCase("/metrics", "localhost.evil.example")]
    [TestCase("/api/participants", "127.0.0.1.nip.io")]
    public async Task KeylessLoopbackRead_ForeignHostHeader_Answers401NamingTheHostHeader(string path, string host)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Host = host;
        using var response = await _host.Anonymous.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        Assert.Multiple(() =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), body[..Math.Min(body.Length, 200)]);
            Assert.That(response.StatusCode == HttpStatusCode.Unauthorized ? body : "(the API's answer)", Does.Contain("Host header").And.Contain("TxCoord:Dashboard:AllowedHosts"));
        });
    }

    [TestCase("localhost")]
    [TestCase("LocalHost:5080")]
    [TestCase("127.0.0.1:5080")]
    [TestCase("[::1]:5080")]
    [TestCase(AllowedHost)]
    [TestCase(AllowedHost + ":8443")]
    public async Task KeylessLoopbackRead_LoopbackOrAllowedHost_Answers200(string host)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/overview");
        request.Headers.Host = host;
        using var response = await _host.Anonymous.SendAsync(request);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
    }

    [Test]
    public async Task ReadWithAKey_ForeignHostHeader_StillAnswers200()
    {
        // A key is not something a rebinding page has: the Host rule guards only keyless reads.
        using var reader = _host.Client(DashboardHost.ReadKey);
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/overview");
        request.Headers.Host = "evil.example";
        using var response = await reader.SendAsync(request);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Multiple(() =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(body.GetProperty("coordinator").GetProperty("admin").GetProperty("rights").GetString(), Is.EqualTo("read"));
        });
    }

    // ---- failed keys ------------------------------------------------------------------------

    [Test]
    public async Task KeyGuessing_AfterTheLimitOfFailures_EveryRequestFromTheAddressAnswers429WithRetryAfter()
    {
        // Its own coordinator: the lock-out covers every request from 127.0.0.1, the other tests' too.
        await using var host = await DashboardHost.StartAsync(s =>
        {
            s["TxCoord:Dashboard:FailedKeyLimit"] = "3";
            s["TxCoord:Dashboard:FailedKeyWindow"] = "00:05:00";
        });
        using var guesser = host.Client("guessed-key-0123456789abcdefghij");
        using var admin = host.Admin();
        var failures = new List<HttpStatusCode>();
        for (var i = 0; i < 3; i++)
        {
            using var guess = await guesser.GetAsync("/api/overview");
            failures.Add(guess.StatusCode);
        }

        using var afterLimit = await guesser.GetAsync("/api/overview");
        using var rightKey = await admin.GetAsync("/api/overview");
        using var keyless = await host.Anonymous.GetAsync("/metrics");
        var body = await rightKey.Content.ReadAsStringAsync();
        Assert.Multiple(() =>
        {
            Assert.That(failures, Is.All.EqualTo(HttpStatusCode.Unauthorized), "the first three guesses are answered as wrong keys");
            Assert.That(afterLimit.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests));
            Assert.That(rightKey.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests), "the right key during the lock-out is refused too, or guessing goes on");
            Assert.That(keyless.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests));
            Assert.That(rightKey.Headers.RetryAfter?.Delta, Is.Not.Null.And.InRange(TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(5)));
            Assert.That(rightKey.StatusCode == HttpStatusCode.TooManyRequests ? body : "", Does.Contain("too many requests with a wrong key"));
        });
    }

    // ---- request bodies ---------------------------------------------------------------------

    [TestCase("/resolve")]
    [TestCase("/retry")]
    public async Task AdminAction_ChunkedBodyOfTwoMegabytes_Answers413AndIsNeverParsed(string action)
    {
        // Valid JSON: parsed, it would reach the checks of the action (a 2 MB reason is a 400).
        var id = Guid.NewGuid();
        var json = Encoding.UTF8.GetBytes($"{{\"operator\":\"eve\",\"reason\":\"{new string('x', 2 * 1024 * 1024)}\",\"outcome\":\"abort\"}}");
        using var admin = _host.Admin();
        using var content = new StreamContent(new UnknownLengthStream(json));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/admin/transactions/{id}{action}") { Content = content };
        using var response = await admin.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        await Assert.MultipleAsync(async () =>
        {
            Assert.That(request.Headers.TransferEncodingChunked, Is.True, "sent chunked, without Content-Length");
            Assert.That(content.Headers.ContentLength, Is.Null);
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.RequestEntityTooLarge), body[..Math.Min(body.Length, 300)]);
            Assert.That(body, Does.Contain("larger than 16384 bytes"));
            Assert.That(await AuditCountAsync(id), Is.Zero);
        });
    }

    [Test]
    public async Task AdminAction_BodyOverTheLimitWithContentLength_Answers413()
    {
        using var admin = _host.Admin();
        using var content = new StringContent($"{{\"operator\":\"eve\",\"reason\":\"{new string('x', 20_000)}\"}}", Encoding.UTF8, "application/json");
        using var response = await admin.PostAsync($"/api/admin/transactions/{Guid.NewGuid()}/retry", content);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.RequestEntityTooLarge), await response.Content.ReadAsStringAsync());
    }

    [Test]
    public async Task AdminAction_ChunkedBodyUnderTheLimit_IsStillRead()
    {
        // The limit must not refuse what it should let through: a small chunked body reaches the action's checks.
        using var admin = _host.Admin();
        using var content = new StreamContent(new UnknownLengthStream(Encoding.UTF8.GetBytes("{\"operator\":\"eve\"}")));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await admin.PostAsync($"/api/admin/transactions/{Guid.NewGuid()}/retry", content);
        var body = await response.Content.ReadAsStringAsync();
        Assert.Multiple(() =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), body);
            Assert.That(body, Does.Contain("'reason' is required"));
        });
    }

    private async Task<long> AuditCountAsync(Guid id)
    {
        await using var connection = new NpgsqlConnection(_host.JournalConnectionString);
        return await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM txcoord.audit_log WHERE transaction_id = @Id", new { Id = id });
    }

    /// <summary>A stream that cannot tell its length, so HttpClient sends it chunked.</summary>
    private sealed class UnknownLengthStream(byte[] content) : Stream
    {
        private readonly MemoryStream _inner = new(content);

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => _inner.Read(buffer, offset, count);

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
