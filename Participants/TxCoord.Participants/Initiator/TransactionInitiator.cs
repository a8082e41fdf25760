using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TxCoord.Contracts;

namespace TxCoord.Participants.Initiator;

internal sealed class TransactionInitiator(
    TxCoordInitiatorOptions options, IServiceProvider services, TimeProvider time, ILogger<TransactionInitiator> logger)
    : ITransactionInitiator
{
    // The bus is registered by the application's AddMassTransit, possibly after this SDK.
    private IClientFactory Clients => services.GetRequiredService<IClientFactory>();

    internal CoordinatorId Coordinator { get; } = new(options.CoordinatorId);

    internal TxCoordInitiatorOptions Options => options;

    internal ILogger Logger => logger;

    /// <summary>Set once the bus checks the answers this initiator receives (ConfigureTxCoordInitiator, or a participant's endpoints on the same bus).</summary>
    internal bool ReceiveChecked { get; set; }

    public IGlobalTransaction Begin(TransactionOptions? transactionOptions = null)
    {
        if (options.Security.SenderAuthentication != SenderAuthentication.Off && !ReceiveChecked)
        {
            throw new InvalidOperationException(
                "The TxCoord initiator runs with Security:SenderAuthentication BrokerUser but its bus does not check who answers: "
                + "call cfg.ConfigureTxCoordInitiator(context) (or cfg.ConfigureTxCoordParticipantEndpoints(context)) in the bus configuration.");
        }

        transactionOptions ??= new TransactionOptions();
        var timeout = transactionOptions.Timeout ?? options.TransactionTimeout;
        if (timeout <= TimeSpan.Zero)
        {
            throw new ArgumentException($"The transaction timeout must be positive (was {timeout}).", nameof(transactionOptions));
        }

        IReadOnlyList<ParticipantId>? participants = null;
        if (transactionOptions.Participants is { } declared)
        {
            if (declared.Count == 0)
            {
                throw new ArgumentException("TransactionOptions.Participants, when set, must name at least one participant.", nameof(transactionOptions));
            }

            foreach (var name in declared)
            {
                BranchGid.EnsureValidName(name, "participant name in TransactionOptions.Participants");
            }

            participants = [.. declared.Distinct(StringComparer.Ordinal).Select(name => new ParticipantId(name))];
            if (participants.Count > options.MaxParticipantsPerTransaction)
            {
                throw new ArgumentException(
                    $"TransactionOptions.Participants names {participants.Count} participants, more than this initiator's cap of {options.MaxParticipantsPerTransaction} (option MaxParticipantsPerTransaction; the coordinator would abort the commit).",
                    nameof(transactionOptions));
            }
        }

        return new GlobalTransaction(this, TransactionId.New(), transactionOptions.Protocol, time.GetUtcNow() + timeout, timeout, participants);
    }

    public async Task<CommitResult> GetOutcomeAsync(TransactionId transactionId, CancellationToken cancellationToken = default)
    {
        try
        {
            var response = await Request<GetTransactionOutcome>(options.CommitTimeout)
                .GetResponse<TransactionOutcomeReported>(new GetTransactionOutcome { TransactionId = transactionId }, cancellationToken);
            return response.Message.Outcome switch
            {
                TransactionOutcome.Committed => new CommitResult(transactionId, CommitOutcome.Committed),
                TransactionOutcome.Aborted => new CommitResult(transactionId, CommitOutcome.Aborted, "the coordinator reports it aborted"),
                _ => new CommitResult(transactionId, CommitOutcome.InDoubt, "the coordinator has not decided yet"),
            };
        }
        catch (RequestTimeoutException)
        {
            return new CommitResult(transactionId, CommitOutcome.InDoubt, $"coordinator {Coordinator} did not answer within {options.CommitTimeout}");
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            var reason = DescribeFault(Coordinator, e);
            Log.InitiatorFaultInDoubt(logger, e, transactionId, reason);
            return new CommitResult(transactionId, CommitOutcome.InDoubt, reason);
        }
    }

    /// <summary>Why a request to the coordinator gave no outcome: its fault, or the send's failure.</summary>
    internal static string DescribeFault(CoordinatorId coordinator, Exception e) => e is RequestFaultException fault
        ? $"coordinator {coordinator} faulted on the request ({string.Join("; ", fault.Fault?.Exceptions.Select(x => x.Message) ?? [fault.Message])}): the outcome is unknown, ask again"
        : $"the request to coordinator {coordinator} failed ({e.GetType().Name}: {e.Message}): it may have left, the outcome is unknown, ask again";

    internal IRequestClient<T> Request<T>(TimeSpan timeout)
        where T : class =>
        Clients.CreateRequestClient<T>(TxCoordQueues.CoordinatorAddress(Coordinator), ToRequestTimeout(timeout));

    internal async Task SendToCoordinatorAsync<T>(T message)
        where T : class
    {
        var endpoint = await services.GetRequiredService<ISendEndpointProvider>().GetSendEndpoint(TxCoordQueues.CoordinatorAddress(Coordinator));
        await endpoint.Send(message);
    }

    internal IRequestClient<T> RequestWork<T>(ParticipantId participant)
        where T : class =>
        Clients.CreateRequestClient<T>(TxCoordQueues.ParticipantAddress(participant), ToRequestTimeout(options.WorkTimeout));

    private static RequestTimeout ToRequestTimeout(TimeSpan timeout) =>
        RequestTimeout.After(ms: (int)Math.Clamp(timeout.TotalMilliseconds, 1, int.MaxValue));
}
