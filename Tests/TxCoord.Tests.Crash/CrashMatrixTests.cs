using TxCoord.Contracts;
using TxCoord.Faults;
using TxCoord.Participants;
using TxCoord.Tests.Crash.Infrastructure;

namespace TxCoord.Tests.Crash;

/// <summary>
/// RELIABILITY.md's crash-recovery matrix, CR-1 to CR-9, with real processes: each process kills
/// itself (SIGKILL) at the named step and is restarted; then every check of
/// <see cref="BankSystem.AssertConvergedAsync"/> must hold. CR-10 to CR-13 need the recovery tool:
/// see <see cref="RecoveryToolTests"/>.
/// </summary>
[Category("Crash")]
[Parallelizable(ParallelScope.Children)]
public sealed class CrashMatrixTests
{
    /// <summary>
    /// Loses every commit message at a participant: single ones and the coordinator's batches (it
    /// batches the commits of overlapping transactions, and a rule names one message type).
    /// </summary>
    private const string DropEveryCommit = $"{BusFaults.Drop}:{nameof(CommitBranch)}:*,{BusFaults.Drop}:{nameof(CommitBranches)}:*";

    [Test]
    public Task CR1_CoordinatorDiesBeforeSendingPrepare_AllBranchesRollBack() =>
        FaultScenario.RunAsync(new FaultCase
        {
            Coordinator = Arm.Crash(CrashPoints.CoordinatorBeforePrepare),
            Crashes = Role.Coordinator,
            // Both branches are still working: they roll back at their timeout. Restarted only
            // then, the coordinator gets the redelivered commit request past its deadline.
            BeforeRestart = system => system.WaitUntilBothBanksRolledBackAsync(),
            Options = new BankSystemOptions { TransactionTimeout = TimeSpan.FromSeconds(6) },
            Expected = Expected.Aborted,
        });

    [Test]
    public Task CR1_CoordinatorDiesWhileSendingPrepare_AllBranchesRollBack() =>
        FaultScenario.RunAsync(new FaultCase
        {
            // Prepare reached the first participant only.
            Coordinator = Arm.Crash(CrashPoints.CoordinatorAfterPrepare, after: 1),
            Crashes = Role.Coordinator,
            // Bank A is prepared and asks around; bank B's working branch rolls back (timeout, or
            // fenced when A asks it during cooperative termination). Restarted only then.
            BeforeRestart = system => system.WaitUntilBothBanksRolledBackAsync(),
            Options = new BankSystemOptions { TransactionTimeout = TimeSpan.FromSeconds(6) },
            Expected = Expected.Aborted,
        });

    [Test]
    public Task CR2_AllPreparedCoordinatorDiesBeforeTheDecisionIsDurable_AllRollBack() =>
        FaultScenario.RunAsync(new FaultCase
        {
            Coordinator = Arm.Crash(CrashPoints.CoordinatorBeforeDecision),
            Crashes = Role.Coordinator,
            Expected = Expected.Aborted,
        });

    [Test]
    public Task CR3_DecisionDurableCoordinatorDiesBeforeAnyCommitIsSent_AllCommitAfterRestart() =>
        FaultScenario.RunAsync(new FaultCase
        {
            Coordinator = Arm.Crash(CrashPoints.CoordinatorAfterDecision),
            Crashes = Role.Coordinator,
            Expected = Expected.Committed,
        });

    [Test]
    public Task CR4_CoordinatorDiesAfterOneOfTwoParticipantsCommitted_TheRestCommit() =>
        FaultScenario.RunAsync(new FaultCase
        {
            // The first acknowledgement arrived: that participant has committed.
            Coordinator = Arm.Crash(CrashPoints.CoordinatorAfterAck, after: 1),
            Crashes = Role.Coordinator,
            Expected = Expected.Committed,
        });

    [Test]
    public Task CR4_CoordinatorDiesBetweenTheTwoCommitMessages_TheRestCommit() =>
        FaultScenario.RunAsync(new FaultCase
        {
            Coordinator = Arm.Crash(CrashPoints.CoordinatorAfterCommitSent, after: 1),
            Crashes = Role.Coordinator,
            Expected = Expected.Committed,
        });

    [Test]
    public Task CR5_AllCommittedCoordinatorDiesBeforeRecordingTheEnd_RedriveIsHarmlessAndTheEntryCloses() =>
        FaultScenario.RunAsync(new FaultCase
        {
            Coordinator = Arm.Crash(CrashPoints.CoordinatorBeforeEnd),
            Crashes = Role.Coordinator,
            Expected = Expected.Committed,
        });

    [Test]
    public Task CR6_CoordinatorDiesDuringAbort_AllRollBack() =>
        FaultScenario.RunAsync(new FaultCase
        {
            // Bank B cannot prepare (votes No); the coordinator dies after telling the first participant to abort.
            BankB = Arm.Db($"{DbFaults.FailBefore}:{DbFaultPoints.BranchPrepare}:1"),
            Coordinator = Arm.Crash(CrashPoints.CoordinatorAfterAbortSent, after: 1),
            Crashes = Role.Coordinator,
            Expected = Expected.Aborted,
        });

