using Dapper;
using TxCoord.Contracts;
using TxCoord.Faults;
using TxCoord.Participants;
using TxCoord.Tests.Crash.Infrastructure;

namespace TxCoord.Tests.Crash;

/// <summary>
/// RELIABILITY.md's last message fault: a handler slower than the broker's consumer timeout. On
/// a RabbitMQ of its own (mode <c>slowack</c> of scripts/services.sh) whose
/// <c>consumer_timeout</c> is <see cref="ConsumerTimeout"/> and whose channels check it every
/// <see cref="ChannelTick"/> (<c>channel_tick_interval</c>, 60 s by default in RabbitMQ 3.10, so a
/// short test needs both), bank A holds one delivery unacknowledged too long. What happens (seen
/// here, RabbitMQ 3.10.8 and MassTransit 8.5.12): the broker closes the channel
/// (PRECONDITION_FAILED) and requeues the delivery; MassTransit cancels the running handler's
/// token, waits for it to return, then opens a new channel and the message comes back flagged
/// redelivered, about a second later. No redelivery overlaps the slow handler, but a handler that
/// ignores its token holds the whole endpoint until it returns; its acknowledgement is then lost
/// ("Consumer Channel Shutdown"). The participant says what happened in its log (event ids
/// 2400-2403). A Prepare or work message stopped before its handler ran is simply handled again;
/// a work handler stopped half-way rolls its branch back, so its redelivery is refused and the
/// transfer aborts. Either way: one outcome everywhere, applied at most once, nothing prepared,
/// and the participant keeps working.
/// </summary>
[Category("Crash")]
[Parallelizable(ParallelScope.Children)]
public sealed class ConsumerTimeoutTests
{
    private static readonly TimeSpan ConsumerTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan ChannelTick = TimeSpan.FromMilliseconds(500);

    /// <summary>How long the bus fault seam holds a delivery unacknowledged: well past the consumer timeout and a tick.</summary>
    private static readonly TimeSpan SlowHandler = TimeSpan.FromSeconds(10);

    private ServiceSet _services = null!;

    [OneTimeSetUp]
    public async Task StartServicesAsync()
    {
        _services = new ServiceSet("slowack", new Dictionary<string, string>
        {
            ["TXCOORD_RABBITMQ_CONSUMER_TIMEOUT_MS"] = Milliseconds(ConsumerTimeout),
            ["TXCOORD_RABBITMQ_CHANNEL_TICK_MS"] = Milliseconds(ChannelTick),
        });
        await _services.StartAsync();
    }

    [OneTimeTearDown]
    public async Task StopServicesAsync()
    {
        if (_services is not null)
        {
            await _services.StopAsync();
        }
    }

    [Test]
    public Task MF12_WorkMessageHeldPastTheConsumerTimeout_StoppedRedeliveredAppliedOnceAndCommitted() =>
        RunAsync(BusFaults.Delay, "DebitAccount", Stopped);

    [Test]
    public Task MF12_PrepareHeldPastTheConsumerTimeout_StoppedRedeliveredAndTheTransferCommits() =>
        RunAsync(BusFaults.Delay, nameof(PrepareBranch), Stopped);

    /// <summary>The late acknowledgement: the handler committed, then held on ignoring its token; the redelivery commits again, harmlessly.</summary>
    [Test]
    public Task MF12_CommitHandlerIgnoringItsTokenPastTheConsumerTimeout_ItsAckIsLostAndTheRedeliveryIsHarmless() =>
        RunAsync(BusFaults.Stall, nameof(CommitBranch), FinishedLate);

