using System.Text.Json;
using MassTransit;
using MassTransit.Middleware;
using TxCoord.Contracts;

namespace TxCoord.Bus;

/// <summary>
/// Says in the log what MassTransit otherwise moves to <c>&lt;queue&gt;_skipped</c> without a word: a
/// message no handler of the endpoint takes (a type TxCoord does not know, from a newer or foreign
/// sender, or from someone probing the vhost). The dead-letter pipe is replaced by this filter
/// followed by MassTransit's own <see cref="DeadLetterTransportFilter"/>, so the message still ends
/// in the _skipped queue for an operator to look at. One source, linked into the coordinator and the
/// participant SDK, each logging with its own event id.
/// </summary>
internal static class SkippedMessageLog
{
    /// <summary>
    /// Logs every skipped message of the endpoint through <paramref name="log"/>(queue, message types),
    /// both escaped and bounded (the types come from the message's envelope: anyone can write them).
    /// </summary>
    public static void UseTxCoordSkippedMessageLog(this IReceiveEndpointConfigurator endpoint, string queue, Action<string, string> log)
    {
        endpoint.ConfigureDeadLetter(pipe =>
        {
            pipe.UseFilter(new Filter(queue, log));
            pipe.UseFilter(new DeadLetterTransportFilter());
        });
    }

    private sealed class Filter(string queue, Action<string, string> log) : IFilter<ReceiveContext>
    {
        public Task Send(ReceiveContext context, IPipe<ReceiveContext> next)
        {
            try
            {
                log(queue, UntrustedText.Bound(MessageTypes(context), 500)!);
            }
            catch (Exception)
            {
                // A failing log must not stop the move to _skipped (the message would be redelivered for ever).
            }

            return next.Send(context);
        }

        /// <summary>
        /// The <c>messageType</c> list of MassTransit's JSON envelope. Read from the body: the
        /// consume context that holds it is not kept on the receive context. The body is bounded by
        /// the broker's max_message_size; only a skipped message is read twice.
        /// </summary>
        private static string MessageTypes(ReceiveContext context)
        {
            try
            {
                using var document = JsonDocument.Parse(context.Body.GetBytes());
                if (document.RootElement.ValueKind == JsonValueKind.Object
                    && document.RootElement.TryGetProperty("messageType", out var types) && types.ValueKind == JsonValueKind.Array)
                {
                    return string.Join(", ", types.EnumerateArray().Select(t => t.ToString()));
                }
            }
            catch (JsonException)
            {
            }

            return $"unknown (a {context.ContentType?.MediaType ?? "message without content type"} without a MassTransit envelope)";
        }

        public void Probe(ProbeContext context) => context.CreateFilterScope("txcoordSkippedMessageLog");
    }
}
