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

namespace TxCoord.Tests.Crash.Infrastructure;

/// <summary>The processes of a <see cref="BankSystem"/>.</summary>
internal enum Role
{
    Coordinator,
    BankA,
    BankB,
}

/// <summary>Timings and placement of a <see cref="BankSystem"/>: short, so that failure paths finish in seconds.</summary>
internal sealed record BankSystemOptions
{
    /// <summary>Put the journal on the crash set's PostgreSQL (which tests restart) instead of the stable one.</summary>
    public bool JournalOnCrashServer { get; init; }

    /// <summary>
    /// A fixture's own server set (servers configured unlike the crash set's): the journal, both
    /// banks and the bus all live there. Null: the crash set (and the stable journal server).
    /// </summary>
    public ServiceSet? Services { get; init; }

    /// <summary>
    /// Generous by default: on two cores shared with the other test assemblies, a first
    /// transaction (cold JIT in three processes) can take seconds. Tests that want the timeout
    /// (and expect an abort) shorten it.
    /// </summary>
    public TimeSpan VoteTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Also the branches' timeout: a branch not prepared by then rolls back.</summary>
    public TimeSpan TransactionTimeout { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>An initiator left in doubt is asked again (<see cref="BankSystem.SettleAsync"/>), which is part of what is tested.</summary>
    public TimeSpan CommitTimeout { get; init; } = TimeSpan.FromSeconds(10);
    public TimeSpan DecisionTimeout { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>
    /// Many, so that transfers rarely pick the same account: a branch some test keeps prepared
    /// holds its account's row lock, and a later transfer on that account would wait for it.
    /// </summary>
    public int Accounts { get; init; } = 1_000;

    /// <summary>
    /// Run the services as the roles of a least-privilege deployment (<see cref="LeastPrivilegeRoles"/>)
    /// instead of the superuser; the test's own checks still read as the superuser.
    /// </summary>
    public bool LeastPrivilege { get; init; }

    /// <summary>
    /// Every service speaks TLS to PostgreSQL (SSL Mode=VerifyFull on the crash set's own CA) and
    /// to RabbitMQ (amqps://, the CA trusted through SSL_CERT_FILE); the journal then lives on the
    /// crash set's server, whose CA the services are given.
    /// </summary>
    public bool Tls { get; init; }
    public long InitialBalance { get; init; } = 1_000;
}

/// <summary>
/// One bank system under test, all real: the coordinator service and the two bank participant
/// services as child processes (the built <c>TxCoord.Coordinator.Host</c> and
/// <c>TxCoord.Samples.Bank.Participant</c>, configured as <c>run.sh demo</c> does), over the crash
/// set's RabbitMQ and PostgreSQL, and an initiator (the SDK) in the test process. Ids and
/// databases are fresh per system, so systems never see each other's queues or rows.
/// </summary>
internal sealed class BankSystem : IAsyncDisposable
{
    /// <summary>
    /// The line a bank participant writes once all its services, the bus included, have started
    /// (it waits for the bus); the coordinator service starts its bus in the background and says
    /// <see cref="BusStartedLine"/> when it is up.
    /// </summary>
    public const string StartedLine = "Application started";

    public const string BusStartedLine = "Bus started";

    private static int _systems;
    private readonly BankSystemOptions _options;
    private readonly Dictionary<Role, ChildProcess> _processes = [];
    private readonly Dictionary<Role, int> _incarnations = [];
    private readonly List<ChildProcess> _exited = [];
    private IHost? _initiatorHost;

    private BankSystem(BankSystemOptions options)
    {
        _options = options;
        Suffix = $"{System.Environment.ProcessId % 1000:000}{Interlocked.Increment(ref _systems):00}{Guid.NewGuid().ToString("N")[..5]}";
        CoordinatorId = $"cr-{Suffix}";
        BankA = $"a-{Suffix}";
        BankB = $"b-{Suffix}";
        LogDirectory = Path.Combine(TestContext.CurrentContext.WorkDirectory, "crash-logs", Sanitize(TestContext.CurrentContext.Test.Name) + "-" + Suffix);
    }

    public string Suffix { get; }

    public string CoordinatorId { get; }

    public string BankA { get; }

    public string BankB { get; }

    public string LogDirectory { get; }

    public string JournalConnectionString { get; private set; } = "";

    public string BankAConnectionString { get; private set; } = "";

    public string BankBConnectionString { get; private set; } = "";

    /// <summary>The roles the services log in as, with <see cref="BankSystemOptions.LeastPrivilege"/>; else null.</summary>
    public LeastPrivilegeRoles? Roles { get; private set; }

    /// <summary>The broker users the services connect as, with <see cref="BankSystemOptions.LeastPrivilege"/> (sender authentication on); else null.</summary>
    public BrokerRoles? BrokerUsers { get; private set; }

    public NpgsqlDataSource BankADataSource { get; private set; } = null!;

    public NpgsqlDataSource BankBDataSource { get; private set; } = null!;

    public long InitialTotalA { get; private set; }

    public long InitialTotalB { get; private set; }

    public ITransactionInitiator Initiator => _initiatorHost!.Services.GetRequiredService<ITransactionInitiator>();

    /// <summary>The bus of the test's initiator, to send protocol messages as a peer would.</summary>
    public IBus Bus => _initiatorHost!.Services.GetRequiredService<IBus>();

    public BankSystemOptions Options => _options;

    private Uri RabbitMq => _options.Services?.RabbitMq ?? CrashServices.RabbitMq;

    private string BankServer => _options.Services?.PostgreSql ?? CrashServices.PostgreSql;

    /// <summary>Creates and seeds the databases and starts the initiator; no process runs yet.</summary>
    public static async Task<BankSystem> CreateAsync(BankSystemOptions? options = null)
    {
        var system = new BankSystem(options ?? new BankSystemOptions());
        await system.CreateDatabasesAsync();
        await system.StartInitiatorAsync();
        return system;
    }

    /// <summary>Starts the coordinator and both banks (faults armed only where given) and waits until all three run.</summary>
    public async Task StartAllAsync(
        IReadOnlyDictionary<string, string>? coordinator = null,
        IReadOnlyDictionary<string, string>? bankA = null,
        IReadOnlyDictionary<string, string>? bankB = null)
    {
        var started = new[]
        {
            StartAsync(Role.Coordinator, coordinator),
            StartAsync(Role.BankA, bankA),
            StartAsync(Role.BankB, bankB),
        };
        await Task.WhenAll(started);
    }

    /// <summary>
    /// Starts one process (again) with the given fault variables and, unless told otherwise (a
    /// process meant to die during its start-up), waits until its host has started.
    /// </summary>
    public async Task<ChildProcess> StartAsync(Role role, IReadOnlyDictionary<string, string>? faults = null, bool waitUntilStarted = true)
    {
        if (_processes.TryGetValue(role, out var running) && !running.HasExited)
        {
            throw new InvalidOperationException($"{role} is still running.");
        }

        if (running is not null)
        {
            _exited.Add(running);
        }

        var incarnation = _incarnations[role] = _incarnations.GetValueOrDefault(role) + 1;
        var environment = new Dictionary<string, string>(ProcessEnvironment(role));
        foreach (var (key, value) in faults ?? new Dictionary<string, string>())
        {
            environment[key] = value;
        }

        var name = $"{role}#{incarnation}";
        var program = role == Role.Coordinator ? Repository.CoordinatorHost : Repository.BankParticipant;
        var process = ChildProcess.Start(name, program, environment, Path.Combine(LogDirectory, $"{role}.log"));
        _processes[role] = process;
        if (waitUntilStarted)
        {
            await process.WaitForOutputAsync(role == Role.Coordinator ? BusStartedLine : StartedLine, TimeSpan.FromSeconds(90));
        }

        return process;
    }

    public ChildProcess Process(Role role) => _processes[role];

    /// <summary>
    /// Waits for <paramref name="role"/> to kill itself at its crash point: exit code 137 (SIGKILL)
    /// and the crash point's line on its standard error.
    /// </summary>
    public async Task WaitForCrashAsync(Role role, string point, TimeSpan? timeout = null)
    {
        var process = Process(role);
        var code = await process.WaitForExitAsync(timeout ?? TimeSpan.FromSeconds(60));
        Assert.That(code, Is.EqualTo(ChildProcess.KilledExitCode), $"{process.Name} should have killed itself (SIGKILL) at {point}.{System.Environment.NewLine}{process.Tail()}");
        Assert.That(process.Output, Does.Contain($"TXCOORD-CRASH-POINT {point}"), $"{process.Name} died, but not at {point}.{System.Environment.NewLine}{process.Tail()}");
    }

    /// <summary>One transfer of <paramref name="amount"/> from bank A to bank B, as the demo makes them; the record says what the initiator was told.</summary>
    public async Task<TransferRecord> TransferAsync(long amount = 0, CancellationToken cancellationToken = default)
    {
        var result = await RunTransfersAsync(1, 1, amount, cancellationToken);
        return result.Transfers.Single();
    }

    /// <summary>Runs <paramref name="count"/> transfers, <paramref name="concurrency"/> at a time (none of them meant to be refused).</summary>
    public Task<TransferRunResult> RunTransfersAsync(int count, int concurrency, long amount = 0, CancellationToken cancellationToken = default) =>
        new TransferRunner(Initiator).RunAsync(
            new TransferRunOptions
            {
                Transfers = count,
                Concurrency = concurrency,
                Accounts = _options.Accounts,
                RefusedShare = 0,
                MaxAmount = amount > 0 ? amount : 20,
                DebitParticipant = BankA,
                CreditParticipant = BankB,
            },
            progress: null,
            cancellationToken);

    /// <summary>
    /// The system still works: a transfer commits. Up to three are tried, since on two cores shared
    /// with other test runs a vote can miss a short vote timeout; every one tried is returned, to
    /// be checked with the rest.
    /// </summary>
    public async Task<IReadOnlyList<TransferRecord>> AssertStillCommitsAsync()
    {
        var tried = new List<TransferRecord>();
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var record = await SettleAsync(await TransferAsync());
            tried.Add(record);
            if (record.Outcome == CommitOutcome.Committed)
            {
                return tried;
            }
        }

        Assert.Fail($"no transfer committed after recovery: {string.Join("; ", tried.Select(t => $"{t.Outcome} {t.Reason}"))}{System.Environment.NewLine}{Diagnostics()}");
        return tried;
    }

    /// <summary>What the coordinator says now about a transfer the initiator was left in doubt about.</summary>
    public async Task<TransferRecord> SettleAsync(TransferRecord record)
    {
        if (record.Outcome != CommitOutcome.InDoubt || record.TransactionId is not { } id)
        {
            return record;
        }

        var answer = await Eventually.WaitForAsync(
            () => Initiator.GetOutcomeAsync(id),
            r => r.Outcome != CommitOutcome.InDoubt,
            TimeSpan.FromSeconds(60),
            $"a definite outcome of in-doubt transaction {id}",
            Diagnostics);
        return record with { Outcome = answer.Outcome, Reason = $"in doubt, then {answer.Outcome} when asked again" };
    }

    /// <summary>
    /// The checks after every fault: nothing left prepared in either bank; no open journal entry;
    /// every transfer has one outcome everywhere (both banks, the journal) and it is the one the
    /// initiator was told (in-doubt ones are asked again first); the totals moved by exactly the
    /// applied transfers. Returns the transfers with in-doubt outcomes settled.
    /// </summary>
    public async Task<IReadOnlyList<TransferRecord>> AssertConvergedAsync(IEnumerable<TransferRecord> records)
    {
        await Eventually.WaitForAsync(CountPreparedAsync, n => n == 0, TimeSpan.FromSeconds(90), "no prepared transaction left in either bank", Diagnostics);
        // The last acknowledgements can wait for a re-drive at the back-off's longest interval, after
        // a broker restart for the reconnection too: seen past 60 s once when the suite ran beside a build.
        await Eventually.WaitForAsync(CountOpenJournalEntriesAsync, n => n == 0, TimeSpan.FromSeconds(120), "no open journal entry", Diagnostics);

        var settled = new List<TransferRecord>();
        foreach (var record in records)
        {
            settled.Add(await SettleAsync(record));
        }

        var verification = await BankLedger.VerifyAsync(BankADataSource, BankBDataSource, settled, InitialTotalA, InitialTotalB);
        Assert.That(verification.IsOk, Is.True, $"{verification}{System.Environment.NewLine}{Diagnostics()}");

        foreach (var record in settled.Where(r => r.TransactionId is not null))
        {
            var state = await JournalStateAsync(record.TransactionId!.Value);
            var expected = record.Outcome == CommitOutcome.Committed ? new[] { "committed" } : new[] { null, "aborted" };
            Assert.That(expected, Does.Contain(state),
                $"transaction {record.TransactionId} was reported {record.Outcome} but the journal says '{state ?? "(no row: presumed abort)"}'");
        }

        return settled;
    }

    /// <summary>
    /// Crash-restarts the crash set's PostgreSQL (the banks' server) and drops the test's own
    /// pooled connections to it, which the restart broke.
    /// </summary>
    public async Task RestartBankServerAsync()
    {
        await CrashServices.RestartPostgreSqlAsync("immediate");
        NpgsqlConnection.ClearAllPools();
        BankADataSource.Clear();
        BankBDataSource.Clear();
    }

    /// <summary>
    /// True once neither bank holds a prepared or working branch of <paramref name="count"/>
    /// transactions any more because each bank rolled them back (by timeout, told, or by asking).
    /// </summary>
    public async Task WaitUntilBothBanksRolledBackAsync(int count = 1)
    {
        async Task<long> AbortedAsync(NpgsqlDataSource bank)
        {
            await using var connection = await bank.OpenConnectionAsync();
            return await connection.ExecuteScalarAsync<long>(
                "SELECT count(*) FROM txcoord.branch_outcomes WHERE outcome = 'aborted'");
        }

        await Eventually.WaitForAsync(
            async () => (await AbortedAsync(BankADataSource), await AbortedAsync(BankBDataSource), await CountPreparedAsync()),
            x => x.Item1 >= count && x.Item2 >= count && x.Item3 == 0,
            TimeSpan.FromSeconds(90),
            "both banks to roll their branches back (aborted in A, aborted in B, prepared)",
            Diagnostics);
    }

    public async Task<long> CountPreparedAsync() =>
        await BankLedger.CountPreparedAsync(BankADataSource) + await BankLedger.CountPreparedAsync(BankBDataSource);

    public async Task<long> CountOpenJournalEntriesAsync()
    {
        await using var connection = new NpgsqlConnection(JournalConnectionString);
        return await connection.ExecuteScalarAsync<long>(
            "SELECT count(*) FROM txcoord.transactions WHERE coordinator_id = @CoordinatorId AND state IN ('committing', 'precommitting')",
            new { CoordinatorId });
    }

    public async Task<string?> JournalStateAsync(TransactionId transactionId)
    {
        await using var connection = new NpgsqlConnection(JournalConnectionString);
        return await connection.ExecuteScalarAsync<string?>(
            "SELECT state FROM txcoord.transactions WHERE transaction_id = @Id", new { Id = transactionId.Value });
    }

    /// <summary>The GIDs prepared right now in a bank's database.</summary>
    public static async Task<IReadOnlyList<string>> PreparedGidsAsync(NpgsqlDataSource bank)
    {
        await using var connection = await bank.OpenConnectionAsync();
        return [.. await connection.QueryAsync<string>("SELECT gid FROM pg_prepared_xacts WHERE database = current_database() ORDER BY gid")];
    }

    /// <summary>The tail of every process's output, for failure messages.</summary>
    public string Diagnostics() =>
        string.Join(System.Environment.NewLine, _exited.Concat(_processes.Values).Select(p => p.Tail(25)));

    public async ValueTask DisposeAsync()
    {
        foreach (var process in _processes.Values)
        {
            await process.DisposeAsync();
        }

        if (_initiatorHost is { } host)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            try
            {
                await host.StopAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                // A broker that is down makes the bus slow to stop: the process ends it anyway.
            }

            host.Dispose();
        }

        // A failed test may leave branches prepared: they would hold locks and slots of max_prepared_transactions.
        foreach (var bank in new[] { BankADataSource, BankBDataSource })
        {
            if (bank is null)
            {
                continue;
            }

            try
            {
                await using var connection = await bank.OpenConnectionAsync();
                foreach (var gid in await PreparedGidsAsync(bank))
                {
                    if (BranchGid.IsSafe(gid))
                    {
                        await connection.ExecuteAsync($"ROLLBACK PREPARED '{gid}'");
                    }
                }
            }
            catch (NpgsqlException)
            {
                // The server is being restarted by the failed test: nothing more to do.
            }

            await bank.DisposeAsync();
        }

        if (BrokerUsers is { } brokerUsers)
        {
            await brokerUsers.DeleteAsync();
        }
    }

