using System.Globalization;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TxCoord.Bench.Measurement;
using TxCoord.Contracts;
using TxCoord.Coordinator;
using TxCoord.Participants;
using TxCoord.Samples.Bank;

namespace TxCoord.Bench.Variants;

/// <summary>One transfer through TxCoord: work at both banks at once, then commit through the coordinator.</summary>
internal static class TxCoordTransfer
{
    public const string DebitParticipant = BankReadiness.DefaultDebitParticipant;

    public const string CreditParticipant = BankReadiness.DefaultCreditParticipant;

    /// <param name="earlyPrepare">Each bank prepares right after its work (early prepare, 2PC): no Prepare round.</param>
    public static async Task<TransferResult> RunAsync(
        ITransactionInitiator initiator, CommitProtocol protocol, Transfer transfer, CancellationToken cancellationToken, bool earlyPrepare = false)
    {
        var transaction = initiator.Begin(new TransactionOptions
        {
            Protocol = protocol,
            Participants = earlyPrepare ? [DebitParticipant, CreditParticipant] : null,
        });
        var commitAsked = false;
        try
        {
            var results = await Task.WhenAll(
                transaction.SendAsync(
                    DebitParticipant, new DebitAccount { TransferId = transfer.TransferId, AccountId = transfer.From, Amount = transfer.Amount }, earlyPrepare, cancellationToken),
                transaction.SendAsync(
                    CreditParticipant, new CreditAccount { TransferId = transfer.TransferId, AccountId = transfer.To, Amount = transfer.Amount }, earlyPrepare, cancellationToken));

            // After a refusal this rolls back: the refusing branch is gone, the transaction can only abort.
            commitAsked = true;
            var result = await transaction.CommitAsync(cancellationToken);
            var refusal = results.FirstOrDefault(r => !r.Succeeded)?.Reason;
            return result.Outcome switch
            {
                CommitOutcome.Committed => TransferResult.Committed,
                CommitOutcome.Aborted => new TransferResult(TransferOutcome.Aborted, refusal ?? result.Reason),
                _ => new TransferResult(TransferOutcome.InDoubt, result.Reason),
            };
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            if (commitAsked)
            {
                return new TransferResult(TransferOutcome.InDoubt, $"commit failed: {e.GetType().Name}: {e.Message}");
            }

            await transaction.DisposeAsync();
            return new TransferResult(TransferOutcome.Aborted, $"{e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>A host for the initiator side (or everything, embedded), with logging at Warning.</summary>
    public static HostApplicationBuilder CreateHostBuilder()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("MassTransit", LogLevel.Error);
        builder.Services.Configure<MassTransitHostOptions>(o =>
        {
            o.WaitUntilStarted = true;
            o.StartTimeout = TimeSpan.FromSeconds(60);
            o.StopTimeout = TimeSpan.FromSeconds(20);
        });
        return builder;
    }

    /// <summary>Waits until the coordinator and both banks answer (they may still be starting).</summary>
    public static async Task WaitUntilReadyAsync(ITransactionInitiator initiator, TimeSpan timeout, CancellationToken cancellationToken)
    {
        await BankReadiness.WaitForCoordinatorAsync(initiator, timeout, cancellationToken: cancellationToken);
        await BankReadiness.WaitForParticipantsAsync(initiator, [DebitParticipant, CreditParticipant], timeout, cancellationToken: cancellationToken);
    }
}

/// <summary>
/// The product as it is deployed: the coordinator service (Coordinator.Host) and the two bank
/// participant services (samples/Bank participant) as separate processes on RabbitMQ, like
/// <c>./run.sh demo</c> runs them, and the SDK initiator in the benchmark process. B3 and B4 share it.
/// </summary>
internal sealed class BusCluster(BenchEnvironment environment, InProcessCounters counters) : IAsyncDisposable
{
    public const string CoordinatorId = "bench";

    /// <summary>The coordinator service's HTTP endpoint (health, dashboard): a free port of the system's choosing, never a clash.</summary>
    public const string CoordinatorUrls = "http://127.0.0.1:0";

    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(90);

    private readonly List<ServiceProcess> _processes = [];
    private readonly BenchSenderAuthentication? _auth = BenchSenderAuthentication.FromEnvironment(environment);
    private IHost? _initiatorHost;
    private Task? _started;

    public ITransactionInitiator Initiator => _initiatorHost?.Services.GetRequiredService<ITransactionInitiator>()
        ?? throw new InvalidOperationException("the cluster is not started");

    public IReadOnlyList<MeasuredProcess> Processes => [.. _processes.Select(p => new MeasuredProcess(p.Name.StartsWith("bank", StringComparison.Ordinal) ? "participants" : p.Name, p.ProcessId))];

    public int? CoordinatorProcessId => _processes.FirstOrDefault(p => p.Name == "coordinator")?.ProcessId;

    /// <summary>Starts everything once; later calls wait for the same start.</summary>
    public Task StartAsync(CancellationToken cancellationToken) => _started ??= StartOnceAsync(cancellationToken);

    /// <summary>Throws, with the log's tail, when a service process has died.</summary>
    public void EnsureAlive()
    {
        foreach (var process in _processes.Where(p => p.HasExited))
        {
            throw new InvalidOperationException($"the {process.Name} process exited (log {process.LogPath}):{Environment.NewLine}{process.LogTail()}");
        }
    }

    private async Task StartOnceAsync(CancellationToken cancellationToken)
    {
        var rabbit = environment.RabbitMq.ToString();
        if (_auth is not null)
        {
            await _auth.CreateUsersAsync();
        }

        var coordinatorSettings = new Dictionary<string, string>
        {
            ["ConnectionStrings__Journal"] = environment.Database(BenchEnvironment.Journal),
            ["ConnectionStrings__RabbitMq"] = _auth?.UriFor("coordinator").ToString() ?? rabbit,
            ["TxCoord__CoordinatorId"] = CoordinatorId,
            ["ASPNETCORE_URLS"] = CoordinatorUrls,
        };
        foreach (var (key, value) in _auth?.Settings(ownParticipant: null) ?? [])
        {
            coordinatorSettings[key] = value;
        }

        _processes.Add(ServiceProcess.Start(
            "coordinator",
            environment.BuiltDll("Coordinator/TxCoord.Coordinator.Host", "TxCoord.Coordinator.Host"),
            coordinatorSettings,
            environment.LogDirectory));
        foreach (var (participant, database) in new[] { (TxCoordTransfer.DebitParticipant, BenchEnvironment.BankA), (TxCoordTransfer.CreditParticipant, BenchEnvironment.BankB) })
        {
            var participantSettings = new Dictionary<string, string>
            {
                ["Bank__ParticipantId"] = participant,
                ["ConnectionStrings__Bank"] = environment.Database(database),
                ["ConnectionStrings__RabbitMq"] = _auth?.UriFor(participant).ToString() ?? rabbit,
            };
            foreach (var (key, value) in _auth?.Settings(participant) ?? [])
            {
                participantSettings[key] = value;
            }

            _processes.Add(ServiceProcess.Start(
                participant,
                environment.BuiltDll("samples/Bank/TxCoord.Samples.Bank.Participant", "TxCoord.Samples.Bank.Participant"),
                participantSettings,
                environment.LogDirectory));
        }

        var builder = TxCoordTransfer.CreateHostBuilder();
        builder.Services.AddTxCoordInitiator(o =>
        {
            o.CoordinatorId = CoordinatorId;
            if (_auth is not null)
            {
                BenchSenderAuthentication.ConfigureInitiator(o.Security);
            }
        });
        builder.Services.AddMassTransit(bus => bus.UsingRabbitMq((context, rabbitMq) =>
        {
            rabbitMq.Host(_auth?.UriFor("initiator") ?? environment.RabbitMq, "txcoord-bench-initiator", _ => { });
            rabbitMq.ConfigureTxCoordInitiator(context);
        }));
        _initiatorHost = builder.Build();
        await _initiatorHost.StartAsync(cancellationToken);
        counters.Observe(_initiatorHost.Services.GetRequiredService<IBus>());

        using var ready = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var readiness = TxCoordTransfer.WaitUntilReadyAsync(Initiator, ReadyTimeout, ready.Token);
        while (!readiness.IsCompleted)
        {
            if (_processes.Any(p => p.HasExited))
            {
                await ready.CancelAsync();
                EnsureAlive();
            }

            await Task.WhenAny(readiness, Task.Delay(200, cancellationToken));
        }

        await readiness;
    }

    public async ValueTask DisposeAsync()
    {
        if (_initiatorHost is { } host)
        {
            await host.StopAsync(CancellationToken.None);
            host.Dispose();
        }

        foreach (var process in _processes)
        {
            await process.DisposeAsync();
        }

        if (_auth is not null)
        {
            await _auth.DeleteUsersAsync();
        }
    }
}

/// <summary>B3 (2PC), B3p (2PC with early prepare) and B4 (3PC): TxCoord through the coordinator service over RabbitMQ.</summary>
internal sealed class BusVariant(BusCluster cluster, CommitProtocol protocol, bool earlyPrepare = false) : IVariant
{
    public string Id => protocol == CommitProtocol.TwoPhase ? earlyPrepare ? "B3p" : "B3" : "B4";

    public string Description => protocol == CommitProtocol.TwoPhase
        ? earlyPrepare
            ? "TxCoord 2PC with early prepare (work and prepare in one message), same services as B3"
            : "TxCoord 2PC: coordinator service + 2 bank participant services over RabbitMQ, SDK initiator"
        : "TxCoord 3PC over RabbitMQ, same services as B3";

    public AppliedRows Rows => AppliedRows.DebitInACreditInB;

    public IReadOnlyList<MeasuredProcess> Processes => cluster.Processes;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await cluster.StartAsync(cancellationToken);
        if (protocol == CommitProtocol.TwoPhase)
        {
            return;
        }

        // Is the protocol there? One real transfer says it; nothing is assumed.
        var probe = await TxCoordTransfer.RunAsync(cluster.Initiator, protocol, new Transfer(Guid.CreateVersion7(), 1, 1, 1), cancellationToken);
        if (probe.Outcome != TransferOutcome.Committed)
        {
            var reason = probe.Reason ?? probe.Outcome.ToString();
            throw new VariantUnavailableException(reason.Contains("not supported", StringComparison.OrdinalIgnoreCase)
                ? $"3PC not available: {reason}"
                : $"3PC probe transfer ended {probe.Outcome}: {reason}");
        }
    }

    public Task<TransferResult> TransferAsync(Transfer transfer, CancellationToken cancellationToken) =>
        TxCoordTransfer.RunAsync(cluster.Initiator, protocol, transfer, cancellationToken, earlyPrepare);

    /// <summary>The cluster is shared with the other protocol's variant: the program stops it.</summary>
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>
/// B3e: TxCoord embedded: coordinator, both bank participants and the initiator in this process,
/// over MassTransit's in-memory transport. The same journal and databases as B3: the difference is the broker.
/// </summary>
internal sealed class EmbeddedVariant(BenchEnvironment environment, InProcessCounters counters, bool earlyPrepare = false) : IVariant
{
    public const string CoordinatorId = "bench-e";

    private IHost? _host;

    public string Id => earlyPrepare ? "B3ep" : "B3e";

    public string Description => earlyPrepare
        ? "TxCoord 2PC embedded with early prepare (work and prepare in one message)"
        : "TxCoord 2PC embedded: coordinator + participants + initiator in one process, in-memory transport";

    public AppliedRows Rows => AppliedRows.DebitInACreditInB;

    public IReadOnlyList<MeasuredProcess> Processes => [];

    public IBus Bus => _host?.Services.GetRequiredService<IBus>() ?? throw new InvalidOperationException("not started");

    private ITransactionInitiator Initiator => _host?.Services.GetRequiredService<ITransactionInitiator>() ?? throw new InvalidOperationException("not started");

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var builder = TxCoordTransfer.CreateHostBuilder();
        builder.Services.AddTxCoordCoordinator(o =>
        {
            o.CoordinatorId = CoordinatorId;
            o.JournalConnectionString = environment.Database(BenchEnvironment.Journal);
            // The same variable the coordinator service reads, so one setting compares B3 and B3e.
            if (TimeSpan.TryParse(Environment.GetEnvironmentVariable("TxCoord__BatchWindow"), CultureInfo.InvariantCulture, out var window))
            {
                o.BatchWindow = window;
            }
        });
        builder.Services.AddBankParticipant(TxCoordTransfer.DebitParticipant, environment.Database(BenchEnvironment.BankA));
        builder.Services.AddBankParticipant(TxCoordTransfer.CreditParticipant, environment.Database(BenchEnvironment.BankB));
        builder.Services.AddTxCoordInitiator(o => o.CoordinatorId = CoordinatorId);
        builder.Services.AddMassTransit(bus => bus.UsingInMemory((context, cfg) =>
        {
            cfg.ConfigureTxCoordCoordinatorEndpoint(context);
            cfg.ConfigureTxCoordParticipantEndpoints(context);
        }));
        _host = builder.Build();
        await _host.StartAsync(cancellationToken);
        counters.Observe(Bus);
        await TxCoordTransfer.WaitUntilReadyAsync(Initiator, TimeSpan.FromSeconds(60), cancellationToken);
    }

    public Task<TransferResult> TransferAsync(Transfer transfer, CancellationToken cancellationToken) =>
        TxCoordTransfer.RunAsync(Initiator, CommitProtocol.TwoPhase, transfer, cancellationToken, earlyPrepare);

    public async ValueTask DisposeAsync()
    {
        if (_host is { } host)
        {
            await host.StopAsync(CancellationToken.None);
            host.Dispose();
        }
    }
}
