using System.Globalization;
using Dapper;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Participants;
using TxCoord.Samples.Bank;
using TxCoord.Tests.Crash.Infrastructure;

namespace TxCoord.Tests.Integration.Infrastructure;

/// <summary>The state of one participant's branch of a transaction, read from its database.</summary>
internal enum BranchFinish
{
    /// <summary>Never prepared and no outcome recorded.</summary>
    None,
    Prepared,
    Committed,
    Aborted,
}

/// <summary>Timings of a <see cref="ProcessCluster"/>'s services: short, so that termination runs in seconds.</summary>
internal sealed record ProcessClusterOptions
{
    public int Participants { get; init; } = 3;
    public TimeSpan DecisionTimeout { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan TerminationTimeout { get; init; } = TimeSpan.FromSeconds(2);
    public TimeSpan CommitTimeout { get; init; } = TimeSpan.FromSeconds(8);
}

/// <summary>
/// Real processes for the termination tests: the built coordinator service
/// (<c>TxCoord.Coordinator.Host</c>) and bank participant services
/// (<c>TxCoord.Samples.Bank.Participant</c>) as child processes over the test RabbitMQ and
/// PostgreSQL, killed with SIGKILL or by their own crash points, and an initiator (the SDK) in the
/// test process. Participant ids sort in the order of <see cref="ParticipantIds"/> (a-, b-, c-...),
/// which is also the order in which they lead termination rounds. Every cluster has its own ids and
/// databases.
/// </summary>
internal sealed class ProcessCluster : IAsyncDisposable
{
    /// <summary>The line every host writes once all its services (the bus included) have started.</summary>
    public const string StartedLine = "Application started";

    /// <summary>The account every transfer of <see cref="BeginTransferAsync"/> debits and credits.</summary>
    private const int Account = 1;

    private const long InitialBalance = 1_000;

    private readonly ProcessClusterOptions _options;
    private readonly string _suffix = Guid.NewGuid().ToString("N")[..8];
    private readonly Dictionary<string, ChildProcess> _processes = [];
    private readonly Dictionary<string, int> _incarnations = [];
    private readonly List<ChildProcess> _exited = [];
    private readonly Dictionary<string, string> _databases = [];
    private IHost? _initiatorHost;

    private ProcessCluster(ProcessClusterOptions options)
    {
        _options = options;
        CoordinatorId = $"c3-{_suffix}";
        ParticipantIds = [.. Enumerable.Range(0, options.Participants).Select(i => $"{(char)('a' + i)}-{_suffix}")];
        LogDirectory = Path.Combine(TestContext.CurrentContext.WorkDirectory, "termination-logs", $"{TestContext.CurrentContext.Test.MethodName}-{_suffix}");
    }

    public string CoordinatorId { get; }

    /// <summary>The participants, in id order: the first leads termination round 1.</summary>
    public IReadOnlyList<string> ParticipantIds { get; }

    public string LogDirectory { get; }

    public string JournalConnectionString { get; private set; } = "";

    public ITransactionInitiator Initiator => _initiatorHost!.Services.GetRequiredService<ITransactionInitiator>();

    public static async Task<ProcessCluster> CreateAsync(ProcessClusterOptions? options = null)
    {
        var cluster = new ProcessCluster(options ?? new ProcessClusterOptions());
        cluster.JournalConnectionString = await TestServers.CreateDatabaseAsync($"pc_{cluster._suffix}_journal");
        foreach (var participant in cluster.ParticipantIds)
        {
            var connectionString = await TestServers.CreateDatabaseAsync($"pc_{cluster._suffix}_{participant[0]}");
            await using var dataSource = NpgsqlDataSource.Create(connectionString);
            await BankSchema.SeedAsync(dataSource, accounts: 3, InitialBalance);
            cluster._databases[participant] = connectionString;
        }

        await cluster.StartInitiatorAsync();
        return cluster;
    }