    private Dictionary<string, string> ProcessEnvironment(Role role)
    {
        var environment = ProcessEnvironmentWithoutTls(role);
        if (_options.Tls)
        {
            // The run's CA is the only one these processes trust: nothing else is needed here.
            environment["SSL_CERT_FILE"] = CrashServices.TlsCertificateAuthority;
        }

        return environment;
    }

    private Dictionary<string, string> ProcessEnvironmentWithoutTls(Role role)
    {
        var rabbitMq = BrokerUri(_options.Tls ? CrashServices.RabbitMqTls : RabbitMq, BrokerUsers is null ? null : role == Role.Coordinator ? BrokerUsers.Coordinator : role == Role.BankA ? BrokerUsers.BankA : BrokerUsers.BankB).ToString();
        var environment = role == Role.Coordinator ? CoordinatorEnvironment(rabbitMq) : BankEnvironment(role, rabbitMq);
        if (BrokerUsers is { } users)
        {
            environment["TxCoord__Security__SenderAuthentication"] = "BrokerUser";
            environment[$"TxCoord__Security__Coordinators__{CoordinatorId}"] = users.Coordinator;
            environment[$"TxCoord__Security__Participants__{BankA}"] = users.BankA;
            environment[$"TxCoord__Security__Participants__{BankB}"] = users.BankB;
        }

        return environment;
    }

