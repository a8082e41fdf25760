using Dapper;
using MassTransit;
using RabbitMQ.Client;
using TxCoord.Contracts;
using TxCoord.Faults;
using TxCoord.Participants;
using TxCoord.Tests.Crash.Infrastructure;

namespace TxCoord.Tests.Crash;

/// <summary>
/// RELIABILITY.md's message faults (MF) and PostgreSQL faults (PG), injected through the fault
/// seams of the real processes: a lost request and a lost reply for each protocol message,
/// duplicates, Abort before Prepare, a Prepare for a transaction that already committed, a broker
/// restart with messages in flight, poison messages, and statements that fail before they run or
/// lose their reply after. Each ends with the checks of <see cref="BankSystem.AssertConvergedAsync"/>.
/// </summary>
[Category("Crash")]
[Parallelizable(ParallelScope.Children)]
public sealed class MessageFaultTests
{
    private static string Rule(string action, string target, string count = "1", int? milliseconds = null) =>
        milliseconds is { } ms ? $"{action}:{target}:{count}:{ms}" : $"{action}:{target}:{count}";

    [Test]
    public Task MF1_PrepareLost_VoteTimeoutAbortsAndNothingStaysPrepared() =>
        FaultScenario.RunAsync(new FaultCase { BankA = Arm.Bus(Rule(BusFaults.Drop, nameof(PrepareBranch))), Options = VoteTimeoutExpected, Expected = Expected.Aborted });

    [Test]
    public Task MF2_VoteLost_VoteTimeoutAbortsAndThePreparedBranchRollsBack() =>
        FaultScenario.RunAsync(new FaultCase { Coordinator = Arm.Bus(Rule(BusFaults.Drop, nameof(BranchVoted))), Options = VoteTimeoutExpected, Expected = Expected.Aborted });

    [Test]
    public Task MF3_CommitLost_RedrivenUntilTheParticipantCommits() =>
        FaultScenario.RunAsync(new FaultCase { BankA = Arm.Bus(Rule(BusFaults.Drop, nameof(CommitBranch))), Expected = Expected.Committed });

    [Test]
    public Task MF4_CommitAcknowledgementLost_RedriveIsAnsweredAgainAndTheEntryCloses() =>
        FaultScenario.RunAsync(new FaultCase { Coordinator = Arm.Bus(Rule(BusFaults.Drop, nameof(BranchCommitted))), Expected = Expected.Committed });

    [Test]
    public Task MF5_AbortLost_ThePreparedParticipantAsksAndRollsBack() =>
        FaultScenario.RunAsync(new FaultCase
        {
            // Bank B votes No; bank A, prepared, never hears the abort and must ask for it.
            BankB = Arm.Db($"{DbFaults.FailBefore}:{DbFaultPoints.BranchPrepare}:1"),
            BankA = Arm.Bus(Rule(BusFaults.Drop, nameof(AbortBranch))),
            Expected = Expected.Aborted,
        });

    [Test]
    public Task MF6_AbortAcknowledgementLost_NothingWaitsForIt() =>
        FaultScenario.RunAsync(new FaultCase
        {
            BankB = Arm.Db($"{DbFaults.FailBefore}:{DbFaultPoints.BranchPrepare}:1"),
            Coordinator = Arm.Bus(Rule(BusFaults.Drop, nameof(BranchAborted), "*")),
            Expected = Expected.Aborted,
            HealBeforeLiveness = true,
        });

    [Test]
    public Task MF7_EveryMessageDuplicated_EachTransferAppliedOnce() =>
        FaultScenario.RunAsync(new FaultCase
        {
            Coordinator = Arm.Bus(string.Join(',',
                Rule(BusFaults.Duplicate, nameof(CommitTransaction)), Rule(BusFaults.Duplicate, nameof(BranchVoted), "2"),
                Rule(BusFaults.Duplicate, nameof(BranchCommitted), "2"))),
            BankA = Arm.Bus(string.Join(',',
                Rule(BusFaults.Duplicate, "DebitAccount"), Rule(BusFaults.Duplicate, nameof(PrepareBranch)), Rule(BusFaults.Duplicate, nameof(CommitBranch)))),
            BankB = Arm.Bus(string.Join(',',
                Rule(BusFaults.Duplicate, "CreditAccount"), Rule(BusFaults.Duplicate, nameof(PrepareBranch), "1", 500), Rule(BusFaults.Duplicate, nameof(CommitBranch), "1", 500))),
            Expected = Expected.Committed,
        });

