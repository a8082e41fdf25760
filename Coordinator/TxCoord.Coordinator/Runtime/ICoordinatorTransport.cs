using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using TxCoord.Contracts;

namespace TxCoord.Coordinator.Runtime;

/// <summary>Where an initiator waits for its answer: the request's response address and id.</summary>
internal sealed record ReplyTarget(Uri Address, Guid? RequestId)
{
    /// <summary>The reply target of a request, or null when the sender expects no answer.</summary>
    public static ReplyTarget? From(ConsumeContext context) =>
        context.ResponseAddress is { } address ? new ReplyTarget(address, context.RequestId) : null;
}

/// <summary>The coordinator's outgoing messages. A seam so the driver can run without a bus in tests.</summary>
internal interface ICoordinatorTransport
{
    Task SendToParticipantAsync<T>(ParticipantId participant, T message, CancellationToken cancellationToken)
        where T : class;

    /// <summary>Answers a request long after it was consumed, with the request's id so the requester can match it.</summary>
    Task ReplyAsync(ReplyTarget target, TransactionCompleted message, CancellationToken cancellationToken);
}

/// <summary>
/// Sends through the MassTransit bus. The bus is resolved on first use: the runtime is built
/// while the bus itself is being configured.
/// </summary>
internal sealed class MassTransitCoordinatorTransport(IServiceProvider services) : ICoordinatorTransport
{
    private ISendEndpointProvider? _sendEndpoints;

    private ISendEndpointProvider SendEndpoints => _sendEndpoints ??= services.GetRequiredService<IBus>();

    public async Task SendToParticipantAsync<T>(ParticipantId participant, T message, CancellationToken cancellationToken)
        where T : class
    {
        var endpoint = await SendEndpoints.GetSendEndpoint(TxCoordQueues.ParticipantAddress(participant));
        await endpoint.Send(message, cancellationToken);
    }

    public async Task ReplyAsync(ReplyTarget target, TransactionCompleted message, CancellationToken cancellationToken)
    {
        var endpoint = await SendEndpoints.GetSendEndpoint(target.Address);
        await endpoint.Send(message, context => context.RequestId = target.RequestId, cancellationToken);
    }
}