    /// <summary><paramref name="broker"/> with <paramref name="user"/>'s credentials (unchanged when null).</summary>
    private static Uri BrokerUri(Uri broker, string? user) =>
        user is null ? broker : new UriBuilder(broker) { UserName = user, Password = BrokerRoles.PasswordOf(user) }.Uri;

    private Dictionary<string, string> CoordinatorEnvironment(string rabbitMq)
    {
        {
            return new()
            {
                ["ConnectionStrings__Journal"] = ServiceConnectionString(JournalConnectionString, Roles?.Coordinator),
                ["ConnectionStrings__RabbitMq"] = rabbitMq,
                ["TxCoord__CoordinatorId"] = CoordinatorId,
                ["TxCoord__VoteTimeout"] = Format(_options.VoteTimeout),
                ["TxCoord__DefaultTransactionTimeout"] = Format(_options.TransactionTimeout * 2),
                ["TxCoord__RedriveInitialInterval"] = "00:00:00.300",
                ["TxCoord__RedriveMaxInterval"] = "00:00:01",
                ["ASPNETCORE_URLS"] = "http://127.0.0.1:0",
            };
        }
    }

    private Dictionary<string, string> BankEnvironment(Role role, string rabbitMq)
    {
        return new()
        {
            ["Bank__ParticipantId"] = role == Role.BankA ? BankA : BankB,
            ["ConnectionStrings__Bank"] = ServiceBankConnectionString(role),
            ["ConnectionStrings__RabbitMq"] = rabbitMq,
            ["TxCoord__CoordinatorId"] = CoordinatorId,
            ["TxCoord__Participant__DecisionTimeout"] = Format(_options.DecisionTimeout),
            ["TxCoord__Participant__ResolveInterval"] = "00:00:00.300",
            ["TxCoord__Participant__OutcomeQueryTimeout"] = "00:00:02",
            ["TxCoord__Participant__CoordinatorRetryMaxInterval"] = "00:00:02",
        };
    }

