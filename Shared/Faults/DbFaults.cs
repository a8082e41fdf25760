using System.Runtime.CompilerServices;
using Npgsql;

namespace TxCoord.Faults;

/// <summary>The database steps that <see cref="DbFaults"/> can fail.</summary>
internal static class DbFaultPoints
{
    /// <summary>Coordinator: the forced write of a commit decision (its COMMIT).</summary>
    public const string JournalCommitDecision = "journal.commit-decision";

    /// <summary>Coordinator: the unforced abort record.</summary>
    public const string JournalAbort = "journal.abort";

    /// <summary>Coordinator: the unforced end record.</summary>
    public const string JournalEnd = "journal.end";

    /// <summary>Coordinator: the unforced acknowledgement record.</summary>
    public const string JournalAck = "journal.ack";

    /// <summary>Participant: PREPARE TRANSACTION.</summary>
    public const string BranchPrepare = "branch.prepare";

    /// <summary>Participant: COMMIT PREPARED.</summary>
    public const string BranchCommitPrepared = "branch.commit-prepared";

    /// <summary>Participant: ROLLBACK PREPARED.</summary>
    public const string BranchRollbackPrepared = "branch.rollback-prepared";

    public static readonly IReadOnlyList<string> All =
        [JournalCommitDecision, JournalAbort, JournalEnd, JournalAck, BranchPrepare, BranchCommitPrepared, BranchRollbackPrepared];
}

/// <summary>
/// PostgreSQL fault seam: with <c>TXCOORD_DB_FAULTS</c> set (rules as in <see cref="FaultRuleSet"/>,
/// targets from <see cref="DbFaultPoints"/>), a statement fails with an <see cref="NpgsqlException"/>
/// either before it runs (<c>fail-before</c>: nothing happened) or after it ran and before its
/// reply reaches the caller (<c>fail-after</c>: it happened, the caller does not know). Callers put
/// <see cref="Before"/> and <see cref="After"/> around the statement; unset, both are a test of a
/// static readonly field.
/// </summary>
internal static class DbFaults
{
    public const string Variable = "TXCOORD_DB_FAULTS";

    public const string FailBefore = "fail-before";
    public const string FailAfter = "fail-after";

    private static readonly FaultRuleSet? Rules = FaultRuleSet.Parse(
        Variable, Environment.GetEnvironmentVariable(Variable), [FailBefore, FailAfter], DbFaultPoints.All, []);

    public static bool IsArmed => Rules is not null;

    /// <summary>Parses the variable now, so a malformed rule stops the start with a message that says what to fix.</summary>
    public static void EnsureValid()
    {
        try
        {
            _ = IsArmed;
        }
        catch (TypeInitializationException e) when (e.InnerException is InvalidOperationException inner)
        {
            throw new InvalidOperationException(inner.Message, inner);
        }
    }

    /// <summary>Throws when a <c>fail-before</c> rule for <paramref name="point"/> applies.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Before(string point)
    {
        if (Rules is not null)
        {
            Strike(Rules, point, FailBefore);
        }
    }

    /// <summary>Throws when a <c>fail-after</c> rule for <paramref name="point"/> applies.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void After(string point)
    {
        if (Rules is not null)
        {
            Strike(Rules, point, FailAfter);
        }
    }

    private static void Strike(FaultRuleSet rules, string point, string action)
    {
        if (rules.Take(point, action) is { } rule)
        {
            FaultRuleSet.Report("db", rule, action == FailBefore ? "the statement did not run" : "the statement ran; its reply is lost");
            throw new NpgsqlException($"injected fault ({Variable}): {point} {(action == FailBefore ? "failed before it ran" : "ran, but its reply was lost")}");
        }
    }
}
