using System.Diagnostics.Metrics;
using MassTransit;
using Microsoft.Extensions.Logging;
using TxCoord.Contracts;
using TxCoord.Contracts.Security;

namespace TxCoord.Security;

// The bus side of sender authentication (docs/security.md), linked into the coordinator and the
// SDK: stamping the AMQP user_id on what a bus sends, reading the one RabbitMQ validated on what
// it receives, and refusing protocol messages whose claimed sender is not that user. The rules
// themselves are pure (Contracts/Security/SenderRules.cs).

/// <summary>Who a protocol message of type <typeparamref name="T"/> claims to come from.</summary>
internal sealed class SenderClaim<T>(Func<T, string?> claimedId, SenderRole? role) : ISenderClaim
    where T : class
{
    public SenderRefusal? Check(ConsumeContext context, TxCoordSecurityOptions options, string? brokerUser, out string messageType, out string claimed)
    {
        messageType = "";
        claimed = "";
        if (!context.TryGetMessage<T>(out var typed))
        {
            return null;
        }

        messageType = typeof(T).Name;
        claimed = claimedId(typed.Message) ?? "";
        if (role is { } r)
        {
            // A message that names no sender (a GetTransactionOutcome from an initiator) is not the sender check's to refuse.
            return claimedId(typed.Message) is null ? null : SenderRules.Check(options, r, claimed, brokerUser);
        }

        return SenderRules.CheckAnyCoordinator(options, brokerUser);
    }

    public void MarkConsumed(ConsumeContext context)
    {
        if (context.TryGetMessage<T>(out var typed))
        {
            context.NotifyConsumed(typed, TimeSpan.Zero, nameof(SenderCheckFilter));
        }
    }
}

internal interface ISenderClaim
{
    /// <summary>Null when the message is not of this claim's type or passes; the refusal otherwise.</summary>
    SenderRefusal? Check(ConsumeContext context, TxCoordSecurityOptions options, string? brokerUser, out string messageType, out string claimed);

    /// <summary>Marks the message consumed, so it goes neither back to the queue nor to the _skipped queue.</summary>
    void MarkConsumed(ConsumeContext context);
}

/// <summary>
/// A consume filter that drops (consumes without handling) every protocol message whose claimed
/// sender is not the broker user RabbitMQ validated for it: it changes nothing, is logged
/// (warning, at most <see cref="LogsPerMinute"/> a minute) and counted in
/// <c>txcoord_messages_refused_total</c> by type and reason.
/// </summary>
internal sealed class SenderCheckFilter : IFilter<ConsumeContext>
{
    public const int LogsPerMinute = 30;

    private readonly TxCoordSecurityOptions _options;
    private readonly ISenderClaim[] _claims;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Action<ILogger, string, string, string, string, string, Exception?> _logRefused;
    private readonly Action<string, string>? _counted;
    private readonly Lock _gate = new();
    private DateTimeOffset _windowStart;
    private int _logged;

    /// <param name="counted">Also told (type, reason) of every refusal, for a host's own metrics (the coordinator's /metrics).</param>
    public SenderCheckFilter(TxCoordSecurityOptions options, ISenderClaim[] claims, ILogger logger, TimeProvider time, int eventId, Action<string, string>? counted = null)
    {
        _counted = counted;
        _options = options;
        _claims = claims;
        _logger = logger;
        _time = time;
        _logRefused = LoggerMessage.Define<string, string, string, string, string>(
            LogLevel.Warning,
            new EventId(eventId, "MessageRefused"),
            "Refused {MessageType} claiming to come from '{Claimed}', sent by broker user '{BrokerUser}' (transaction {TransactionId}): {Why}. Nothing was changed.");
    }

