using Microsoft.Extensions.Configuration;

namespace TxCoord.Samples.Bank.Transfers;

/// <summary>The driver's settings, from the environment.</summary>
internal sealed record DemoSettings(string BankA, string BankB, Uri RabbitMq, string CoordinatorId)
{
    /// <summary>Throws <see cref="SettingsException"/> naming the first setting to fix.</summary>
    public static DemoSettings Read(IConfiguration configuration) => new(
        SampleSettings.ConnectionString(configuration, "BankA", "bank A's database (the debit side)"),
        SampleSettings.ConnectionString(configuration, "BankB", "bank B's database (the credit side)"),
        SampleSettings.RabbitMq(configuration),
        SampleSettings.Name(configuration, "TxCoord:CoordinatorId", "the coordinator's id (as configured in the coordinator service)", "coordinator-1"));
}
