using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using TxCoord.Participants;
using TxCoord.Participants.EntityFrameworkCore;

namespace TxCoord.Samples.Orders;

/// <summary>Work: place an order (written with EF Core, inside the branch).</summary>
public sealed record PlaceOrder
{
    public required Guid OrderId { get; init; }

    public required string Item { get; init; }
}

/// <summary>The orders participant: its DbContext and its work handler.</summary>
public static class OrdersParticipant
{
    /// <summary>
    /// Registers <see cref="OrdersDb"/> (scoped: TxCoord gives each branch a DI scope, so each
    /// branch gets its own context) and the participant with the <see cref="PlaceOrder"/> handler.
    /// </summary>
    public static IServiceCollection AddOrdersParticipant(
        this IServiceCollection services, string participantId, string connectionString, Action<TxCoordParticipantOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddDbContext<OrdersDb>(o => o.UseNpgsql(connectionString));
        return services.AddTxCoordParticipant(options =>
        {
            options.ParticipantId = participantId;
            options.ConnectionString = connectionString;
            configure?.Invoke(options);
            options.HandleOrdersWork();
        });
    }

    /// <summary>Registers the orders handlers on a participant's options (the DbContext must be registered too).</summary>
    public static TxCoordParticipantOptions HandleOrdersWork(this TxCoordParticipantOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Handle<PlaceOrder>(PlaceAsync);
    }

    /// <summary>
    /// Adds the order through EF Core. <c>GetDbContextAsync</c>, not <c>Services.GetRequiredService</c>:
    /// only a context bound to the branch's connection writes inside the global transaction.
    /// </summary>
    public static async Task<WorkResult> PlaceAsync(IBranchContext branch, PlaceOrder order, CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(order.Item))
        {
            return WorkResult.Refuse("an order needs an item");
        }

        var db = await branch.GetDbContextAsync<OrdersDb>(cancellationToken);
        db.Orders.Add(new Order { Id = order.OrderId, Item = order.Item });
        await db.SaveChangesAsync(cancellationToken);
        return WorkResult.Success;
    }
}
