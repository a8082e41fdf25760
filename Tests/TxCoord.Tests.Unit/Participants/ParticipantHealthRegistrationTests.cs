using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using TxCoord.Participants;

namespace TxCoord.Tests.Unit.Participants;

public sealed class ParticipantHealthRegistrationTests
{
    [Test]
    public async Task EveryRegisteredParticipant_HasAHealthCheck_HealthyWhileNothingIsBlocked()
    {
        var services = new ServiceCollection();
        services.AddLogging();
        foreach (var id in new[] { "bank-a", "bank-b" })
        {
            services.AddTxCoordParticipant(o =>
            {
                o.ParticipantId = id;
                o.ConnectionString = "Host=127.0.0.1;Database=unused";
                o.Handle<string>((_, _, _) => Task.FromResult(WorkResult.Success));
            });
        }

        await using var provider = services.BuildServiceProvider();
        var registrations = provider.GetRequiredService<IOptions<HealthCheckServiceOptions>>().Value.Registrations;
        var report = await provider.GetRequiredService<HealthCheckService>().CheckHealthAsync();

        Assert.Multiple(() =>
        {
            Assert.That(registrations.Select(r => r.Name), Is.EquivalentTo(new[] { "txcoord-participant-bank-a", "txcoord-participant-bank-b" }));
            Assert.That(registrations.Select(r => r.FailureStatus), Is.All.EqualTo(HealthStatus.Degraded));
            Assert.That(report.Status, Is.EqualTo(HealthStatus.Healthy));
            Assert.That(report.Entries["txcoord-participant-bank-b"].Description, Does.Contain("no blocked branch"));
        });
    }
}
