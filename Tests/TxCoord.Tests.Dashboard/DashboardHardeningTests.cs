using System.Net;
using System.Text.Json;
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
}
