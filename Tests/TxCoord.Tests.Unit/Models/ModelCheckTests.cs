namespace TxCoord.Tests.Unit.Models;

/// <summary>
/// The Promela models of Coordinator/models, checked with spin. Each test runs one property of
/// one model variant to the end of its state space: "errors 0" where the protocol must be safe,
/// a counterexample where the variant is built to break (which shows the property can fail and
/// the model is faithful). What each model mirrors in the code, and every rule and variant, is in
/// Coordinator/models/README.md. No servers needed; spin and gcc must be installed (./run.sh test
/// installs spin when missing) and the tests fail, not skip, when they are not.
/// </summary>
[NonParallelizable]
public sealed class ModelCheckTests
{
    // ---- 2PC, presumed abort (twopc.pml) ------------------------------------------------------

    /// <summary>
    /// The presumed-abort rules as they must be: the abort row is in the journal before anyone is
    /// told "aborted", and an outcome answer comes from the row after the tombstone insert. Two
    /// coordinator crashes, a participant crash, a decision write that lands after its sender died,
    /// and a network that loses, duplicates, delays and reorders every message.
    /// </summary>
    private static readonly string[] TwoPhaseSafeRules = ["-DFIX_TOMBSTONE", "-DINFLIGHT_DECISION_WRITE", "-DMAXCRASH=2"];

    [Test]
    public async Task TwoPhase_CoordinatorCrashRestartLossyDuplicatingNetwork_NeverOneCommittedAndAnotherAborted()
    {
        var result = await SpinCheck.SafetyAsync("twopc.pml", "consistent", TwoPhaseSafeRules);

        Assert.That(result.Errors, Is.Zero, result.Output);
    }

    [Test]
    public async Task TwoPhase_CoordinatorCrashRestartLossyDuplicatingNetwork_ParticipantThatVotedYesNeverDecidesAlone()
    {
        var result = await SpinCheck.SafetyAsync("twopc.pml", "alone", TwoPhaseSafeRules);

        Assert.That(result.Errors, Is.Zero, result.Output);
    }

    [Test]
    public async Task TwoPhase_CoordinatorCrashRestartLossyDuplicatingNetwork_InitiatorNeverToldAnOutcomeAParticipantContradicts()
    {
        var result = await SpinCheck.SafetyAsync("twopc.pml", "truthful", TwoPhaseSafeRules);

        Assert.That(result.Errors, Is.Zero, result.Output);
    }

    [Test]
    public async Task TwoPhase_AbortBranchSentBeforeTheAbortRowIsWritten_CheckerFindsOneCommittedAnotherAborted()
    {
        // TransactionEngine.Abort as first coded (finding 1, fixed since by the Aborting phase):
        // SendAbort..., ReplyToInitiator, then RecordAbort (unforced, failure only logged). A
        // duplicate CommitTransaction then begins the transaction again. Every other rule as today.
        var result = await SpinCheck.SafetyAsync("twopc.pml", "consistent", "-DFIX_VOTE_ROW", "-DFIX_OUTCOME_REREAD");

        AssertCounterexample(result);
    }

    [Test]
    public async Task TwoPhase_YesVoteForUnknownTransactionAnsweredAbortWithoutARow_CheckerFindsOneCommittedAnotherAborted()
    {
        // CoordinatorRuntime.VoteAsync today: not in memory, no commit row -> AbortBranch, no row
        // written; the redelivered CommitTransaction begins the transaction again.
        var result = await SpinCheck.SafetyAsync("twopc.pml", "consistent", "-DFIX_ABORT_ROW_FIRST", "-DFIX_OUTCOME_REREAD");

        AssertCounterexample(result);
    }

    [Test]
    public async Task TwoPhase_OutcomeAnsweredFromTheReadBeforeTheTombstoneInsert_CheckerFindsSplitWhenADecisionWriteLandsLate()
    {
        // CoordinatorRuntime.GetOutcomeAsync today: FindAsync, RecordAbortAsync (insert-if-absent),
        // answer from the FindAsync result.
        var result = await SpinCheck.SafetyAsync(
            "twopc.pml", "consistent", "-DFIX_ABORT_ROW_FIRST", "-DFIX_VOTE_ROW", "-DINFLIGHT_DECISION_WRITE");

        AssertCounterexample(result);
    }