    /// <summary>The connection string a bank's service uses: its own role's under least privilege.</summary>
    public string ServiceBankConnectionString(Role role) =>
        ServiceConnectionString(role == Role.BankA ? BankAConnectionString : BankBConnectionString, Roles is null ? null : role == Role.BankA ? Roles.BankA : Roles.BankB);

    /// <summary>How a service connects: as its own role under least privilege, over verified TLS with <see cref="BankSystemOptions.Tls"/>.</summary>
    private string ServiceConnectionString(string connectionString, string? role)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        if (role is not null)
        {
            builder.Username = role;
        }

        if (_options.Tls)
        {
            // The certificate names localhost (and 127.0.0.1): VerifyFull checks the name too.
            builder.Host = "localhost";
            builder.SslMode = SslMode.VerifyFull;
            builder.RootCertificate = CrashServices.TlsCertificateAuthority;
        }

        return builder.ConnectionString;
    }

    private async Task CreateDatabasesAsync()
    {
        var journalServer = _options.Services?.PostgreSql
            ?? (_options.JournalOnCrashServer || _options.Tls ? CrashServices.PostgreSql : CrashServices.StablePostgreSql);
        JournalConnectionString = await CrashServices.CreateDatabaseAsync(journalServer, $"crash_{Suffix}_journal");
        BankAConnectionString = await CrashServices.CreateDatabaseAsync(BankServer, $"crash_{Suffix}_a");
        BankBConnectionString = await CrashServices.CreateDatabaseAsync(BankServer, $"crash_{Suffix}_b");
        BankADataSource = NpgsqlDataSource.Create(BankAConnectionString);
        BankBDataSource = NpgsqlDataSource.Create(BankBConnectionString);
        if (_options.LeastPrivilege)
        {
            Roles = LeastPrivilegeRoles.For(Suffix);
            await Roles.ApplyAsync(JournalConnectionString, BankAConnectionString, BankBConnectionString);
            BrokerUsers = BrokerRoles.For(Suffix);
            await BrokerUsers.ApplyAsync(CoordinatorId, BankA, BankB);

            // Seeded as each bank's role, so that its tables are its own.
            await using var seedA = NpgsqlDataSource.Create(ServiceBankConnectionString(Role.BankA));
            await using var seedB = NpgsqlDataSource.Create(ServiceBankConnectionString(Role.BankB));
            await BankSchema.SeedAsync(seedA, _options.Accounts, _options.InitialBalance);
            await BankSchema.SeedAsync(seedB, _options.Accounts, _options.InitialBalance);
        }
        else
        {
            await BankSchema.SeedAsync(BankADataSource, _options.Accounts, _options.InitialBalance);
            await BankSchema.SeedAsync(BankBDataSource, _options.Accounts, _options.InitialBalance);
        }

        InitialTotalA = await BankLedger.TotalBalanceAsync(BankADataSource);
        InitialTotalB = await BankLedger.TotalBalanceAsync(BankBDataSource);
    }

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
            o.TransactionTimeout = _options.TransactionTimeout;
            o.WorkTimeout = TimeSpan.FromSeconds(15);
            o.CommitTimeout = _options.CommitTimeout;
            if (BrokerUsers is { } users)
            {
                o.Security.SenderAuthentication = SenderAuthentication.BrokerUser;
                o.Security.Coordinators[CoordinatorId] = users.Coordinator;
                o.Security.Participants[BankA] = users.BankA;
                o.Security.Participants[BankB] = users.BankB;
            }
        });
        builder.Services.AddMassTransit(x => x.UsingRabbitMq((context, cfg) =>
        {
            cfg.Host(BrokerUri(RabbitMq, BrokerUsers?.Initiator));
            cfg.ConfigureTxCoordInitiator(context);
        }));
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

    private static string Sanitize(string name) =>
        new([.. name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_').Take(80)]);
}
