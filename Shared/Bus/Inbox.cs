using MassTransit;

namespace TxCoord.Bus;

/// <summary>
/// Binds a TxCoord endpoint's inbox exchange (<see cref="Contracts.TxCoordQueues.CoordinatorInbox"/>,
/// <see cref="Contracts.TxCoordQueues.ParticipantInbox"/>) to the endpoint, so what senders send
/// there reaches its queue. One source, linked into the coordinator and the participant SDK.
/// </summary>
internal static class Inbox
{
    /// <summary>Binds <paramref name="inbox"/> (a durable fanout exchange) to <paramref name="endpoint"/>'s queue.</summary>
    /// <exception cref="NotSupportedException">The endpoint is on a transport other than RabbitMQ or the in-memory one.</exception>
    public static void BindTxCoordInbox(this IReceiveEndpointConfigurator endpoint, string inbox)
    {
        switch (endpoint)
        {
            case IRabbitMqReceiveEndpointConfigurator rabbitMq:
                rabbitMq.Bind(inbox);
                break;
            case IInMemoryReceiveEndpointConfigurator inMemory:
                inMemory.Bind(inbox);
                break;
            default:
                throw new NotSupportedException(
                    $"TxCoord's endpoints run on RabbitMQ or the in-memory transport; this one is a {endpoint.GetType().Name}, which cannot bind the inbox exchange '{inbox}'.");
        }
    }
}