    [Test]
    public async Task TwoPhase_PreparedParticipantRollsBackOnItsOwn_CheckerFindsItDecidedAlone()
    {
        var result = await SpinCheck.SafetyAsync("twopc.pml", "alone", [.. TwoPhaseSafeRules, "-DBUG_UNILATERAL_ABORT"]);

        AssertCounterexample(result);
    }

    [Test]
    public async Task TwoPhase_CommitSentBeforeTheDecisionIsDurable_CheckerFindsOneCommittedAnotherAborted()
    {
        var result = await SpinCheck.SafetyAsync("twopc.pml", "consistent", [.. TwoPhaseSafeRules, "-DBUG_UNFORCED_DECISION"]);

        AssertCounterexample(result);
    }

    // ---- 2PC with early prepare (twopc.pml -DEARLY_PREPARE) ---------------------------------------

    /// <summary>
    /// Early prepare with the presumed-abort rules of today: each participant gets its work with
    /// prepare: true or plain (any mix), an early-prepared one answers Prepared and the initiator
    /// relays any subset of those Yes votes in its CommitTransaction; Begin counts them and asks only
    /// the others. A prepared branch may ask the outcome, or a peer, before the coordinator has begun
    /// the transaction; a refused decision write aborts. One coordinator crash (two: 11.9 million
    /// states, about 25 s per property, run by hand, see Coordinator/models/README.md), a participant
    /// crash, a decision write that lands after its sender died, the lossy duplicating network.
    /// </summary>
    private static readonly string[] TwoPhaseEarlyPrepare = ["-DEARLY_PREPARE", "-DFIX_TOMBSTONE", "-DINFLIGHT_DECISION_WRITE", "-DMAXCRASH=1"];

    [Test]
    public async Task TwoPhaseEarlyPrepare_RelayedAndAskedVotesCoordinatorCrashLossyNetwork_NeverOneCommittedAndAnotherAborted()
    {
        var result = await SpinCheck.SafetyAsync("twopc.pml", "consistent", TwoPhaseEarlyPrepare);

        Assert.That(result.Errors, Is.Zero, result.Output);
    }

    [Test]
    public async Task TwoPhaseEarlyPrepare_RelayedAndAskedVotesCoordinatorCrashLossyNetwork_ParticipantThatVotedYesNeverDecidesAlone()
    {
        var result = await SpinCheck.SafetyAsync("twopc.pml", "alone", TwoPhaseEarlyPrepare);

        Assert.That(result.Errors, Is.Zero, result.Output);
    }

    [Test]
    public async Task TwoPhaseEarlyPrepare_RelayedAndAskedVotesCoordinatorCrashLossyNetwork_InitiatorNeverToldAnOutcomeAParticipantContradicts()
    {
        var result = await SpinCheck.SafetyAsync("twopc.pml", "truthful", TwoPhaseEarlyPrepare);

        Assert.That(result.Errors, Is.Zero, result.Output);
    }

    [Test]
    public async Task TwoPhaseEarlyPrepare_OutcomeQuestionBeforeBeginAnsweredAbortWithoutARow_CheckerFindsTheRelayedYesCommitted()
    {
        // Negative control: GetOutcomeAsync presuming abort without PresumeAbortAsync's row. An
        // early-prepared branch asks before the CommitTransaction arrives, is told Aborted and rolls
        // back; the CommitTransaction then begins the transaction with its relayed Yes and commits.
        var result = await SpinCheck.SafetyAsync("twopc.pml", "consistent", [.. TwoPhaseEarlyPrepare, "-DBUG_OUTCOME_NO_ROW"]);

        AssertCounterexample(result);
        Assert.That(result.Output, Does.Contain("Begin with relayed Yes votes"), "the counterexample should go through a relayed vote");
    }

    // ---- 3PC with termination: crash-only failures (threepc.pml) ----------------------------------

    /// <summary>
    /// The coordinator crashes for good at any point; two participants crash too; the lowest live
    /// participant leads each termination round; the prepare phase included; one message lost and
    /// one delivered late per run.
    /// </summary>
    private static readonly string[] ThreePhaseCrashOnly = ["-DELECTION", "-DFULL_PREPARE", "-DMAXPCRASH=2"];

