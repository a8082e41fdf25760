using Microsoft.EntityFrameworkCore;

namespace TxCoord.Samples.Orders;

/// <summary>An order, one row of <c>orders</c>.</summary>
public sealed class Order
{
    public Guid Id { get; set; }

    public string Item { get; set; } = "";
}

/// <summary>The application's own DbContext, registered with <c>AddDbContext</c> as any EF Core application does.</summary>
public sealed class OrdersDb(DbContextOptions<OrdersDb> options) : DbContext(options)
{
    /// <summary>The table, created by <see cref="OrdersSchema"/> (a sample keeps its DDL in SQL, not migrations).</summary>
    public const string CreateTableSql = "CREATE TABLE IF NOT EXISTS orders (id uuid PRIMARY KEY, item text NOT NULL)";

    public DbSet<Order> Orders => Set<Order>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<Order>(e =>
        {
            e.ToTable("orders");
            e.Property(o => o.Id).HasColumnName("id");
            e.Property(o => o.Item).HasColumnName("item");
        });
}
