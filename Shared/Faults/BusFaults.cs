using MassTransit;

namespace TxCoord.Faults;

/// <summary>
/// Bus fault seam: with <c>TXCOORD_BUS_FAULTS</c> set (rules as in <see cref="FaultRuleSet"/>),
/// every handler of an endpoint that called <see cref="UseTxCoordBusFaults"/> runs behind a filter
/// that, for the message types named (by type name, e.g. <c>PrepareBranch</c> or <c>DebitAccount</c>):
/// <list type="bullet">
/// <item><c>drop</c>: loses the delivery (acknowledged to the broker, never handled);</item>
/// <item><c>duplicate</c>: handles it twice, the second time after the milliseconds given (default 0);</item>
/// <item><c>delay</c>: handles it after the milliseconds given, so later messages overtake it (reorder);</item>
/// <item><c>throw</c>: throws before the handler, like a poison message (retry policy, then the error queue).</item>
/// <item><c>stall</c>: handles it at once, then keeps the delivery unacknowledged for the milliseconds
/// given, ignoring cancellation: a handler with a slow tail that does not watch its token.</item>
/// </list>
/// Dropping on the receiving side covers both a lost request and a lost reply: drop the reply's
/// type at the process that receives it. Unset: nothing is added to the pipeline.
/// </summary>
internal static class BusFaults
{
    public const string Variable = "TXCOORD_BUS_FAULTS";

    public const string Drop = "drop";
    public const string Duplicate = "duplicate";
    public const string Delay = "delay";
    public const string Throw = "throw";
    public const string Stall = "stall";

    private static readonly string[] Actions = [Drop, Duplicate, Delay, Throw, Stall];

    private static readonly FaultRuleSet? Rules = FaultRuleSet.Parse(Variable, Environment.GetEnvironmentVariable(Variable), Actions, null, [Delay, Stall]);

    public static bool IsArmed => Rules is not null;

    /// <summary>Parses the variable now, so a malformed rule stops the start with a message that says what to fix.</summary>
    public static void EnsureValid()
    {
        try
        {
            _ = IsArmed;
        }
        catch (TypeInitializationException e) when (e.InnerException is InvalidOperationException inner)
        {
            throw new InvalidOperationException(inner.Message, inner);
        }
    }

    /// <summary>Puts the fault filter in front of every handler configured on this endpoint from now on; nothing when unarmed.</summary>
    public static void UseTxCoordBusFaults(this IReceiveEndpointConfigurator endpoint)
    {
        if (Rules is not null)
        {
            endpoint.ConnectHandlerConfigurationObserver(new Observer(Rules));
        }
    }

    private sealed class Observer(FaultRuleSet rules) : IHandlerConfigurationObserver
    {
        public void HandlerConfigured<T>(IHandlerConfigurator<T> configurator)
            where T : class =>
            configurator.UseFilter(new Filter<T>(rules));
    }

    private sealed class Filter<T>(FaultRuleSet rules) : IFilter<ConsumeContext<T>>
        where T : class
    {
        public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
        {
            if (rules.Take(typeof(T).Name) is not { } rule)
            {
                await next.Send(context);
                return;
            }

            FaultRuleSet.Report("bus", rule, $"message {context.MessageId}");
            switch (rule.Action)
            {
                case Drop:
                    await context.NotifyConsumed(context, TimeSpan.Zero, "txcoord-fault-drop");
                    return;
                case Duplicate:
                    await next.Send(context);
                    if (rule.Delay > TimeSpan.Zero)
                    {
                        await Task.Delay(rule.Delay, TimeProvider.System, context.CancellationToken);
                    }

                    await next.Send(context);
                    return;
                case Delay:
                    await Task.Delay(rule.Delay, TimeProvider.System, context.CancellationToken);
                    await next.Send(context);
                    return;
                case Stall:
                    await next.Send(context);
                    await Task.Delay(rule.Delay, TimeProvider.System, CancellationToken.None);
                    return;
                default:
                    throw new InvalidOperationException($"injected fault: {typeof(T).Name} {context.MessageId} is poison ({Variable})");
            }
        }

        public void Probe(ProbeContext context) => context.CreateFilterScope("txcoordBusFaults");
    }
}