    [Test]
    public async Task ThreePhase_CoordinatorDownForGoodAndParticipantsCrash_NeverOneCommittedAndAnotherAborted()
    {
        var result = await SpinCheck.SafetyAsync("threepc.pml", "consistent", ThreePhaseCrashOnly);

        Assert.That(result.Errors, Is.Zero, result.Output);
    }

    [Test]
    public async Task ThreePhase_CoordinatorDownForGoodAndParticipantsCrash_CoordinatorNeverContradictsAParticipant()
    {
        var result = await SpinCheck.SafetyAsync("threepc.pml", "agree", ThreePhaseCrashOnly);

        Assert.That(result.Errors, Is.Zero, result.Output);
    }

    [Test]
    public async Task ThreePhase_CoordinatorDownForGoodOneParticipantDown_EveryLiveParticipantEventuallyDecides()
    {
        var result = await SpinCheck.LivenessAsync("threepc.pml", "live", "-DLIVENESS");

        Assert.That(result.Errors, Is.Zero, result.Output);
    }

    [Test]
    public async Task ThreePhase_CoordinatorAndTwoOfThreeParticipantsDown_CheckerFindsTheSurvivorBlocked()
    {
        // The price of the partition rule: without a majority up, termination cannot decide.
        var result = await SpinCheck.LivenessAsync("threepc.pml", "live", "-DLIVENESS", "-DMAXPCRASH=2");

        AssertCounterexample(result);
    }

    [Test]
    public async Task ThreePhase_PreCommitTakenAfterJoiningARound_CheckerFindsOneCommittedAnotherAborted()
    {
        // Negative control: PreCommitSql without its last_elected = 0 guard.
        var result = await SpinCheck.SafetyAsync("threepc.pml", "consistent", [.. ThreePhaseCrashOnly, "-DBUG_PRECOMMIT_AFTER_JOIN"]);

        AssertCounterexample(result);
    }

    // ---- 3PC with termination: network partitions (threepc.pml -DPARTITIONS) ---------------------

    [Test]
    public async Task ThreePhase_NetworkSplitsWithoutTheMajorityRule_CheckerFindsTheSplitBrain()
    {
        var result = await SpinCheck.SafetyAsync(
            "threepc.pml", "consistent", "-DPARTITIONS", "-DNO_QUORUM", "-DMAXLOSS=0", "-DMAXPCRASH=0");

        AssertCounterexample(result);
    }

    [Test]
    public async Task ThreePhase_NetworkSplitsWithTheMajorityRule_NeverOneCommittedAndAnotherAborted()
    {
        var result = await SpinCheck.SafetyAsync("threepc.pml", "consistent", "-DPARTITIONS", "-DMAXLOSS=0", "-DMAXPCRASH=0");

        Assert.That(result.Errors, Is.Zero, result.Output);
    }

    [Test]
    public async Task ThreePhase_NetworkSplitsAndHealsWithTheMajorityRule_NeverOneCommittedAndAnotherAborted()
    {
        var result = await SpinCheck.SafetyAsync(
            "threepc.pml", "consistent", "-DPARTITIONS", "-DHEAL", "-DMAXLOSS=0", "-DMAXPCRASH=0");

        Assert.That(result.Errors, Is.Zero, result.Output);
    }

    [Test]
    public async Task ThreePhase_SplitHealsAndALeaderCommitsOnAnyPreCommitted_CheckerFindsOneCommittedAnotherAborted()
    {
        // A majority alone is not enough: issue 3's wording of the rule ("any PreCommitted ->
        // commit") ignores last_attempt, and a healed partition then decides both ways.
        var result = await SpinCheck.SafetyAsync(
            "threepc.pml", "consistent", "-DPARTITIONS", "-DHEAL", "-DSIMPLE_RULE", "-DMAXLOSS=0", "-DMAXPCRASH=0");

        AssertCounterexample(result);
    }

    private static void AssertCounterexample(SpinResult result) =>
        Assert.Multiple(() =>
        {
            Assert.That(result.Errors, Is.EqualTo(1), result.Output);
            Assert.That(result.Output, Does.Contain("---- counterexample"), "the counterexample should be printed");
        });
}
