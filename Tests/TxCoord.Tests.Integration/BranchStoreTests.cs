using Dapper;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Participants.PostgreSql;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// The participant's SQL against a real PostgreSQL, one store per test database: what the status
/// read sees while another session finishes a prepared branch, and the durability settings the
/// branch's PREPARE runs under whatever the role's defaults.
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class BranchStoreTests
{
    private static readonly CoordinatorId Coordinator = new("bst");
    private static readonly ParticipantId Participant = new("bst-p");

    private NpgsqlDataSource _dataSource = null!;
    private BranchStore _store = null!;
    private string _connectionString = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _connectionString = await TestServers.CreateDatabaseAsync($"bst_{Guid.NewGuid():N}"[..20]);
        _dataSource = NpgsqlDataSource.Create(_connectionString);
        _store = new BranchStore(_dataSource);
        await _store.InitializeAsync(CancellationToken.None);
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        await using var connection = await _dataSource.OpenConnectionAsync();
        foreach (var gid in await connection.QueryAsync<string>("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"))
        {
            await connection.ExecuteAsync($"ROLLBACK PREPARED '{gid}'");
        }

        await _dataSource.DisposeAsync();
    }

    [Test]
    public async Task StatusRead_AnotherSessionCommitsPreparedBetweenItsReads_ReadsPreparedOrCommittedNeverUnknown()
    {
        var gid = BranchGid.Create(Coordinator, TransactionId.New(), Participant);
        await PrepareBranchAsync(gid);

        BranchStore.BetweenStatusReads.Value = async () =>
        {
            // A DBA or the recovery tool, on its own session.
            await using var other = await _dataSource.OpenConnectionAsync();
            await other.ExecuteAsync($"COMMIT PREPARED '{gid.Value}'");
        };
        BranchStatus status;
        try
        {
            status = await _store.GetStatusAsync(gid, CancellationToken.None);
        }
        finally
        {
            BranchStore.BetweenStatusReads.Value = null;
        }

        // Prepared (the GID was still there when looked for) or Committed are both true answers;
        // Unknown is not: termination would fence the branch and answer Aborted.
        Assert.That(status, Is.AnyOf(BranchStatus.Prepared, BranchStatus.Committed), "a branch committed during the read must never read Unknown");
    }

    [Test]
    public async Task StatusRead_OneRoundTrip_AnotherSessionCommitsPreparedWhileItWaits_ReadsPreparedOrCommitted()
    {
        // The production path (one batch): its marker statement waits on a lock the test holds on
        // branch_readonly, the branch commits meanwhile; the markers must be read with a snapshot
        // taken after pg_prepared_xacts was.
        var gid = BranchGid.Create(Coordinator, TransactionId.New(), Participant);
        await PrepareBranchAsync(gid);

        await using var locker = await _dataSource.OpenConnectionAsync();
        await using var lockTransaction = await locker.BeginTransactionAsync();
        await locker.ExecuteAsync("LOCK TABLE txcoord.branch_readonly IN ACCESS EXCLUSIVE MODE", transaction: lockTransaction);

        await using var reader = await _dataSource.OpenConnectionAsync();
        var readerPid = reader.ProcessID;
        var read = BranchStore.GetStatusAsync(reader, gid, CancellationToken.None);

        await using var other = await _dataSource.OpenConnectionAsync();
        await Eventually.WaitForAsync(
            () => other.ExecuteScalarAsync<bool>("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = @Pid AND NOT granted)", new { Pid = readerPid }),
            waiting => waiting, TimeSpan.FromSeconds(10), "the status read to wait on the lock");

        await other.ExecuteAsync($"COMMIT PREPARED '{gid.Value}'");
        await lockTransaction.CommitAsync();

        Assert.That(await read, Is.AnyOf(BranchStatus.Prepared, BranchStatus.Committed));
    }

    [Test]
    public async Task Prepare_DatabaseDefaultSynchronousCommitOff_PreparesWithSynchronousCommitOn()
    {
        // With a synchronous standby, a PREPARE under 'off' or 'local' is acknowledged before the
        // standby has it: the Yes vote can vanish on failover. The probe trigger records the
        // setting in force in the branch's transaction when its marker is written, just before PREPARE.
        var database = new NpgsqlConnectionStringBuilder(_connectionString).Database!;
        await using (var admin = await _dataSource.OpenConnectionAsync())
        {
            await admin.ExecuteAsync("""
                CREATE TABLE IF NOT EXISTS sync_probe (gid text PRIMARY KEY, setting text NOT NULL);
                CREATE OR REPLACE FUNCTION sync_probe_record() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO sync_probe (gid, setting) VALUES (NEW.gid, current_setting('synchronous_commit'));
                    RETURN NEW;
                END $$;
                DROP TRIGGER IF EXISTS sync_probe ON txcoord.branch_outcomes;
                CREATE TRIGGER sync_probe AFTER INSERT ON txcoord.branch_outcomes FOR EACH ROW EXECUTE FUNCTION sync_probe_record();
                """);
            await admin.ExecuteAsync($"ALTER DATABASE \"{database}\" SET synchronous_commit = off");
        }

        var gid = BranchGid.Create(Coordinator, TransactionId.New(), Participant);
        await using (var fresh = new NpgsqlConnection(_connectionString))
        {
            await fresh.OpenAsync();
            Assert.That(await fresh.ExecuteScalarAsync<string>("SHOW synchronous_commit"), Is.EqualTo("off"), "the test's premise: the session default is off");
            await using var transaction = await fresh.BeginTransactionAsync();
            await BranchStore.PrepareAsync(fresh, transaction, gid, checkWrote: false, CancellationToken.None);
            await fresh.ExecuteAsync($"COMMIT PREPARED '{gid.Value}'");
        }

        await using var check = await _dataSource.OpenConnectionAsync();
        var setting = await check.ExecuteScalarAsync<string>("SELECT setting FROM sync_probe WHERE gid = @Gid", new { Gid = gid.Value });
        await check.ExecuteAsync($"ALTER DATABASE \"{database}\" RESET synchronous_commit; DROP TRIGGER sync_probe ON txcoord.branch_outcomes");
        Assert.That(setting, Is.EqualTo("on"));
    }

    private async Task PrepareBranchAsync(BranchGid gid)
    {
        await using var connection = await _dataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await BranchStore.PrepareAsync(connection, transaction, gid, checkWrote: false, CancellationToken.None);
    }
}