    [Test]
    public Task MF8_AbortOvertakesItsPrepare_TheLatePrepareIsRefused() =>
        FaultScenario.RunAsync(new FaultCase
        {
            // Bank A's Prepare arrives after the vote timeout (3 s), so after the coordinator's Abort.
            BankA = Arm.Bus(Rule(BusFaults.Delay, nameof(PrepareBranch), "1", 5000)),
            WhileRunning = async system =>
            {
                await system.Process(Role.BankA).WaitForOutputAsync("TXCOORD-FAULT bus delay PrepareBranch", TimeSpan.FromSeconds(30));
                await system.Process(Role.Coordinator).WaitForOutputAsync("vote timeout", TimeSpan.FromSeconds(30));
            },
            Options = VoteTimeoutExpected,
            Expected = Expected.Aborted,
        });

    [Test]
    public async Task MF9_PrepareForATransactionThatAlreadyCommitted_IsHarmless()
    {
        await using var system = await BankSystem.CreateAsync();
        await system.StartAllAsync();
        var committed = await system.SettleAsync(await system.TransferAsync());
        Assert.That(committed.Outcome, Is.EqualTo(CommitOutcome.Committed), system.Diagnostics());
        await system.AssertConvergedAsync([committed]);
        var balance = await Samples.Bank.BankLedger.TotalBalanceAsync(system.BankADataSource);

        // A stale Prepare, as a redelivery long after the fact would bring it.
        var endpoint = await system.Bus.GetSendEndpoint(TxCoordQueues.ParticipantAddress(new ParticipantId(system.BankA)));
        await endpoint.Send(new PrepareBranch
        {
            TransactionId = committed.TransactionId!.Value,
            Coordinator = new CoordinatorId(system.CoordinatorId),
            Participant = new ParticipantId(system.BankA),
            Participants = [new ParticipantId(system.BankA), new ParticipantId(system.BankB)],
        });

        // It votes Yes (its record says committed); the coordinator answers Commit; it acknowledges again.
        await system.Process(Role.Coordinator).WaitForOutputAsync(
            $"Transaction {committed.TransactionId}: Yes vote from {system.BankA}", TimeSpan.FromSeconds(30));
        await system.AssertConvergedAsync([committed]);
        Assert.That(await Samples.Bank.BankLedger.TotalBalanceAsync(system.BankADataSource), Is.EqualTo(balance));
        await system.AssertStillCommitsAsync();
    }

    [Test]
    [NonParallelizable]
    public Task MF10_BrokerKilledWithMessagesInFlight_TheTransactionStillCommits() =>
        FaultScenario.RunAsync(new FaultCase
        {
            // Bank A sits on its CommitBranch (unacknowledged) while the broker is killed and restarted.
            BankA = Arm.Bus(Rule(BusFaults.Delay, nameof(CommitBranch), "1", 3000)),
            WhileRunning = async system =>
            {
                await system.Process(Role.BankA).WaitForOutputAsync("TXCOORD-FAULT bus delay CommitBranch", TimeSpan.FromSeconds(30));
                await CrashServices.RestartRabbitMqAsync("kill");
            },
            Options = new BankSystemOptions { CommitTimeout = TimeSpan.FromSeconds(20) },
            Expected = Expected.Committed,
        });

    [Test]
    public async Task MF11_PoisonCommitMessage_EndsInTheErrorQueueAndTheTransactionStillCommits()
    {
        string? errorQueue = null;
        await FaultScenario.RunAsync(new FaultCase
        {
            BankA = Arm.Bus(Rule(BusFaults.Throw, nameof(CommitBranch))),
            WhileRunning = system =>
            {
                errorQueue = TxCoordQueues.Participant(new ParticipantId(system.BankA)) + "_error";
                return Task.CompletedTask;
            },
            Expected = Expected.Committed,
        });
        Assert.That(await CountMessagesAsync(errorQueue!), Is.EqualTo(1), $"the poison CommitBranch should wait in {errorQueue}");
    }

