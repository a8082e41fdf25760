using Microsoft.Extensions.DependencyInjection;
using TxCoord.Participants;

namespace TxCoord.Samples.Bank;

/// <summary>Registers a bank participant with the TxCoord SDK.</summary>
public static class BankServiceCollectionExtensions
{
    /// <summary>
    /// Registers participant <paramref name="participantId"/> (e.g. "bank-a") on the database of
    /// <paramref name="connectionString"/>, handling <see cref="DebitAccount"/>, <see cref="CreditAccount"/>
    /// and <see cref="ProbeAccounts"/>. <paramref name="configure"/> may change the SDK's other
    /// options (timeouts, concurrency). Add the endpoint to the bus with
    /// <see cref="TxCoordBusConfiguratorExtensions.ConfigureTxCoordParticipantEndpoints"/>.
    /// The bank tables must exist: see <see cref="BankSchema.EnsureCreatedAsync"/>.
    /// </summary>
    public static IServiceCollection AddBankParticipant(
        this IServiceCollection services, string participantId, string connectionString, Action<TxCoordParticipantOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        return services.AddTxCoordParticipant(options =>
        {
            options.ParticipantId = participantId;
            options.ConnectionString = connectionString;
            configure?.Invoke(options);
            options.HandleBankWork();
        });
    }

    /// <summary>Registers the bank's work handlers (debit, credit, probe) on a participant's options.</summary>
    public static TxCoordParticipantOptions HandleBankWork(this TxCoordParticipantOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options
            .Handle<DebitAccount>(BankWork.DebitAsync)
            .Handle<CreditAccount>(BankWork.CreditAsync)
            .Handle<ProbeAccounts>(BankWork.ProbeAsync);
    }
}
