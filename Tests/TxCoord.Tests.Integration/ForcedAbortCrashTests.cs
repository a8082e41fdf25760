using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Dapper;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Coordinator;
using TxCoord.Coordinator.Journal;
using TxCoord.Coordinator.Runtime;
using TxCoord.Participants.PostgreSql;

namespace TxCoord.Tests.Integration;

/// <summary>
/// Rows someone has been told about survive a crash of their PostgreSQL right after the answer.
/// Each test runs its own PostgreSQL (initdb in a temporary directory) with a 10 s WAL writer
/// delay, so an unforced commit is still unflushed when <c>pg_ctl stop -m immediate</c> kills it:
/// the test fails deterministically whenever the row was written unforced. Run under
/// <c>flock /tmp/txcoord-crash.lock</c> with the other tests that stop PostgreSQL.
/// </summary>
[NonParallelizable]
public sealed class ForcedAbortCrashTests
{
    private string _directory = null!;
    private int _port;

    private string DataDirectory => Path.Combine(_directory, "data");

    private string ConnectionString => $"Host=127.0.0.1;Port={_port};Username=postgres;Pooling=false";

    [SetUp]
    public async Task StartServerAsync()
    {
        // Like the crash tests' PostgresCluster (Tests/TxCoord.Tests.Crash), which this project cannot reference.
        _directory = Path.Combine(Path.GetTempPath(), $"txcoord-forced-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_directory);
        _port = FreePort();
        await RunAsync("chmod", "755", _directory);
        if (Environment.UserName == "root")
        {
            await RunAsync("chown", "postgres:", _directory);
        }

        await RunPgAsync("initdb", "-D", DataDirectory, "--auth=trust", "-U", "postgres", "--locale=C", "--encoding=UTF8", "-N");
        await File.AppendAllTextAsync(Path.Combine(DataDirectory, "postgresql.conf"),
            $"port = {_port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{_directory}'\nmax_prepared_transactions = 10\nwal_writer_delay = 10s\nfsync = on\nsynchronous_commit = on\n");
        await StartAsync();
    }

    [TearDown]
    public async Task StopServerAsync()
    {
        try
        {
            await RunPgAsync("pg_ctl", "-D", DataDirectory, "-m", "immediate", "-w", "stop");
        }
        finally
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    [Test]
    public async Task PresumedAbortToldToAPreparedAsker_JournalServerCrashesRightAfter_AbortRowSurvives()
    {
        await using (var journal = new PostgresTransactionJournal(ConnectionString))
        {
            await journal.EnsureSchemaAsync(CancellationToken.None);
        }

        var id = TransactionId.New();
        TransactionOutcome answer;
        await using (var journal = new PostgresTransactionJournal(ConnectionString))
        {
            var runtime = new CoordinatorRuntime(
                Microsoft.Extensions.Options.Options.Create(new CoordinatorOptions { CoordinatorId = "forced" }),
                journal, new NoTransport(), TimeProvider.System, NullLogger<CoordinatorRuntime>.Instance);
            answer = await runtime.GetOutcomeAsync(
                new GetTransactionOutcome { TransactionId = id, Participant = new ParticipantId("bank-a") }, CancellationToken.None);
        }

        Assert.That(answer, Is.EqualTo(TransactionOutcome.Aborted));
        await CrashAndRestartAsync();

        await using var connection = new NpgsqlConnection(ConnectionString);
        var state = await connection.ExecuteScalarAsync<string?>(
            "SELECT state FROM txcoord.transactions WHERE transaction_id = @Id", new { Id = id.Value });
        Assert.That(state, Is.EqualTo("aborted"), "the presumed abort told to a prepared participant was lost in the crash: a later commit could be decided");
    }

    /// <summary>
    /// The coordinator's own abort of a transaction it holds (here a rollback request; a No vote, the
    /// vote timeout and the deadline take the same path): once AbortBranch has gone out, the abort row
    /// must survive a crash of the journal's server. Lost, a repeated commit request would begin the
    /// transaction again with no row, and the first attempt's late Yes votes could commit the
    /// participants that did not roll back yet (found by the 2PC model with -DMAXJCRASH).
    /// </summary>
    [Test]
    public async Task AbortOfAHeldTransaction_JournalServerCrashesAfterAbortBranchWasSent_AbortRowSurvives()
    {
        await using (var journal = new PostgresTransactionJournal(ConnectionString))
        {
            await journal.EnsureSchemaAsync(CancellationToken.None);
        }

        var id = TransactionId.New();
        var transport = new RecordingTransport();
        await using (var journal = new PostgresTransactionJournal(ConnectionString))
        {
            var runtime = new CoordinatorRuntime(
                Microsoft.Extensions.Options.Options.Create(new CoordinatorOptions { CoordinatorId = "forced" }),
                journal, transport, TimeProvider.System, NullLogger<CoordinatorRuntime>.Instance);
            ParticipantId[] participants = [new("bank-a"), new("bank-b")];
            await runtime.CommitAsync(new CommitTransaction { TransactionId = id, Participants = participants }, null, CancellationToken.None);
            await runtime.RollbackAsync(new RollbackTransaction { TransactionId = id, Participants = participants, Reason = "customer cancelled" }, null, CancellationToken.None);
        }

        Assert.That(transport.Sent.OfType<AbortBranch>().Count(a => a.TransactionId == id), Is.EqualTo(2), "AbortBranch went to both participants");
        await CrashAndRestartAsync();

        await using var connection = new NpgsqlConnection(ConnectionString);
        var state = await connection.ExecuteScalarAsync<string?>(
            "SELECT state FROM txcoord.transactions WHERE transaction_id = @Id", new { Id = id.Value });
        Assert.That(state, Is.EqualTo("aborted"), "the abort told to the participants was lost in the crash: a repeated commit request could commit some of them");
    }

    [Test]
    public async Task FenceToldToATerminationPeer_ParticipantServerCrashesRightAfter_FenceSurvives()
    {
        await using (var dataSource = NpgsqlDataSource.Create(ConnectionString))
        {
            var store = new BranchStore(dataSource);
            await store.InitializeAsync(CancellationToken.None);
        }

        var gid = BranchGid.Create(new CoordinatorId("forced"), TransactionId.New(), new ParticipantId("bank-a"));
        await using (var dataSource = NpgsqlDataSource.Create(ConnectionString))
        {
            // What termination does for an unknown branch before it answers Aborted (FinalStatusOrFenceAsync).
            await new BranchStore(dataSource).RecordAbortedAsync(gid, CancellationToken.None, forced: true);
        }

        await CrashAndRestartAsync();

        await using (var dataSource = NpgsqlDataSource.Create(ConnectionString))
        {
            Assert.That(await new BranchStore(dataSource).GetStatusAsync(gid, CancellationToken.None), Is.EqualTo(BranchStatus.Aborted),
                "the fence reported to a peer was lost in the crash: the late work could still prepare");
        }
    }

    private async Task CrashAndRestartAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await RunPgAsync("pg_ctl", "-D", DataDirectory, "-m", "immediate", "-w", "stop");
        await StartAsync();
    }

    private Task StartAsync() =>
        RunPgAsync("pg_ctl", "-D", DataDirectory, "-l", Path.Combine(_directory, "postgresql.log"), "-w", "-t", "60", "start");

    private static Task RunPgAsync(string program, params string[] arguments)
    {
        var bin = Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin"))
            .Where(d => File.Exists(Path.Combine(d, "initdb"))).OrderBy(d => d, StringComparer.Ordinal).Last();
        return Environment.UserName == "root"
            ? RunAsync("runuser", ["-u", "postgres", "--", Path.Combine(bin, program), .. arguments])
            : RunAsync(Path.Combine(bin, program), arguments);
    }

    private static async Task RunAsync(string program, params string[] arguments)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = "/" };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{program} did not start");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} failed ({process.ExitCode}): {await output}{await error}");
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private sealed class RecordingTransport : ICoordinatorTransport
    {
        public System.Collections.Concurrent.ConcurrentQueue<object> Sent { get; } = new();

        public Task SendToParticipantAsync<T>(ParticipantId participant, T message, CancellationToken cancellationToken)
            where T : class
        {
            Sent.Enqueue(message);
            return Task.CompletedTask;
        }

        public Task ReplyAsync(ReplyTarget target, TransactionCompleted message, CancellationToken cancellationToken) => Task.CompletedTask;
    }

    private sealed class NoTransport : ICoordinatorTransport
    {
        public Task SendToParticipantAsync<T>(ParticipantId participant, T message, CancellationToken cancellationToken)
            where T : class => throw new InvalidOperationException("a presumed abort sends nothing");

        public Task ReplyAsync(ReplyTarget target, TransactionCompleted message, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("a presumed abort replies to nobody");
    }
}