    [Test]
    public async Task MF11_PoisonVotesAtTheCoordinator_EndInTheErrorQueueAndTheTransactionAborts()
    {
        string? errorQueue = null;
        await FaultScenario.RunAsync(new FaultCase
        {
            Coordinator = Arm.Bus(Rule(BusFaults.Throw, nameof(BranchVoted), "*")),
            WhileRunning = async system =>
            {
                // Retried (the coordinator's retry policy), then moved to the error queue.
                errorQueue = TxCoordQueues.Coordinator(new CoordinatorId(system.CoordinatorId)) + "_error";
                await Eventually.WaitForAsync(() => CountMessagesAsync(errorQueue), n => n >= 2, TimeSpan.FromSeconds(60),
                    $"both votes in {errorQueue}", system.Diagnostics);
            },
            Options = VoteTimeoutExpected,
            Expected = Expected.Aborted,
            HealBeforeLiveness = true,
        });
        Assert.That(await CountMessagesAsync(errorQueue!), Is.GreaterThanOrEqualTo(2), $"both poison votes should wait in {errorQueue}");
    }

    [Test]
    public Task PG1_DecisionWriteFailsBeforeItRuns_RetriedAndCommitted() =>
        FaultScenario.RunAsync(new FaultCase
        {
            Coordinator = Arm.Db($"{DbFaults.FailBefore}:{DbFaultPoints.JournalCommitDecision}:2"),
            Expected = Expected.Committed,
        });

    [Test]
    public Task PG2_DecisionWriteRanButItsReplyIsLost_RetryFindsItAndCommits() =>
        FaultScenario.RunAsync(new FaultCase
        {
            Coordinator = Arm.Db($"{DbFaults.FailAfter}:{DbFaultPoints.JournalCommitDecision}:1"),
            Expected = Expected.Committed,
        });

    [Test]
    public Task PG3_CommitPreparedRanButItsReplyIsLost_TheRedriveFindsItCommitted() =>
        FaultScenario.RunAsync(new FaultCase
        {
            BankA = Arm.Db($"{DbFaults.FailAfter}:{DbFaultPoints.BranchCommitPrepared}:1"),
            Expected = Expected.Committed,
        });

    [Test]
    public Task PG4_PrepareRanButItsReplyIsLost_TheUnknownPreparedBranchIsRolledBack() =>
        FaultScenario.RunAsync(new FaultCase
        {
            BankA = Arm.Db($"{DbFaults.FailAfter}:{DbFaultPoints.BranchPrepare}:1"),
            Expected = Expected.Aborted,
        });

    [Test]
    public Task PG5_RollbackPreparedRanButItsReplyIsLost_TheBranchEndsRolledBack() =>
        FaultScenario.RunAsync(new FaultCase
        {
            BankB = Arm.Db($"{DbFaults.FailBefore}:{DbFaultPoints.BranchPrepare}:1"),
            BankA = Arm.Db($"{DbFaults.FailAfter}:{DbFaultPoints.BranchRollbackPrepared}:1"),
            Expected = Expected.Aborted,
        });

    [Test]
    public Task PG6_AbortRecordFails_PresumedAbortAnswersTheSame() =>
        FaultScenario.RunAsync(new FaultCase
        {
            BankB = Arm.Db($"{DbFaults.FailBefore}:{DbFaultPoints.BranchPrepare}:1"),
            Coordinator = Arm.Db($"{DbFaults.FailBefore}:{DbFaultPoints.JournalAbort}:1"),
            Expected = Expected.Aborted,
        });

    /// <summary>For faults that end in an abort by vote timeout: a short one, since a slow vote ends the same way.</summary>
    private static readonly BankSystemOptions VoteTimeoutExpected = new() { VoteTimeout = TimeSpan.FromSeconds(3) };

    /// <summary>Messages waiting in a queue; 0 when the queue does not exist (yet).</summary>
    private static async Task<uint> CountMessagesAsync(string queue)
    {
        var factory = new ConnectionFactory { Uri = CrashServices.RabbitMq };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        try
        {
            var declared = await channel.QueueDeclarePassiveAsync(queue);
            return declared.MessageCount;
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException e) when (e.ShutdownReason?.ReplyCode == 404)
        {
            return 0;
        }
    }
}