    [Test]
    [NonParallelizable]
    public Task CR7_ParticipantPostgreSqlKilledWhilePrepared_PreparedTransactionSurvivesAndIsResolved() =>
        FaultScenario.RunAsync(new FaultCase
        {
            // Bank B loses its CommitBranch and does not ask, so its branch is prepared when its server dies.
            BankB = Arm.Bus(DropEveryCommit).With(new() { ["TxCoord__Participant__DecisionTimeout"] = "00:05:00" }),
            WhileRunning = async system =>
            {
                var prepared = await Eventually.WaitForAsync(() => BankSystem.PreparedGidsAsync(system.BankBDataSource), gids => gids.Count > 0,
                    TimeSpan.FromSeconds(60), "bank B's branch to be prepared", system.Diagnostics);
                await system.RestartBankServerAsync();
                Assert.That(await BankSystem.PreparedGidsAsync(system.BankBDataSource), Is.EqualTo(prepared), "the prepared transaction survives the server's crash");

                // Bank B comes back without the fault and finishes it (asks the coordinator, or gets the re-driven Commit).
                await system.Process(Role.BankB).KillAsync();
                await system.StartAsync(Role.BankB);
            },
            Expected = Expected.Committed,
        });

    [Test]
    public Task CR8_ParticipantDiesAfterPrepareBeforeItsVoteIsSent_CoordinatorAbortsAndTheOrphanRollsBack() =>
        FaultScenario.RunAsync(new FaultCase
        {
            BankA = Arm.Crash(CrashPoints.ParticipantAfterPrepare),
            Crashes = Role.BankA,
            // Restarted only once the coordinator gave up on its vote.
            BeforeRestart = system => system.Process(Role.Coordinator).WaitForOutputAsync("vote timeout", TimeSpan.FromSeconds(30)),
            Options = new BankSystemOptions { VoteTimeout = TimeSpan.FromSeconds(3) },
            Expected = Expected.Aborted,
        });

    [Test]
    public async Task CR9_CoordinatorCrashesDuringRecoverySeveralTimes_ConvergesWithNothingAppliedTwice()
    {
        await using var system = await BankSystem.CreateAsync();
        // Both banks lose every CommitBranch in their first life: three transfers decide commit and stay committing.
        var dropCommits = Arm.Bus(DropEveryCommit);
        await system.StartAllAsync(bankA: dropCommits, bankB: dropCommits);
        var run = await system.RunTransfersAsync(3, 3);
        var transfers = new List<TxCoord.Samples.Bank.TransferRecord>();
        foreach (var transfer in run.Transfers)
        {
            transfers.Add(await system.SettleAsync(transfer));
        }

        Assert.That(transfers.Select(t => t.Outcome), Is.All.EqualTo(CommitOutcome.Committed), system.Diagnostics());
        await Eventually.WaitForAsync(system.CountOpenJournalEntriesAsync, n => n == 3, TimeSpan.FromSeconds(30), "three committing journal entries");

        // kill -9 the coordinator; the banks come back without faults.
        await system.Process(Role.Coordinator).KillAsync();
        await system.Process(Role.BankA).KillAsync();
        await system.Process(Role.BankB).KillAsync();
        await system.StartAsync(Role.BankA);
        await system.StartAsync(Role.BankB);

        // Three lives that die during recovery, after resuming 1, 2 and 1 transactions.
        foreach (var after in new[] { 1, 2, 1 })
        {
            await system.StartAsync(Role.Coordinator, Arm.Crash(CrashPoints.CoordinatorRecovery, after), waitUntilStarted: false);
            await system.WaitForCrashAsync(Role.Coordinator, CrashPoints.CoordinatorRecovery);
        }

        await system.StartAsync(Role.Coordinator);
        await system.AssertConvergedAsync(transfers);
        var next = await system.AssertStillCommitsAsync();
        await system.AssertConvergedAsync([.. transfers, .. next]);
    }

    [Test]
    public async Task CR9_ParticipantCrashesDuringItsStartupResolutionSeveralTimes_Converges()
    {
        await using var system = await BankSystem.CreateAsync();
        var dropCommits = Arm.Bus(DropEveryCommit);
        // Nor does it ask for the outcome in this life: its branches stay prepared.
        await system.StartAllAsync(bankA: Arm.Bus(DropEveryCommit).With(new() { ["TxCoord__Participant__DecisionTimeout"] = "00:05:00" }));
        var run = await system.RunTransfersAsync(3, 3);
        var transfers = new List<TxCoord.Samples.Bank.TransferRecord>();
        foreach (var transfer in run.Transfers)
        {
            transfers.Add(await system.SettleAsync(transfer));
        }

        Assert.That(transfers.Select(t => t.Outcome), Is.All.EqualTo(CommitOutcome.Committed), system.Diagnostics());
        await Eventually.WaitForAsync(() => BankSystem.PreparedGidsAsync(system.BankADataSource), gids => gids.Count == 3,
            TimeSpan.FromSeconds(30), "three prepared branches in bank A");

        // The coordinator is gone too, so nothing but bank A's own resolution finishes them.
        await system.Process(Role.Coordinator).KillAsync();
        await system.Process(Role.BankA).KillAsync();
        await system.StartAsync(Role.Coordinator);
        foreach (var after in new[] { 1, 1 })
        {
            // CommitBranch stays lost, so only the resolution at start (asking the coordinator) finishes them.
            await system.StartAsync(Role.BankA, Arm.Crash(CrashPoints.ParticipantResolution, after).With(dropCommits), waitUntilStarted: false);
            await system.WaitForCrashAsync(Role.BankA, CrashPoints.ParticipantResolution);
        }

        await system.StartAsync(Role.BankA);
        await system.AssertConvergedAsync(transfers);
    }
}
