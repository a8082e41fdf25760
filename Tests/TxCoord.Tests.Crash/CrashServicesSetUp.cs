using TxCoord.Tests.Crash.Infrastructure;

namespace TxCoord.Tests.Crash;

/// <summary>Starts the crash services once for the whole assembly and stops them at the end.</summary>
[SetUpFixture]
public sealed class CrashServicesSetUp
{
    [OneTimeSetUp]
    public Task StartAsync() => CrashServices.StartAsync();

    [OneTimeTearDown]
    public Task StopAsync() => CrashServices.StopAsync();
}
