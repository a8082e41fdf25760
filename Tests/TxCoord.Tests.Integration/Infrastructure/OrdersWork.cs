using System.Collections.Concurrent;
using Dapper;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Participants;
using TxCoord.Samples.Orders;

namespace TxCoord.Tests.Integration.Infrastructure;

/// <summary>Work: place an order through a DbContext taken from <see cref="IBranchContext.Services"/> as it is, not bound to the branch.</summary>
public sealed record PlaceOrderUnbound
{
    public required Guid OrderId { get; init; }
    public required string Item { get; init; }
}

/// <summary>Work: resolve the scoped <see cref="BranchScoped"/> and note which instance this branch got.</summary>
public sealed record TouchScope
{
}

/// <summary>A scoped service of the participant's host: one instance per DI scope, which says when it was disposed.</summary>
public sealed class BranchScoped : IAsyncDisposable
{
    public Guid Instance { get; } = Guid.NewGuid();

    public bool Disposed { get; private set; }

    public ValueTask DisposeAsync()
    {
        Disposed = true;
        return ValueTask.CompletedTask;
    }
}

/// <summary>The EF Core test participant: its schema, services and handlers.</summary>
internal static class OrdersTestParticipant
{
    /// <summary>The <see cref="BranchScoped"/> instances each transaction's works saw, in order.</summary>
    public static ConcurrentDictionary<TransactionId, ConcurrentQueue<BranchScoped>> Scopes { get; } = new();

    public static async Task CreateSchemaAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.ExecuteAsync(OrdersDb.CreateTableSql);
    }

    public static void AddServices(IServiceCollection services, string connectionString)
    {
        services.AddDbContext<OrdersDb>(o => o.UseNpgsql(connectionString));
        services.AddScoped<BranchScoped>();
    }

    public static void Configure(TxCoordParticipantOptions options)
    {
        KeyValueParticipant.Configure(options);
        // The sample's own handler: EF Core bound to the branch (samples/Orders).
        options.HandleOrdersWork();
        options.Handle<PlaceOrderUnbound>(async (branch, order, cancellationToken) =>
        {
            var db = branch.Services.GetRequiredService<OrdersDb>();
            db.Orders.Add(new Order { Id = order.OrderId, Item = order.Item });
            await db.SaveChangesAsync(cancellationToken);
            return WorkResult.Success;
        });
        options.Handle<TouchScope>((branch, _, _) =>
        {
            Scopes.GetOrAdd(branch.TransactionId, _ => new()).Enqueue(branch.Services.GetRequiredService<BranchScoped>());
            return Task.FromResult(WorkResult.SuccessReadOnly);
        });
    }

    public static async Task<string?> ReadAsync(string connectionString, Guid orderId)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        return await connection.QuerySingleOrDefaultAsync<string>("SELECT item FROM orders WHERE id = @orderId", new { orderId });
    }
}