    /// <summary>Starts the coordinator and every participant, faults armed only where given, and waits until all run.</summary>
    public async Task StartAllAsync(IReadOnlyDictionary<string, string>? coordinatorFaults = null)
    {
        var starting = ParticipantIds.Select(p => StartParticipantAsync(p)).Append(StartCoordinatorAsync(coordinatorFaults));
        await Task.WhenAll(starting);
    }

    public Task<ChildProcess> StartCoordinatorAsync(IReadOnlyDictionary<string, string>? environment = null) =>
        StartAsync(CoordinatorId, Repository.CoordinatorHost, CoordinatorEnvironment(), environment);

    public Task<ChildProcess> StartParticipantAsync(string participant, IReadOnlyDictionary<string, string>? environment = null) =>
        StartAsync(participant, Repository.BankParticipant, ParticipantEnvironment(participant), environment);

    public ChildProcess Process(string name) => _processes[name];

    /// <summary>kill -9.</summary>
    public Task KillAsync(string name) => _processes[name].KillAsync();

    /// <summary>Waits for a process to kill itself at <paramref name="point"/> (exit 137 and the crash point's line).</summary>
    public async Task WaitForCrashAsync(string name, string point, TimeSpan? timeout = null)
    {
        var process = _processes[name];
        var code = await process.WaitForExitAsync(timeout ?? TimeSpan.FromSeconds(60));
        Assert.That(code, Is.EqualTo(ChildProcess.KilledExitCode), $"{process.Name} should have killed itself at {point}.{Environment.NewLine}{process.Tail()}");
        Assert.That(process.Output, Does.Contain($"TXCOORD-CRASH-POINT {point}"), $"{process.Name} died, but not at {point}.{Environment.NewLine}{process.Tail()}");
    }

    /// <summary>
    /// Begins a transfer: account 1 is debited 10 × (n - 1) in the first participant of
    /// <paramref name="order"/> and credited 10 in each of the others, in that order (the order in which
    /// the coordinator then sends Prepare, PreCommit and Commit). Returns the transaction, work done, not committed.
    /// </summary>
    public async Task<IGlobalTransaction> BeginTransferAsync(CommitProtocol protocol, IReadOnlyList<string> order)
    {
        var tx = Initiator.Begin(new TransactionOptions { Protocol = protocol });
        var transferId = tx.Id.Value;
        var first = true;
        foreach (var participant in order)
        {
            WorkResult work = first
                ? await tx.SendAsync(participant, new DebitAccount { TransferId = transferId, AccountId = Account, Amount = 10 * (order.Count - 1) })
                : await tx.SendAsync(participant, new CreditAccount { TransferId = transferId, AccountId = Account, Amount = 10 });
            Assert.That(work.Succeeded, Is.True, $"work at {participant}: {work.Reason}{Environment.NewLine}{Diagnostics()}");
            first = false;
        }

        return tx;
    }

    /// <summary>What each participant's database says of its branch of <paramref name="id"/>, in <see cref="ParticipantIds"/> order.</summary>
    public async Task<BranchFinish[]> BranchesAsync(TransactionId id) =>
        await Task.WhenAll(ParticipantIds.Select(p => BranchAsync(p, id)));

    public async Task<BranchFinish> BranchAsync(string participant, TransactionId id)
    {
        var gid = BranchGid.Create(new CoordinatorId(CoordinatorId), id, new ParticipantId(participant)).Value;
        await using var connection = new NpgsqlConnection(_databases[participant]);
        var (outcome, prepared) = await connection.QuerySingleAsync<(string?, bool)>("""
            SELECT (SELECT outcome FROM txcoord.branch_outcomes WHERE gid = @Gid),
                   EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE gid = @Gid AND database = current_database())
            """, new { Gid = gid });
        return prepared ? BranchFinish.Prepared : outcome switch
        {
            "committed" => BranchFinish.Committed,
            "aborted" => BranchFinish.Aborted,
            _ => BranchFinish.None,
        };
    }