    [Test]
    public async Task MF12_WorkStatementBlockedPastTheConsumerTimeout_TheBranchRollsBackAndTheTransferAbortsEverywhere()
    {
        await using var system = await BankSystem.CreateAsync(new BankSystemOptions { Services = _services });
        try
        {
            await system.StartAllAsync();

            // The test's own session holds bank A's accounts: the debit's UPDATE waits for it inside
            // the real work handler, with the delivery unacknowledged, until the broker gives up.
            await using var locker = await system.BankADataSource.OpenConnectionAsync();
            await using var lockTransaction = await locker.BeginTransactionAsync();
            await locker.ExecuteAsync("LOCK TABLE accounts IN SHARE MODE", transaction: lockTransaction);
            var transfer = system.TransferAsync();

            // The channel closes, MassTransit cancels the handler (Npgsql cancels the waiting
            // statement), the branch rolls back; the redelivered DebitAccount is refused.
            var bankA = system.Process(Role.BankA);
            await bankA.WaitForOutputAsync("stopped handling DebitAccount", TimeSpan.FromSeconds(60));
            await bankA.WaitForOutputAsync("work handler was stopped half-way", TimeSpan.FromSeconds(60));
            await bankA.WaitForOutputAsync("got DebitAccount ", TimeSpan.FromSeconds(60));
            await bankA.WaitForOutputAsync("refused the work: the transaction's branch is already aborted", TimeSpan.FromSeconds(60));
            await lockTransaction.RollbackAsync();

            var record = await system.SettleAsync(await transfer);
            Assert.That(record.Outcome, Is.EqualTo(CommitOutcome.Aborted), $"{record.Reason}{Environment.NewLine}{system.Diagnostics()}");
            Assert.That(await BrokerLogAsync(), Does.Contain("timed out waiting for delivery acknowledgement"));
            await system.AssertConvergedAsync([record]);
            Assert.That(bankA.HasExited, Is.False, bankA.Tail());

            var after = await system.AssertStillCommitsAsync();
            await system.AssertConvergedAsync([record, .. after]);
        }
        catch (Exception e) when (e is not AssertionException)
        {
            Assert.Fail($"{e}{Environment.NewLine}{system.Diagnostics()}");
        }
    }

    /// <summary>Bank A's line (DeliveryWatch) when the transport cancelled a held handler.</summary>
    private const string Stopped = "stopped handling";

    /// <summary>Bank A's line (DeliveryWatch) when a handler finished after its delivery was given up.</summary>
    private const string FinishedLate = "finished";

    private async Task RunAsync(string action, string slowMessage, string endLine)
    {
        await FaultScenario.RunAsync(new FaultCase
        {
            BankA = Arm.Bus($"{action}:{slowMessage}:1:{Milliseconds(SlowHandler)}"),
            Options = new BankSystemOptions { Services = _services },
            WhileRunning = async system =>
            {
                var bankA = system.Process(Role.BankA);
                await bankA.WaitForOutputAsync($"TXCOORD-FAULT bus {action} {slowMessage}", TimeSpan.FromSeconds(60));

                // The broker gave up on the slow delivery and requeued it; bank A got it again and says so
                // (after the slow handler returned: MassTransit waits for it before a new channel)...
                await bankA.WaitForOutputAsync($"got {slowMessage} ", TimeSpan.FromSeconds(60));
                Assert.That(bankA.Output, Does.Contain($"got {slowMessage} ").And.Contain("again from the broker (redelivered"), bankA.Tail());

                // ...and that the held one was stopped (MassTransit cancels it with the channel) or,
                // having ignored its token, finished with no channel left to acknowledge on.
                await bankA.WaitForOutputAsync($"{endLine} {slowMessage} ", SlowHandler + TimeSpan.FromSeconds(60));
                Assert.That(bankA.HasExited, Is.False, bankA.Tail());

                // It was the broker's consumer timeout that closed the channel.
                Assert.That(await BrokerLogAsync(), Does.Contain("timed out waiting for delivery acknowledgement"));
            },
            Expected = Expected.Committed,
        });
    }

    /// <summary>The broker's own log (RabbitMQ writes consumer timeouts there as warnings).</summary>
    private async Task<string> BrokerLogAsync()
    {
        var directory = Path.Combine(_services.RunDirectory, "rabbitmq", "log");
        var text = new System.Text.StringBuilder();
        foreach (var file in Directory.GetFiles(directory, "*.log"))
        {
            await using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var reader = new StreamReader(stream);
            text.Append(await reader.ReadToEndAsync());
        }

        return text.ToString();
    }

    private static string Milliseconds(TimeSpan value) =>
        ((long)value.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture);
}
