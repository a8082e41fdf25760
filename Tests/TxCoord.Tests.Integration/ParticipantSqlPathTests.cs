using Dapper;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Participants;
using TxCoord.Participants.PostgreSql;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>The work message of these tests: the handler runs <see cref="Sql"/> on the branch and stores its result under <see cref="Key"/>.</summary>
public sealed record RunOnBranch
{
    public required string Key { get; init; }

    /// <summary>Statements run first, before the value is read (for example a SET).</summary>
    public string? Setup { get; init; }

    /// <summary>One scalar query whose text result is stored.</summary>
    public required string Sql { get; init; }
}

/// <summary>
/// How the participant spends SQL on a branch: the status read shares the branch's connection
/// without starting its transaction, the SDK's own connections skip <c>DISCARD ALL</c> but the
/// handlers' connections do not, and the one-round-trip writes (marker + PREPARE, abort marker)
/// leave nothing half done when they fail.
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class ParticipantSqlPathTests
{
    private TxCoordCluster _cluster = null!;
    private ProbeCoordinator _probe = null!;
    private string _participant = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _cluster = await TxCoordCluster.StartAsync(new ClusterOptions
        {
            Participants = 1,
            BranchTimeout = TimeSpan.FromSeconds(30),
            Handlers = o => o.Handle<RunOnBranch>(async (branch, work, cancellationToken) =>
            {
                if (work.Setup is { } setup)
                {
                    await branch.Connection.ExecuteAsync(new CommandDefinition(setup, transaction: branch.Transaction, cancellationToken: cancellationToken));
                }

                var value = await branch.Connection.ExecuteScalarAsync<string>(new CommandDefinition(work.Sql, transaction: branch.Transaction, cancellationToken: cancellationToken));
                await branch.Connection.ExecuteAsync(new CommandDefinition(
                    "INSERT INTO items (key, value) VALUES (@Key, @Value)", new { work.Key, Value = value ?? "" }, branch.Transaction, cancellationToken: cancellationToken));
                return WorkResult.Success;
            }),
        });
        _probe = await ProbeCoordinator.StartAsync(_cluster);
        _participant = _cluster.ParticipantIds[0];
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        await _probe.DisposeAsync();
        await _cluster.DisposeAsync();
    }

    private string Database => _cluster.ParticipantDatabases[_participant];

    [Test]
    public async Task HandlerThatSetsItsIsolationLevelFirst_RunsAtThatLevel_AndTheBranchCommits()
    {
        // SET TRANSACTION must be the transaction's first statement: the status read may not be inside it.
        var id = TransactionId.New();
        var key = $"iso-{id}";
        var reply = await _probe.SendRawWorkAsync(
            _participant,
            new RunOnBranch { Key = key, Setup = "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", Sql = "SHOW transaction_isolation" },
            Headers(id));
        Assert.That(reply.Succeeded, Is.True, reply.Reason);

        await CommitAsync(id);

        Assert.That(await KeyValueParticipant.ReadAsync(Database, key), Is.EqualTo("serializable"));
    }

    [Test]
    public async Task SessionSettingLeftByOneHandler_IsNotSeenByTheHandlersOfLaterBranches()
    {
        // Each branch reads application_name, then leaves it changed for the session. The
        // branches' pool resets a connection (DISCARD ALL) before its next branch, so no handler
        // sees a value left by an earlier one, whichever pooled connection it gets.
        var seen = new List<string?>();
        for (var i = 0; i < 12; i++)
        {
            var id = TransactionId.New();
            var key = $"session-{id}";
            var read = await _probe.SendRawWorkAsync(
                _participant,
                new RunOnBranch { Key = key, Sql = "SELECT current_setting('application_name')" },
                Headers(id));
            Assert.That(read.Succeeded, Is.True, read.Reason);
            var leave = await _probe.SendRawWorkAsync(
                _participant,
                new RunOnBranch { Key = $"{key}-set", Setup = "SET SESSION application_name = 'left-by-a-handler'", Sql = "SELECT 'set'" },
                Headers(id));
            Assert.That(leave.Succeeded, Is.True, leave.Reason);
            await CommitAsync(id);
            seen.Add(await KeyValueParticipant.ReadAsync(Database, key));
        }

        Assert.That(seen, Has.None.EqualTo("left-by-a-handler"));
    }

    [Test]
    public async Task PrepareOfAGidAbortedFirst_FailsOnTheMarker_AndPreparesNothing()
    {
        await using var store = await StoreAsync("sqlpath_marker");
        var gid = BranchGid.Create(new CoordinatorId("probe"), TransactionId.New(), new ParticipantId("p"));
        await store.Store.RecordAbortedAsync(gid, CancellationToken.None);

        await using var connection = await store.Work.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync("CREATE TABLE IF NOT EXISTS items (key text PRIMARY KEY, value text NOT NULL)", transaction: transaction);
        await connection.ExecuteAsync("INSERT INTO items (key, value) VALUES ('k', 'v')", transaction: transaction);

        var error = Assert.ThrowsAsync<PostgresException>(() => BranchStore.PrepareAsync(connection, transaction, gid, checkWrote: false, CancellationToken.None));
        await transaction.RollbackAsync();

        var preparedCount = await KeyValueParticipant.CountPreparedAsync(store.ConnectionString);
        var status = await store.Store.GetStatusAsync(gid, CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(PostgresErrors.DescribePrepareFailure(error!), Does.Contain("aborted before this branch could prepare"));
            Assert.That(preparedCount, Is.Zero);
            Assert.That(status, Is.EqualTo(BranchStatus.Aborted));
        });
    }

    [Test]
    public async Task AbortMarkerThatTimesOutOnAPreparedBranch_LeavesThePooledConnectionOutOfAnyTransaction()
    {
        // The SDK's pool skips DISCARD ALL and holds one connection here: the failed one-round-trip
        // write must not leave it inside a transaction for the next write.
        await using var store = await StoreAsync("sqlpath_reset", maxPoolSize: 1);
        var prepared = BranchGid.Create(new CoordinatorId("probe"), TransactionId.New(), new ParticipantId("p"));
        await using (var connection = await store.Work.OpenConnectionAsync())
        {
            await using var transaction = await connection.BeginTransactionAsync();
            await BranchStore.PrepareAsync(connection, transaction, prepared, checkWrote: false, CancellationToken.None);
        }

        try
        {
            var error = Assert.ThrowsAsync<PostgresException>(() => store.Store.RecordAbortedAsync(prepared, CancellationToken.None));
            Assert.That(error!.SqlState, Is.EqualTo("55P03"), "lock_timeout: the prepared branch holds its marker's key");

            var next = BranchGid.Create(new CoordinatorId("probe"), TransactionId.New(), new ParticipantId("p"));
            await store.Store.RecordAbortedAsync(next, CancellationToken.None);
            await using var other = new NpgsqlConnection(store.ConnectionString);
            var outcome = await other.ExecuteScalarAsync<string>("SELECT outcome FROM txcoord.branch_outcomes WHERE gid = @Gid", new { Gid = next.Value });
            var status = await store.Store.GetStatusAsync(prepared, CancellationToken.None);
            Assert.Multiple(() =>
            {
                Assert.That(outcome, Is.EqualTo("aborted"), "the next write committed on the reused connection");
                Assert.That(status, Is.EqualTo(BranchStatus.Prepared));
            });
        }
        finally
        {
            await store.Store.RollbackPreparedAsync(prepared, CancellationToken.None);
        }
    }

    private async Task CommitAsync(TransactionId id)
    {
        await _probe.SendAsync(_participant, new PrepareBranch { TransactionId = id, Coordinator = _probe.Id, Participant = new ParticipantId(_participant) });
        Assert.That((await _probe.NextAsync<BranchVoted>(id)).Vote, Is.EqualTo(Vote.Yes));
        await _probe.SendAsync(_participant, new CommitBranch { TransactionId = id, Coordinator = _probe.Id, Participant = new ParticipantId(_participant) });
        await _probe.NextAsync<BranchCommitted>(id);
    }

    private static async Task<StoreFixture> StoreAsync(string name, int maxPoolSize = 10)
    {
        var connectionString = await TestServers.CreateDatabaseAsync($"{name}_{Guid.NewGuid():N}"[..30]);
        var sdk = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(connectionString) { NoResetOnClose = true, MaxPoolSize = maxPoolSize }.ConnectionString);
        var work = NpgsqlDataSource.Create(connectionString);
        var store = new BranchStore(sdk);
        await store.InitializeAsync(CancellationToken.None);
        return new StoreFixture(connectionString, store, sdk, work);
    }

    private Dictionary<string, object> Headers(TransactionId id) => new()
    {
        [TxCoordHeaders.TransactionId] = id.Value.ToString(),
        [TxCoordHeaders.CoordinatorId] = _probe.Id.Value,
    };

    private sealed record StoreFixture(string ConnectionString, BranchStore Store, NpgsqlDataSource Sdk, NpgsqlDataSource Work) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await Sdk.DisposeAsync();
            await Work.DisposeAsync();
        }
    }
}