    /// <summary>The 3PC row of <paramref name="participant"/>'s branch of <paramref name="id"/> in <c>txcoord.branch_states</c> (null: no row).</summary>
    public async Task<(string State, int LastElected, int? LastAttempt)?> BranchStateAsync(string participant, TransactionId id)
    {
        var gid = BranchGid.Create(new CoordinatorId(CoordinatorId), id, new ParticipantId(participant)).Value;
        await using var connection = new NpgsqlConnection(_databases[participant]);
        var rows = (await connection.QueryAsync<(string, int, int?)>(
            "SELECT state, last_elected, last_attempt FROM txcoord.branch_states WHERE gid = @Gid", new { Gid = gid })).ToList();
        return rows.Count == 0 ? null : rows[0];
    }

    /// <summary>Waits until no participant's branch of <paramref name="id"/> is prepared and returns their finishes.</summary>
    public async Task<BranchFinish[]> WaitUntilFinishedAsync(TransactionId id, TimeSpan timeout, IEnumerable<string>? participants = null)
    {
        var which = (participants ?? ParticipantIds).ToList();
        var deadline = DateTimeOffset.UtcNow + timeout;
        while (true)
        {
            // A branch finishes with a line in its participant's log: read the databases again
            // when one of them writes (or, at the latest, after a second).
            var watched = which.Where(_processes.ContainsKey).Select(p => _processes[p].NextOutput).ToList();
            var recheck = TimeSpan.FromSeconds(1);
            var anyOutput = watched.Count > 0 ? Task.WhenAny(watched) : Task.Delay(recheck);
            var finishes = await Task.WhenAll(which.Select(p => BranchAsync(p, id)));
            if (finishes.All(f => f is BranchFinish.Committed or BranchFinish.Aborted))
            {
                return finishes;
            }

            if (DateTimeOffset.UtcNow > deadline)
            {
                Assert.Fail($"Timed out after {timeout.TotalSeconds:0} s waiting for the branches of {id} at {string.Join(", ", which)} to finish; " +
                    $"they are {string.Join(", ", finishes)}{Environment.NewLine}{Diagnostics()}");
            }

            await Task.WhenAny(anyOutput, Task.Delay(recheck));
        }
    }

    /// <summary>
    /// The money check: a transfer is applied (its rows in <c>applied_transfers</c>) in every database or
    /// in none, matching <paramref name="committed"/>, and the total over all banks never changes.
    /// </summary>
    public async Task AssertAppliedAsync(TransactionId id, bool committed)
    {
        long total = 0;
        foreach (var participant in ParticipantIds)
        {
            await using var connection = new NpgsqlConnection(_databases[participant]);
            var applied = await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM applied_transfers WHERE transfer_id = @Id", new { Id = id.Value });
            Assert.That(applied, Is.EqualTo(committed ? 1 : 0), $"transfer {id} at {participant}");
            total += await connection.ExecuteScalarAsync<long>("SELECT sum(balance) FROM accounts");
        }

        Assert.That(total, Is.EqualTo(InitialBalance * 3 * ParticipantIds.Count), "the money in all banks together");
    }

    public async Task<long> CountPreparedAsync()
    {
        long total = 0;
        foreach (var connectionString in _databases.Values)
        {
            await using var connection = new NpgsqlConnection(connectionString);
            total += await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()");
        }

        return total;
    }

    /// <summary>The journal's state of <paramref name="id"/> (null: no row).</summary>
    public async Task<string?> JournalStateAsync(TransactionId id)
    {
        await using var connection = new NpgsqlConnection(JournalConnectionString);
        return await connection.ExecuteScalarAsync<string?>("SELECT state FROM txcoord.transactions WHERE transaction_id = @Id", new { Id = id.Value });
    }

    /// <summary>The tail of every process's output, for failure messages.</summary>
    public string Diagnostics() => string.Join(Environment.NewLine, _exited.Concat(_processes.Values).Select(p => p.Tail(30)));

    public async ValueTask DisposeAsync()
    {
        foreach (var process in _processes.Values.Concat(_exited))
        {
            await process.DisposeAsync();
        }

        if (_initiatorHost is { } host)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            await host.StopAsync(timeout.Token);
            host.Dispose();
        }

