using MassTransit;

namespace TxCoord.Participants.Participant;

/// <summary>A registered work handler, typed so that the endpoint can bind its message type.</summary>
internal abstract class WorkHandlerRegistration
{
    public abstract Type MessageType { get; }

    public abstract void Configure(IReceiveEndpointConfigurator endpoint, ParticipantRuntime runtime);
}

internal sealed class WorkHandlerRegistration<TMessage>(WorkHandler<TMessage> handler) : WorkHandlerRegistration
    where TMessage : class
{
    public override Type MessageType => typeof(TMessage);

    public override void Configure(IReceiveEndpointConfigurator endpoint, ParticipantRuntime runtime) =>
        endpoint.Handler<TMessage>(context => runtime.HandleWorkAsync(context, handler));
}
