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
        // TransactionEngine.Abort today: SendAbort..., ReplyToInitiator, then RecordAbort (unforced,
        // failure only logged). A duplicate CommitTransaction then begins the transaction again.
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

    private static void AssertCounterexample(SpinResult result) =>
        Assert.Multiple(() =>
        {
            Assert.That(result.Errors, Is.EqualTo(1), result.Output);
            Assert.That(result.Output, Does.Contain("---- counterexample"), "the counterexample should be printed");
        });
}
