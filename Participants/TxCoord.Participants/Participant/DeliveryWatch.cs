using MassTransit;
using Microsoft.Extensions.Logging;
using TxCoord.Contracts;

namespace TxCoord.Participants;

/// <summary>
/// Says in the participant's log when the broker hands a message over again, and when a handler
/// finished or stopped after the transport had already given its delivery up. Both happen when a
/// handler is slower than RabbitMQ's <c>consumer_timeout</c>: the broker closes the channel
/// (PRECONDITION_FAILED) and requeues the delivery, MassTransit cancels the handler's token and,
/// once the handler has returned, opens a new channel and the message comes back, flagged
/// redelivered; a handler that ignored its token and finished has no channel to acknowledge on. Every handler is idempotent, so nothing
/// is done about it here but saying so (the work path rolls its branch back: see
/// <see cref="WorkStopped"/>). Event ids 2400-2409.
/// </summary>
internal static partial class DeliveryWatch
{
    /// <summary>Puts the watch in front of every handler configured on this endpoint from now on.</summary>
    public static void UseTxCoordDeliveryWatch(this IReceiveEndpointConfigurator endpoint, string participant, ILogger logger, TimeProvider time) =>
        endpoint.ConnectHandlerConfigurationObserver(new Observer(participant, logger, time));

    [LoggerMessage(2400, LogLevel.Warning,
        "Transaction {TransactionId}: participant {Participant} got {MessageType} {MessageId} again from the broker (redelivered: an earlier delivery was not acknowledged, e.g. its handler outlasted the broker's consumer timeout, or the channel was lost); handling it again")]
    private static partial void Redelivered(ILogger logger, string transactionId, string participant, string messageType, Guid? messageId);

    [LoggerMessage(2401, LogLevel.Warning,
        "Transaction {TransactionId}: participant {Participant} finished {MessageType} {MessageId} after {Elapsed} but the transport had given the delivery up meanwhile (channel closed, e.g. the broker's consumer timeout): its acknowledgement is lost and the broker delivers it again, which is harmless")]
    private static partial void FinishedAfterDeliveryLost(ILogger logger, string transactionId, string participant, string messageType, Guid? messageId, TimeSpan elapsed);

    [LoggerMessage(2402, LogLevel.Warning,
        "Transaction {TransactionId}: participant {Participant} stopped handling {MessageType} {MessageId} after {Elapsed}: the transport gave the delivery up (channel closed, e.g. the broker's consumer timeout); the broker delivers it again")]
    private static partial void CancelledWithDelivery(ILogger logger, string transactionId, string participant, string messageType, Guid? messageId, TimeSpan elapsed);

    [LoggerMessage(2403, LogLevel.Warning,
        "Transaction {TransactionId}: participant {Participant}'s work handler was stopped half-way (its delivery was given up: the broker's consumer timeout, a lost channel or a shutdown); how much of the work is in the branch is unknown, so the branch rolls back and the redelivered message will be refused")]
    internal static partial void WorkStopped(ILogger logger, TransactionId transactionId, string participant);

    /// <summary>The transaction a message belongs to: from the protocol message, or the work message's header.</summary>
    private static string TransactionOf<T>(ConsumeContext<T> context)
        where T : class
    {
        TransactionId? id = context.Message switch
        {
            PrepareBranch m => m.TransactionId,
            CommitBranch m => m.TransactionId,
            AbortBranch m => m.TransactionId,
            PreCommitBranch m => m.TransactionId,
            GetBranchState m => m.TransactionId,
            ProposeTermination m => m.TransactionId,
            TerminationDecided m => m.TransactionId,
            _ => TransactionId.TryParse(context.Headers.Get<string>(TxCoordHeaders.TransactionId), out var fromHeader) ? fromHeader : null,
        };
        return id?.ToString() ?? "(none)";
    }

    private sealed class Observer(string participant, ILogger logger, TimeProvider time) : IHandlerConfigurationObserver
    {
        public void HandlerConfigured<T>(IHandlerConfigurator<T> configurator)
            where T : class =>
            configurator.UseFilter(new Filter<T>(participant, logger, time));
    }

    private sealed class Filter<T>(string participant, ILogger logger, TimeProvider time) : IFilter<ConsumeContext<T>>
        where T : class
    {
        public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
        {
            if (context.ReceiveContext.Redelivered)
            {
                Redelivered(logger, TransactionOf(context), participant, typeof(T).Name, context.MessageId);
            }

            var started = time.GetTimestamp();
            try
            {
                await next.Send(context);
            }
            catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
            {
                CancelledWithDelivery(logger, TransactionOf(context), participant, typeof(T).Name, context.MessageId, time.GetElapsedTime(started));
                throw;
            }

            if (context.CancellationToken.IsCancellationRequested)
            {
                FinishedAfterDeliveryLost(logger, TransactionOf(context), participant, typeof(T).Name, context.MessageId, time.GetElapsedTime(started));
            }
        }

        public void Probe(ProbeContext context) => context.CreateFilterScope("txcoordDeliveryWatch");
    }
}
