using System.Collections.Immutable;
using System.Net;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using TxCoord.Coordinator.Host;
using TxCoord.Coordinator.Host.Dashboard;
using TxCoord.Coordinator.Monitoring;

namespace TxCoord.Tests.Dashboard;

/// <summary>The dashboard's pieces that need no server: histograms, the monitor, statuses, access rules, settings.</summary>
[Parallelizable(ParallelScope.All)]
public sealed class DashboardUnitTests
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 12, 0, 0, TimeSpan.Zero);

    [Test]
    public void Histogram_UniformOneToHundredMs_QuantilesWithinOneBucket()
    {
        var histogram = new LatencyHistogram();
        for (var ms = 1; ms <= 100; ms++)
        {
            histogram.Observe(TimeSpan.FromMilliseconds(ms));
        }

        var snapshot = histogram.Read();
        Assert.Multiple(() =>
        {
            Assert.That(snapshot.Count, Is.EqualTo(100));
            Assert.That(snapshot.Sum, Is.EqualTo(5.05).Within(1e-9));
            Assert.That(snapshot.Quantile(0.5)! * 1000, Is.InRange(30, 75), "p50 inside the 30-75 ms buckets around 50 ms");
            Assert.That(snapshot.Quantile(0.99)! * 1000, Is.InRange(75, 100));
            Assert.That(HistogramSnapshot.Empty.Quantile(0.5), Is.Null);
        });
    }

    [Test]
    public void Monitor_TransactionsBeginCommitAbortAndRedrive_CountedPerProtocolAndInTheSeries()
    {
        var time = new FakeTimeProvider(T0);
        var monitor = new CoordinatorMonitor(time);
        var preparing = State(TransactionPhase.Preparing);
        monitor.Observe(null, preparing);
        time.Advance(TimeSpan.FromMilliseconds(20));
        var committing = preparing with { Phase = TransactionPhase.Committing, Votes = preparing.Votes.Add(new ParticipantId("a"), Vote.Yes), DecidedAt = time.GetUtcNow() };
        monitor.Observe(preparing, committing);
        monitor.Observe(committing, committing with { Redrives = 1 });
        time.Advance(TimeSpan.FromMilliseconds(30));
        monitor.Observe(committing with { Redrives = 1 }, committing with { Phase = TransactionPhase.Committed, EndedAt = time.GetUtcNow(), Redrives = 1 });
        var aborting = State(TransactionPhase.Preparing, CommitProtocol.ThreePhase);
        monitor.Observe(null, aborting);
        monitor.Observe(aborting, aborting with { Phase = TransactionPhase.Aborted, EndedAt = time.GetUtcNow() });
        monitor.Observe(null, State(TransactionPhase.Committing));
        monitor.DecisionWritten(TimeSpan.FromMilliseconds(4), succeeded: true);
        monitor.DecisionWritten(TimeSpan.FromMilliseconds(4), succeeded: false);
        monitor.MessageSent(nameof(CommitBranch), succeeded: true);
        monitor.MessageSent(nameof(CommitBranch), succeeded: false);

        var snapshot = monitor.Read();
        var twoPc = snapshot.Protocols.Single(p => p.Protocol == CommitProtocol.TwoPhase);
        var threePc = snapshot.Protocols.Single(p => p.Protocol == CommitProtocol.ThreePhase);
        var recent = snapshot.Recent(6);
        Assert.Multiple(() =>
        {
            Assert.That((twoPc.Begun, twoPc.Committed, twoPc.Aborted, twoPc.Recovered, twoPc.Redrives, twoPc.MessagesRetried), Is.EqualTo((1L, 1L, 0L, 1L, 1L, 1L)));
            Assert.That((threePc.Begun, threePc.Committed, threePc.Aborted), Is.EqualTo((1L, 0L, 1L)));
            Assert.That(snapshot.Durations.Single(d => d.Protocol == CommitProtocol.TwoPhase && d.Label == "committed").Histogram.Sum, Is.EqualTo(0.05).Within(1e-9));
            Assert.That(snapshot.Phases.Single(d => d.Label == "preparing" && d.Protocol == CommitProtocol.TwoPhase).Histogram.Sum, Is.EqualTo(0.02).Within(1e-9));
            Assert.That(snapshot.Phases.Single(d => d.Label == "committing").Histogram.Sum, Is.EqualTo(0.03).Within(1e-9));
            Assert.That((snapshot.DecisionWrites.Count, snapshot.DecisionWriteFailures), Is.EqualTo((1L, 1L)));
            Assert.That(snapshot.LastDecisionWriteAt, Is.EqualTo(time.GetUtcNow()));
            Assert.That(snapshot.Messages.Single(), Is.EqualTo(new MessageCounts(nameof(CommitBranch), 1, 1)));
            Assert.That(snapshot.Series, Has.Count.EqualTo(60));
            Assert.That((recent.Begun, recent.Committed, recent.Aborted), Is.EqualTo((2L, 1L, 1L)));
        });
    }

    [Test]
    public void Monitor_SeriesOlderThanTenMinutes_IsForgotten()
    {
        var time = new FakeTimeProvider(T0);
        var monitor = new CoordinatorMonitor(time);
        var state = State(TransactionPhase.Preparing);
        monitor.Observe(null, state);
        time.Advance(CoordinatorMonitor.SeriesLength + CoordinatorMonitor.BucketWidth);
        var snapshot = monitor.Read();
        Assert.Multiple(() =>
        {
            Assert.That(snapshot.Series.Sum(p => p.Begun), Is.Zero);
            Assert.That(snapshot.Protocols.Single().Begun, Is.EqualTo(1), "counters since start keep it");
        });
    }

    [TestCase("Preparing", false, 10, 0, "preparing")]
    [TestCase("Preparing", true, 2, 0, "preparing")]
    [TestCase("Preparing", true, 6, 0, "in-doubt")]
    [TestCase("Deciding", true, 2, 0, "deciding")]
    [TestCase("Deciding", true, 6, 0, "in-doubt")]
    [TestCase("Committing", true, 10, 0, "committing")]
    [TestCase("Committing", true, 40, 0, "stuck")]
    [TestCase("Committing", true, 10, 5, "stuck")]
    [TestCase("Committed", true, 100, 0, "committed")]
    public void LiveStatus_PhaseVotesAndAge_GiveTheStatus(string phaseName, bool yesVote, int ageSeconds, int redrives, string expected)
    {
        var phase = Enum.Parse<TransactionPhase>(phaseName);
        var now = T0.AddSeconds(ageSeconds);
        var state = State(phase) with
        {
            Votes = yesVote ? ImmutableDictionary<ParticipantId, Vote>.Empty.Add(new ParticipantId("a"), Vote.Yes) : ImmutableDictionary<ParticipantId, Vote>.Empty,
            DecidedAt = phase >= TransactionPhase.Committing ? T0 : null,
            Redrives = redrives,
        };
        Assert.That(LiveStatus.Of(state, now, AttentionThresholds.Default), Is.EqualTo(expected));
    }

    [TestCase("127.0.0.1", null, null, "Read", 200)]
    [TestCase("::1", null, null, "Read", 200)]
    [TestCase("10.0.0.5", null, null, "Read", 401)]
    [TestCase("127.0.0.1", "X-Forwarded-For", null, "Read", 401)]
    [TestCase("10.0.0.5", null, ReadKey, "Read", 200)]
    [TestCase("10.0.0.5", null, AdminKey, "Read", 200)]
    [TestCase("10.0.0.5", null, "wrong-key-0123456789abcdef", "Read", 401)]
    [TestCase("127.0.0.1", null, null, "Admin", 401)]
    [TestCase("127.0.0.1", null, ReadKey, "Admin", 403)]
    [TestCase("10.0.0.5", null, AdminKey, "Admin", 200)]
    public void Access_AddressProxyAndKey_AllowOrRefuse(string address, string? header, string? key, string right, int expected)
    {
        var access = new DashboardAccess(Settings(AdminKey, ReadKey));
        var context = new DefaultHttpContext();
        context.Connection.RemoteIpAddress = IPAddress.Parse(address);
        context.Request.Host = new HostString("127.0.0.1:5080");
        if (header is not null)
        {
            context.Request.Headers[header] = "203.0.113.7";
        }

        if (key is not null)
        {
            context.Request.Headers.Authorization = "Bearer " + key;
        }

        var decision = access.Check(context, Enum.Parse<DashboardRight>(right));
        Assert.That(decision.StatusCode, Is.EqualTo(expected), decision.Message);
    }

    [TestCase("localhost", 200)]
    [TestCase("LOCALHOST:5080", 200)]
    [TestCase("127.0.0.1", 200)]
    [TestCase("127.0.0.2:5080", 200)]
    [TestCase("[::1]:5080", 200)]
    [TestCase("dash.internal:8080", 200)]
    [TestCase("Dash.Internal", 200)]
    [TestCase("", 401)]
    [TestCase("evil.example", 401)]
    [TestCase("localhost.evil.example", 401)]
    [TestCase("evil.localhost", 401)]
    [TestCase("127.0.0.1.nip.io", 401)]
    [TestCase("127.1", 401)]
    [TestCase("2130706433", 401)]
    [TestCase("10.0.0.5:5080", 401)]
    [TestCase("[::2]", 401)]
    public void Access_KeylessLoopbackRead_OnlyWithAHostHeaderNamingThisMachine(string host, int expected)
    {
        var access = new DashboardAccess(new DashboardSettings(null, null, openOnLoopback: true, AttentionThresholds.Default, []) { AllowedHosts = ["dash.internal"] });
        var context = new DefaultHttpContext();
        context.Connection.RemoteIpAddress = IPAddress.Loopback;
        context.Request.Host = new HostString(host);
        var decision = access.Check(context, DashboardRight.Read);
        Assert.That(decision.StatusCode, Is.EqualTo(expected), decision.Message);
        if (expected == 401)
        {
            Assert.That(decision.Message, Does.Contain("Host header").And.Contain(DashboardSettings.AllowedHostsKey));
        }
    }

    [Test]
    public void Access_ForeignHostHeaderWithAKey_Allowed()
    {
        var access = new DashboardAccess(Settings(AdminKey, ReadKey));
        var context = new DefaultHttpContext();
        context.Connection.RemoteIpAddress = IPAddress.Loopback;
        context.Request.Host = new HostString("evil.example");
        context.Request.Headers.Authorization = "Bearer " + ReadKey;
        Assert.That(access.Check(context, DashboardRight.Read).StatusCode, Is.EqualTo(200));
    }

    [Test]
    public void FailedKeys_LimitReachedInTheWindow_LockedOutForOneWindowLoggedOnce()
    {
        var time = new FakeTimeProvider(T0);
        var log = new RecordingLogger();
        var limiter = Limiter(time, log);
        var address = IPAddress.Parse("203.0.113.7");
        limiter.Failed(address);
        limiter.Failed(address);
        var beforeLimit = limiter.LockedFor(address);
        time.Advance(TimeSpan.FromSeconds(10));
        limiter.Failed(address);
        var locked = limiter.LockedFor(address);
        limiter.Failed(address);
        limiter.Failed(address);
        time.Advance(TimeSpan.FromSeconds(59));
        var nearlyOver = limiter.LockedFor(address);
        time.Advance(TimeSpan.FromSeconds(1));
        var over = limiter.LockedFor(address);
        limiter.Failed(address);
        limiter.Failed(address);
        Assert.Multiple(() =>
        {
            Assert.That(beforeLimit, Is.Null, "two wrong keys of three allowed");
            Assert.That(locked, Is.EqualTo(TimeSpan.FromMinutes(1)), "locked for one window from the third");
            Assert.That(nearlyOver, Is.EqualTo(TimeSpan.FromSeconds(1)), "failures during the lock-out do not prolong it");
            Assert.That(over, Is.Null);
            Assert.That(limiter.LockedFor(address), Is.Null, "after the lock-out, failures count afresh");
            Assert.That(log.Warnings, Has.Count.EqualTo(1), "one warning per lock-out, not per request");
            Assert.That(log.Warnings.Single(), Does.Contain("203.0.113.7").And.Contain("3 wrong keys"));
        });
    }

    [Test]
    public void FailedKeys_SpreadOverMoreThanAWindow_NeverLock()
    {
        var time = new FakeTimeProvider(T0);
        var limiter = Limiter(time, new RecordingLogger());
        var address = IPAddress.Parse("203.0.113.7");
        for (var i = 0; i < 10; i++)
        {
            limiter.Failed(address);
            limiter.Failed(address);
            time.Advance(TimeSpan.FromSeconds(61));
        }

        Assert.That(limiter.LockedFor(address), Is.Null);
    }

    [Test]
    public void FailedKeys_CountedPerAddress_IPv6PerSlash64AndMappedIPv4AsIPv4()
    {
        var time = new FakeTimeProvider(T0);
        var limiter = Limiter(time, new RecordingLogger());
        limiter.Failed(IPAddress.Parse("2001:db8:1:2::1"));
        limiter.Failed(IPAddress.Parse("2001:db8:1:2::2"));
        limiter.Failed(IPAddress.Parse("2001:db8:1:2:ffff::3"));
        limiter.Failed(IPAddress.Parse("198.51.100.1"));
        limiter.Failed(IPAddress.Parse("::ffff:198.51.100.1"));
        limiter.Failed(IPAddress.Parse("198.51.100.1"));
        Assert.Multiple(() =>
        {
            Assert.That(limiter.LockedFor(IPAddress.Parse("2001:db8:1:2::99")), Is.Not.Null, "one /64 is one client");
            Assert.That(limiter.LockedFor(IPAddress.Parse("2001:db8:1:3::1")), Is.Null, "another /64 is not");
            Assert.That(limiter.LockedFor(IPAddress.Parse("198.51.100.1")), Is.Not.Null, "an IPv4-mapped address is the IPv4 address");
            Assert.That(limiter.LockedFor(IPAddress.Parse("198.51.100.2")), Is.Null);
            Assert.That(limiter.LockedFor(IPAddress.Loopback), Is.Null);
        });
    }

    [Test]
    public void FailedKeys_TableFull_BoundedAndFurtherAddressesShareOneCount()
    {
        var time = new FakeTimeProvider(T0);
        var log = new RecordingLogger();
        var limiter = Limiter(time, log, capacity: 5);
        for (var i = 1; i <= 5; i++)
        {
            limiter.Failed(IPAddress.Parse($"10.0.0.{i}"));
        }

        // 1000 more addresses, one guess each: the table does not grow, and their guesses add up.
        for (var i = 1; i <= 1000; i++)
        {
            limiter.Failed(IPAddress.Parse($"10.1.{i / 256}.{i % 256}"));
        }

        var tracked = limiter.TrackedAddresses;
        var stranger = limiter.LockedFor(IPAddress.Parse("10.9.9.9"));
        var known = limiter.LockedFor(IPAddress.Parse("10.0.0.1"));
        time.Advance(TimeSpan.FromSeconds(61));
        limiter.Failed(IPAddress.Parse("10.2.0.1"));
        Assert.Multiple(() =>
        {
            Assert.That(tracked, Is.EqualTo(5));
            Assert.That(stranger, Is.Not.Null, "an address beyond the table is locked out by the shared count");
            Assert.That(known, Is.Null, "a tracked address keeps its own count");
            Assert.That(limiter.LockedFor(IPAddress.Parse("10.9.9.9")), Is.Null, "after the window the shared lock-out ends");
            Assert.That(limiter.TrackedAddresses, Is.EqualTo(1), "expired entries are swept when the table is full");
            Assert.That(log.Warnings, Has.Count.EqualTo(1));
        });
    }

    [TestCase("TxCoord:Dashboard:FailedKeyLimit", "0", "must be a whole number from 1 to 1000")]
    [TestCase("TxCoord:Dashboard:FailedKeyLimit", "ten", "must be a whole number from 1 to 1000")]
    [TestCase("TxCoord:Dashboard:FailedKeyWindow", "00:00:00", "is not a positive TimeSpan")]
    [TestCase("TxCoord:Dashboard:FailedKeyWindow", "1.00:00:00", "is longer than 01:00:00")]
    public void Settings_BadFailedKeyLimit_RefusedNamingTheKey(string key, string value, string message)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection([new(key, value)]).Build();
        var ok = DashboardSettings.TryRead(configuration, out _, out var error);
        Assert.Multiple(() =>
        {
            Assert.That(ok, Is.False);
            Assert.That(error, Does.Contain(key).And.Contain(message));
        });
    }

    [Test]
    public void Settings_FailedKeyLimit_DefaultsToTenPerMinute()
    {
        Assert.That(DashboardSettings.TryRead(new ConfigurationBuilder().Build(), out var settings, out _), Is.True);
        Assert.That((settings!.FailedKeyLimit, settings.FailedKeyWindow), Is.EqualTo((10, TimeSpan.FromMinutes(1))));
    }

    private static FailedKeyLimiter Limiter(TimeProvider time, RecordingLogger log, int capacity = FailedKeyLimiter.MaxTrackedAddresses) =>
        new(new DashboardSettings(null, null, openOnLoopback: true, AttentionThresholds.Default, []) { FailedKeyLimit = 3, FailedKeyWindow = TimeSpan.FromMinutes(1) }, time, log, capacity);

    /// <summary>Keeps the warnings written to it.</summary>
    private sealed class RecordingLogger : ILogger<FailedKeyLimiter>
    {
        private readonly List<string> _warnings = [];

        public IReadOnlyList<string> Warnings
        {
            get
            {
                lock (_warnings)
                {
                    return [.. _warnings];
                }
            }
        }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel == LogLevel.Warning)
            {
                lock (_warnings)
                {
                    _warnings.Add(formatter(state, exception));
                }
            }
        }
    }

    [Test]
    public void Access_NoAdminKeyConfigured_AdminActionsOffEvenWithAKey()
    {
        var access = new DashboardAccess(Settings(null, ReadKey));
        var context = new DefaultHttpContext();
        context.Connection.RemoteIpAddress = IPAddress.Loopback;
        context.Request.Headers["X-Api-Key"] = ReadKey;
        var decision = access.Check(context, DashboardRight.Admin);
        Assert.Multiple(() =>
        {
            Assert.That(decision.StatusCode, Is.EqualTo(403));
            Assert.That(decision.Message, Does.Contain("admin actions are off"));
        });
    }

    [TestCase("TxCoord:Dashboard:AdminApiKey", "short", "must be at least 24 characters")]
    [TestCase("TxCoord:Dashboard:ReadApiKey", "has spaces in it 0123456789", "without spaces")]
    [TestCase("TxCoord:Dashboard:OpenOnLoopback", "maybe", "is not true or false")]
    [TestCase("TxCoord:Dashboard:StuckAfter", "-00:00:05", "is not a positive TimeSpan")]
    [TestCase("TxCoord:Dashboard:AllowedHosts", "dash.internal,*", "entry '*' is not a host name")]
    [TestCase("TxCoord:Dashboard:AllowedHosts", "dash.internal:8080", "without port")]
    [TestCase("TxCoord:Dashboard:AllowedHosts", "http://dash.internal/", "is not a host name")]
    [TestCase("TxCoord:Participants:bad name:ConnectionString", "Host=x", "is not a valid participant id")]
    [TestCase("TxCoord:Participants:bank-a:ConnectionString", "", "is required")]
    [TestCase("TxCoord:Participants:bank-a:ConnectionString", "Port=5432", "names no Host")]
    public void Settings_BadValue_RefusedNamingTheKey(string key, string value, string message)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection([new(key, value)]).Build();
        var ok = DashboardSettings.TryRead(configuration, out _, out var error);
        Assert.Multiple(() =>
        {
            Assert.That(ok, Is.False);
            Assert.That(error, Does.Contain(key.Split(':')[^1] == "ConnectionString" ? key.Split(':')[2] : key).And.Contain(message));
        });
    }

    // Keys that could be guessed or brute-forced: too short, too few different characters, or one
    // character so frequent that the key carries little entropy. Each must stop the start.
    [TestCase("aaaaaaaaaaaaaaaa", "at least 24 characters")]
    [TestCase("0123456789abcdefghijklm", "at least 24 characters")]
    [TestCase("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "at least 10 different characters")]
    [TestCase("abababababababababababababababab", "at least 10 different characters")]
    [TestCase("12341234123412341234123412abcd", "at least 10 different characters")]
    [TestCase("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa0123456789", "estimated entropy")]
    public void Settings_WeakKey_RefusedNamingTheKeyAndHowToMakeOne(string weak, string message)
    {
        foreach (var key in new[] { DashboardSettings.AdminApiKeyKey, DashboardSettings.ReadApiKeyKey })
        {
            var configuration = new ConfigurationBuilder().AddInMemoryCollection([new(key, weak)]).Build();
            var ok = DashboardSettings.TryRead(configuration, out _, out var error);
            Assert.Multiple(() =>
            {
                Assert.That(ok, Is.False, $"{key} = '{weak}' was accepted");
                Assert.That(error, Does.Contain(key).And.Contain(message).And.Contain("openssl rand -base64 32"));
                Assert.That(error, Does.Not.Contain(weak), "the key itself is never printed");
            });
        }
    }

    [Test]
    public void Service_SixteenIdenticalCharactersAsAdminKey_DoesNotStart()
    {
        var ok = CoordinatorHostSetup.TryCreate([], [
            new("TxCoord:CoordinatorId", "coord-1"),
            new("ConnectionStrings:Journal", "Host=127.0.0.1;Database=journal"),
            new("ConnectionStrings:RabbitMq", "amqp://guest:guest@127.0.0.1:5672/"),
            new(DashboardSettings.AdminApiKeyKey, new string('k', 16)),
        ], out var app, out var error);
        Assert.Multiple(() =>
        {
            Assert.That(ok, Is.False);
            Assert.That(app, Is.Null);
            Assert.That(error, Does.Contain(DashboardSettings.AdminApiKeyKey).And.Contain("openssl rand -base64 32"));
        });
    }

    // What 'openssl rand -base64 32' and 'openssl rand -hex 24' print, and the keys the tests use.
    [TestCase("q3J8v0Zc9mW1tYbXh5kR2pLs7Nf4Ue6Gd0aQwCzVyHo=")]
    [TestCase("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822c")]
    [TestCase("test-admin-key-0123456789abcdef")]
    [TestCase("test-read-key-0123456789abcdef")]
    [TestCase("unit-admin-key-0123456789abcdef")]
    public void Settings_RandomKey_Accepted(string key)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection([new(DashboardSettings.AdminApiKeyKey, key)]).Build();
        Assert.That(DashboardSettings.TryRead(configuration, out var settings, out var error), Is.True, error);
        Assert.That(settings!.AdminEnabled, Is.True);
    }

    [TestCase("-00:00:00.001", "is not a TimeSpan of zero or more")]
    [TestCase("00:00:02", "must lie between 00:00:00 (no batching) and 00:00:01")]
    public void CoordinatorSettings_BadBatchWindow_RefusedNamingTheKey(string value, string message)
    {
        var ok = CoordinatorHostSettings.TryRead(CoordinatorConfiguration(value), out _, out var error);
        Assert.Multiple(() =>
        {
            Assert.That(ok, Is.False);
            Assert.That(error, Does.Contain("BatchWindow").And.Contain(message));
        });
    }

    [TestCase(null, 10)]
    [TestCase("00:00:00", 0)]
    [TestCase("00:00:00.025", 25)]
    public void CoordinatorSettings_BatchWindow_DefaultsTo10msAndZeroTurnsItOff(string? value, int expectedMs)
    {
        Assert.That(CoordinatorHostSettings.TryRead(CoordinatorConfiguration(value), out var settings, out var error), Is.True, error);
        Assert.That(settings!.Coordinator.BatchWindow, Is.EqualTo(TimeSpan.FromMilliseconds(expectedMs)));
    }

    private static IConfiguration CoordinatorConfiguration(string? commitBatchWindow)
    {
        var values = new Dictionary<string, string?>
        {
            ["TxCoord:CoordinatorId"] = "coord-1",
            ["ConnectionStrings:Journal"] = "Host=127.0.0.1;Database=journal",
            ["ConnectionStrings:RabbitMq"] = "amqp://guest:guest@127.0.0.1:5672/",
        };
        if (commitBatchWindow is not null)
        {
            values["TxCoord:BatchWindow"] = commitBatchWindow;
        }

        return new ConfigurationBuilder().AddInMemoryCollection(values).Build();
    }

    [Test]
    public void Settings_SameKeyForReadAndAdmin_Refused()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection([
            new("TxCoord:Dashboard:AdminApiKey", AdminKey),
            new("TxCoord:Dashboard:ReadApiKey", AdminKey),
        ]).Build();
        Assert.Multiple(() =>
        {
            Assert.That(DashboardSettings.TryRead(configuration, out _, out var error), Is.False);
            Assert.That(error, Does.Contain("must differ"));
        });
    }

    [Test]
    public void Settings_Nothing_AdminOffLoopbackOpenDefaultsApplyAndKeysNeverPrinted()
    {
        var empty = new ConfigurationBuilder().Build();
        var full = new ConfigurationBuilder().AddInMemoryCollection([
            new("TxCoord:Dashboard:AdminApiKey", AdminKey),
            new("TxCoord:Participants:bank-a:ConnectionString", "Host=127.0.0.1;Database=a"),
        ]).Build();
        Assert.Multiple(() =>
        {
            Assert.That(DashboardSettings.TryRead(empty, out var none, out _), Is.True);
            Assert.That(none!.AdminEnabled, Is.False);
            Assert.That(none.OpenOnLoopback, Is.True);
            Assert.That(none.Thresholds, Is.EqualTo(AttentionThresholds.Default));
            Assert.That(DashboardSettings.TryRead(full, out var some, out _), Is.True);
            Assert.That(some!.ParticipantDatabases.Single().Participant.Value, Is.EqualTo("bank-a"));
            Assert.That(some.ToString(), Does.Not.Contain(AdminKey));
        });
    }

    private const string AdminKey = "unit-admin-key-0123456789abcdef";

    private const string ReadKey = "unit-read-key-0123456789abcdef";

    private static DashboardSettings Settings(string? admin, string? read) =>
        new(admin, read, openOnLoopback: true, AttentionThresholds.Default, []);

    private static TransactionState State(TransactionPhase phase, CommitProtocol protocol = CommitProtocol.TwoPhase) => new()
    {
        TransactionId = TransactionId.New(),
        Protocol = protocol,
        Phase = phase,
        Participants = [new ParticipantId("a")],
        CreatedAt = T0,
    };
}