    public async Task Send(ConsumeContext context, IPipe<ConsumeContext> next)
    {
        var brokerUser = BrokerIdentity.UserOf(context);
        foreach (var claim in _claims)
        {
            if (claim.Check(context, _options, brokerUser, out var messageType, out var claimed) is { } refused)
            {
                Refuse(context, messageType, claimed, brokerUser, refused);
                claim.MarkConsumed(context);
                return;
            }

            if (messageType.Length > 0)
            {
                break;
            }
        }

        await next.Send(context);
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("txcoordSenderCheck");

    private void Refuse(ConsumeContext context, string messageType, string claimed, string? brokerUser, SenderRefusal refused)
    {
        RefusedMessages.Count(messageType, refused.Reason);
        _counted?.Invoke(messageType, refused.Reason);
        if (MayLog())
        {
            var transaction = context.Headers.Get<string>(TxCoordHeaders.TransactionId) ?? TransactionIdOf(context) ?? "?";
            _logRefused(_logger, messageType, Truncate(claimed), Truncate(brokerUser ?? "(none)"), transaction, refused.Detail, null);
        }
    }

    private bool MayLog()
    {
        var now = _time.GetUtcNow();
        lock (_gate)
        {
            if (now - _windowStart >= TimeSpan.FromMinutes(1))
            {
                _windowStart = now;
                _logged = 0;
            }

            return ++_logged <= LogsPerMinute;
        }
    }

    private static string? TransactionIdOf(ConsumeContext context) =>
        context.TryGetMessage<CommitBranch>(out var c) ? c.Message.TransactionId.ToString()
        : context.TryGetMessage<PrepareBranch>(out var p) ? p.Message.TransactionId.ToString()
        : context.TryGetMessage<AbortBranch>(out var a) ? a.Message.TransactionId.ToString()
        : context.TryGetMessage<BranchVoted>(out var v) ? v.Message.TransactionId.ToString()
        : context.TryGetMessage<TerminationDecided>(out var t) ? t.Message.TransactionId.ToString()
        : null;

    /// <summary>Claimed ids and users come from the sender: never echoed whole, nor with control characters.</summary>
    private static string Truncate(string text)
    {
        var clean = new string([.. text.Take(64).Select(c => char.IsControl(c) ? '?' : c)]);
        return text.Length > 64 ? clean + "..." : clean;
    }
}

/// <summary>The metric of refused messages: <c>txcoord_messages_refused_total</c> on the <c>TxCoord</c> meter, tagged type and reason.</summary>
internal static class RefusedMessages
{
    public const string MeterName = "TxCoord";
    public const string InstrumentName = "txcoord_messages_refused_total";

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> Counter = Meter.CreateCounter<long>(
        InstrumentName, description: "Protocol messages refused because their sender is not who they claim (or the protocol does not allow them), by type and reason.");

    public static void Count(string messageType, string reason) =>
        Counter.Add(1, new KeyValuePair<string, object?>("type", messageType), new KeyValuePair<string, object?>("reason", reason));
}

/// <summary>The AMQP user_id: stamped on what a bus sends, read from what it receives.</summary>
internal static class BrokerIdentity
{
    /// <summary>The user RabbitMQ validated for the message (https://www.rabbitmq.com/docs/validated-user-id); null when it carries none or came over another transport.</summary>
    public static string? UserOf(ConsumeContext context) =>
        context.ReceiveContext is RabbitMqBasicConsumeContext rabbit && rabbit.Properties.IsUserIdPresent() ? rabbit.Properties.UserId : null;

    /// <summary>
    /// Stamps <paramref name="user"/> as user_id on every message the bus sends, publishes or
    /// responds. It must be the user the bus connects as: RabbitMQ closes the channel of a message
    /// claiming another user (PRECONDITION_FAILED).
    /// </summary>
    public static void StampUserId(IBusFactoryConfigurator configurator, string user)
    {
        configurator.ConfigureSend(send => send.UseExecute(context => Stamp(context, user)));
        configurator.ConfigurePublish(publish => publish.UseExecute(context => Stamp(context, user)));
    }

    /// <summary>True when the bus runs on RabbitMQ, the only transport that validates a sender.</summary>
    public static bool IsRabbitMq(IBusFactoryConfigurator configurator) => configurator is IRabbitMqBusFactoryConfigurator;

    private static void Stamp(SendContext context, string user)
    {
        if (context is RabbitMqSendContext rabbit || context.TryGetPayload(out rabbit!))
        {
            rabbit.BasicProperties.UserId = user;
        }
    }
}
