using Microsoft.Extensions.Configuration;
using TxCoord.Contracts;
using TxCoord.Coordinator.Host;

namespace TxCoord.Tests.Dashboard;

/// <summary>The coordinator host binds sender authentication from TxCoord:Security and names every bad setting (docs/security.md).</summary>
public sealed class HostSecuritySettingsTests
{
    private static IConfiguration Configuration(params (string Key, string Value)[] security)
    {
        var values = new Dictionary<string, string?>
        {
            ["TxCoord:CoordinatorId"] = "coord-1",
            ["ConnectionStrings:Journal"] = "Host=127.0.0.1;Database=journal",
            ["ConnectionStrings:RabbitMq"] = "amqp://svc-coord:secret@127.0.0.1:5672/",
        };
        foreach (var (key, value) in security)
        {
            values[$"TxCoord:Security:{key}"] = value;
        }

        return new ConfigurationBuilder().AddInMemoryCollection(values).Build();
    }

    [Test]
    public void Unset_IsOff()
    {
        Assert.That(CoordinatorHostSettings.TryRead(Configuration(), out var settings, out var error), Is.True, error);
        Assert.That(settings!.Coordinator.Security.SenderAuthentication, Is.EqualTo(SenderAuthentication.Off));
    }

    [Test]
    public void BrokerUser_IsBoundWithItsMapsAndKeys()
    {
        var key = new string('k', 20) + "0123456789ab";
        Assert.That(CoordinatorHostSettings.TryRead(
            Configuration(("SenderAuthentication", "brokeruser"), ("Coordinators:coord-1", "svc-coord"), ("Participants:bank-a", "svc-bank-a"), ("VoteProofKeys:bank-a", key)),
            out var settings, out var error), Is.True, error);
        var security = settings!.Coordinator.Security;
        Assert.Multiple(() =>
        {
            Assert.That(security.SenderAuthentication, Is.EqualTo(SenderAuthentication.BrokerUser));
            Assert.That(security.Coordinators["coord-1"], Is.EqualTo("svc-coord"));
            Assert.That(security.Participants["bank-a"], Is.EqualTo("svc-bank-a"));
            Assert.That(security.VoteProofKeys["bank-a"], Is.EqualTo(key));
        });
    }

    [TestCase("SenderAuthentication", "Maybe", "TxCoord:Security:SenderAuthentication 'Maybe' is invalid")]
    [TestCase("SenderAuthentication", "7", "TxCoord:Security:SenderAuthentication '7' is invalid")]
    [TestCase("VoteProofKeys:bank-a", "short", "Security:VoteProofKeys:bank-a is 5 characters long")]
    public void BadValues_AreRefusedNamingTheKey(string key, string value, string message)
    {
        var ok = CoordinatorHostSettings.TryRead(Configuration((key, value), ("Coordinators:coord-1", "svc-coord")), out _, out var error);
        Assert.Multiple(() =>
        {
            Assert.That(ok, Is.False);
            Assert.That(error, Does.Contain(message));
        });
    }

    [Test]
    public void BrokerUser_WithoutTheCoordinatorsOwnUser_OrWithAnotherThanItConnectsAs_IsRefused()
    {
        Assert.That(CoordinatorHostSettings.TryRead(Configuration(("SenderAuthentication", "BrokerUser")), out _, out var missing), Is.False);
        Assert.That(missing, Does.Contain("Security:Coordinators:coord-1 is missing"));
        Assert.That(CoordinatorHostSettings.TryRead(
            Configuration(("SenderAuthentication", "BrokerUser"), ("Coordinators:coord-1", "svc-other")), out _, out var other), Is.False);
        Assert.That(other, Does.Contain("TxCoord:Security:Coordinators:coord-1 is 'svc-other' but ConnectionStrings:RabbitMq connects as 'svc-coord'"));
    }
}