        // A failed test may leave branches prepared: they would hold slots of max_prepared_transactions shared by every test.
        foreach (var connectionString in _databases.Values)
        {
            await using var connection = new NpgsqlConnection(connectionString);
            foreach (var gid in await connection.QueryAsync<string>("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"))
            {
                if (BranchGid.IsSafe(gid))
                {
                    await connection.ExecuteAsync($"ROLLBACK PREPARED '{gid}'");
                }
            }
        }
    }

    private async Task<ChildProcess> StartAsync(string name, string program, Dictionary<string, string> environment, IReadOnlyDictionary<string, string>? extra)
    {
        if (_processes.TryGetValue(name, out var running))
        {
            if (!running.HasExited)
            {
                throw new InvalidOperationException($"{name} is still running.");
            }

            _exited.Add(running);
        }

        foreach (var (key, value) in extra ?? new Dictionary<string, string>())
        {
            environment[key] = value;
        }

        var incarnation = _incarnations[name] = _incarnations.GetValueOrDefault(name) + 1;
        var process = ChildProcess.Start($"{name}#{incarnation}", program, environment, Path.Combine(LogDirectory, $"{name}.log"));
        _processes[name] = process;
        await process.WaitForOutputAsync(StartedLine, TimeSpan.FromSeconds(90));
        return process;
    }

    private Dictionary<string, string> CoordinatorEnvironment() => new()
    {
        ["ConnectionStrings__Journal"] = JournalConnectionString,
        ["ConnectionStrings__RabbitMq"] = TestServers.RabbitMq.ToString(),
        ["TxCoord__CoordinatorId"] = CoordinatorId,
        ["TxCoord__VoteTimeout"] = "00:00:10",
        ["TxCoord__DefaultTransactionTimeout"] = "00:00:30",
        ["TxCoord__RedriveInitialInterval"] = "00:00:00.300",
        ["TxCoord__RedriveMaxInterval"] = "00:00:01",
        ["ASPNETCORE_URLS"] = "http://127.0.0.1:0",
    };

    private Dictionary<string, string> ParticipantEnvironment(string participant) => new()
    {
        ["Bank__ParticipantId"] = participant,
        ["ConnectionStrings__Bank"] = _databases[participant],
        ["ConnectionStrings__RabbitMq"] = TestServers.RabbitMq.ToString(),
        ["TxCoord__CoordinatorId"] = CoordinatorId,
        ["TxCoord__Participant__DecisionTimeout"] = Format(_options.DecisionTimeout),
        ["TxCoord__Participant__ResolveInterval"] = "00:00:00.300",
        ["TxCoord__Participant__OutcomeQueryTimeout"] = "00:00:01",
        ["TxCoord__Participant__CoordinatorRetryMaxInterval"] = "00:00:02",
        ["TxCoord__Participant__TerminationTimeout"] = Format(_options.TerminationTimeout),
    };

    private async Task StartInitiatorAsync()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], ContentRootPath = TestContext.CurrentContext.TestDirectory });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("MassTransit", LogLevel.Error);
        builder.Services.AddTxCoordInitiator(o =>
        {
            o.CoordinatorId = CoordinatorId;
            o.TransactionTimeout = TimeSpan.FromSeconds(30);
            o.WorkTimeout = TimeSpan.FromSeconds(10);
            o.CommitTimeout = _options.CommitTimeout;
        });
        builder.Services.AddMassTransit(x => x.UsingRabbitMq((_, cfg) => cfg.Host(TestServers.RabbitMq)));
        builder.Services.Configure<MassTransitHostOptions>(o =>
        {
            o.WaitUntilStarted = true;
            o.StartTimeout = TimeSpan.FromSeconds(60);
            o.StopTimeout = TimeSpan.FromSeconds(10);
        });
        _initiatorHost = builder.Build();
        await _initiatorHost.StartAsync();
    }

    private static string Format(TimeSpan value) => value.ToString("c", CultureInfo.InvariantCulture);
}
