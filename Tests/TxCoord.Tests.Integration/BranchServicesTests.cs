using Microsoft.Extensions.DependencyInjection;
using Microsoft.EntityFrameworkCore;
using TxCoord.Participants;
using TxCoord.Participants.EntityFrameworkCore;
using TxCoord.Samples.Orders;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// What a work handler gets besides the branch's connection: a DI scope of its own branch, and EF
/// Core bound to the branch. Two participants over the real RabbitMQ and PostgreSQL: the first
/// writes orders with EF Core, the second refuses on demand so the transaction aborts.
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class BranchServicesTests
{
    /// <summary>Logged when a work answered Success but the branch wrote nothing on its connection.</summary>
    private const int SuccessWroteNothingEventId = 2700;

    private readonly CapturedLogs _logs = new();
    private TxCoordCluster _cluster = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _cluster = await TxCoordCluster.StartAsync(new ClusterOptions
        {
            Handlers = OrdersTestParticipant.Configure,
            ParticipantServices = (services, _, connectionString) =>
            {
                OrdersTestParticipant.AddServices(services, connectionString);
                services.AddSingleton<Microsoft.Extensions.Logging.ILoggerProvider>(_logs);
            },
        });
        foreach (var database in _cluster.ParticipantDatabases.Values)
        {
            await OrdersTestParticipant.CreateSchemaAsync(database);
        }
    }

    [OneTimeTearDown]
    public async Task StopAsync() => await _cluster.DisposeAsync();

    private string Orders => _cluster.ParticipantIds[0];

    private string Other => _cluster.ParticipantIds[1];

    [Test]
    public async Task EfCoreOrderInAnAbortedTransaction_LeavesNothingWritten()
    {
        var orderId = Guid.NewGuid();
        await using var tx = _cluster.Initiator.Begin();
        var order = await tx.SendAsync(Orders, new PlaceOrder { OrderId = orderId, Item = "book" });
        Assert.That(order.Succeeded, Is.True, order.Reason);
        var refused = await tx.SendAsync(Other, new PutItem { Key = $"k-{orderId}", Value = "v", Mode = PutMode.Refuse });
        Assert.That(refused.Succeeded, Is.False);

        var result = await tx.CommitAsync();

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted), result.Reason);
        await Eventually.WaitForAsync(() => _cluster.CountPreparedAsync(), n => n == 0, TimeSpan.FromSeconds(15), "the branches to finish");
        Assert.That(await OrdersTestParticipant.ReadAsync(_cluster.ParticipantDatabases[Orders], orderId), Is.Null,
            "the order was written through EF Core in a transaction that aborted");
    }

    [Test]
    public async Task EfCoreOrderInACommittedTransaction_HasItsRow_WithTheOtherParticipantsWork()
    {
        var orderId = Guid.NewGuid();
        await using var tx = _cluster.Initiator.Begin();
        Assert.That((await tx.SendAsync(Orders, new PlaceOrder { OrderId = orderId, Item = "pen" })).Succeeded, Is.True);
        Assert.That((await tx.SendAsync(Other, new PutItem { Key = $"k-{orderId}", Value = "v" })).Succeeded, Is.True);

        var result = await tx.CommitAsync();

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Committed), result.Reason);
        await Eventually.WaitForAsync(() => OrdersTestParticipant.ReadAsync(_cluster.ParticipantDatabases[Orders], orderId), v => v == "pen",
            TimeSpan.FromSeconds(15), "the order to commit");
        Assert.That(await KeyValueParticipant.ReadAsync(_cluster.ParticipantDatabases[Other], $"k-{orderId}"), Is.EqualTo("v"));
        Assert.That(_logs.For(SuccessWroteNothingEventId, tx.Id), Is.Empty, "the order was written on the branch: nothing to warn about");
    }

    [Test]
    public async Task EachBranchGetsItsOwnScope_SharedByItsWorks_AndDisposedWhenTheBranchEnds()
    {
        await using var committed = _cluster.Initiator.Begin();
        await using var aborted = _cluster.Initiator.Begin();
        foreach (var tx in new[] { committed, aborted, committed })
        {
            var work = await tx.SendAsync(Orders, new TouchScope());
            Assert.That(work.Succeeded, Is.True, work.Reason);
        }

        var first = OrdersTestParticipant.Scopes[committed.Id].ToArray();
        var second = OrdersTestParticipant.Scopes[aborted.Id].ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(first, Has.Length.EqualTo(2));
            Assert.That(first[1], Is.SameAs(first[0]), "two works of one branch share its scope");
            Assert.That(second.Single(), Is.Not.SameAs(first[0]), "two branches get distinct scoped instances");
            Assert.That(first.Concat(second).Select(s => s.Disposed), Is.All.False, "a working branch keeps its scope");
        });

        Assert.That((await committed.CommitAsync()).Outcome, Is.EqualTo(CommitOutcome.Committed));
        Assert.That((await aborted.RollbackAsync("test")).Outcome, Is.EqualTo(CommitOutcome.Aborted));

        await Eventually.WaitForAsync(() => Task.FromResult(first[0].Disposed && second[0].Disposed), d => d, TimeSpan.FromSeconds(15),
            "both branches' scopes to be disposed once they ended (read-only finish and rollback)");
    }

    [Test]
    public async Task SuccessThatWroteNothingOnTheBranch_IsWarnedOnce_WithTheTransactionAndParticipant()
    {
        // A DbContext taken from the scope as it is writes on a connection of its own: the branch
        // holds nothing of it, which only the warning can tell.
        var orderId = Guid.NewGuid();
        await using var tx = _cluster.Initiator.Begin();
        Assert.That((await tx.SendAsync(Orders, new PlaceOrderUnbound { OrderId = orderId, Item = "cup" })).Succeeded, Is.True);
        Assert.That((await tx.SendAsync(Orders, new PlaceOrderUnbound { OrderId = Guid.NewGuid(), Item = "cup" })).Succeeded, Is.True);
        Assert.That((await tx.SendAsync(Other, new PutItem { Key = $"k-{orderId}", Value = "v" })).Succeeded, Is.True);

        Assert.That((await tx.CommitAsync()).Outcome, Is.EqualTo(CommitOutcome.Committed));

        var warnings = await Eventually.WaitForAsync(() => Task.FromResult(_logs.For(SuccessWroteNothingEventId, tx.Id)), w => w.Count > 0,
            TimeSpan.FromSeconds(15), "the warning for the branch that wrote nothing");
        Assert.Multiple(() =>
        {
            Assert.That(warnings, Has.Count.EqualTo(1), "once per branch, not once per work");
            Assert.That(warnings[0].Level, Is.EqualTo(Microsoft.Extensions.Logging.LogLevel.Warning));
            Assert.That(warnings[0].Properties["Participant"], Is.EqualTo(Orders));
            Assert.That(warnings[0].Message, Does.Contain(tx.Id.ToString()));
        });
        Assert.That(_logs.Entries.Where(e => e.EventId.Id == SuccessWroteNothingEventId && e.Properties["Participant"]?.ToString() == Other
            && e.Properties["TransactionId"]?.ToString() == tx.Id.ToString()), Is.Empty, "the participant that wrote on its branch is not warned about");
    }

    [Test]
    public void GetDbContext_OfAContextThatRetriesOnFailure_IsRefusedWithTheReason()
    {
        var services = new ServiceCollection()
            .AddDbContext<OrdersDb>(o => o.UseNpgsql("Host=127.0.0.1", npgsql => npgsql.EnableRetryOnFailure()))
            .BuildServiceProvider();
        using var scope = services.CreateScope();
        var branch = new ScopeOnlyBranch(scope.ServiceProvider);

        var error = Assert.ThrowsAsync<InvalidOperationException>(() => branch.GetDbContextAsync<OrdersDb>());

        Assert.That(error!.Message, Does.Contain("EnableRetryOnFailure"));
    }

    [Test]
    public void GetDbContext_OfAContextNotRegistered_IsRefusedWithTheReason()
    {
        using var services = new ServiceCollection().BuildServiceProvider();
        var branch = new ScopeOnlyBranch(services);

        var error = Assert.ThrowsAsync<InvalidOperationException>(() => branch.GetDbContextAsync<OrdersDb>());

        Assert.That(error!.Message, Does.Contain("AddDbContext<OrdersDb>"));
    }

    /// <summary>A branch that has services only: the refusals above come before the connection is touched.</summary>
    private sealed class ScopeOnlyBranch(IServiceProvider services) : IBranchContext
    {
        public TxCoord.Contracts.TransactionId TransactionId => default;

        public TxCoord.Contracts.ParticipantId Participant => default;

        public Npgsql.NpgsqlConnection Connection => throw new InvalidOperationException("not used by the refusals");

        public Npgsql.NpgsqlTransaction Transaction => throw new InvalidOperationException("not used by the refusals");

        public IServiceProvider Services => services;
    }
}
