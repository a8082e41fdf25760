using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace TxCoord.Faults;

// Linked as source into TxCoord.Coordinator, TxCoord.Participants and the crash tests (which
// need the names): one copy, no reference between the libraries. Internal in each assembly.

/// <summary>
/// The named steps at which a process can be told to kill itself (<see cref="CrashPoint"/>).
/// A point that is hit once per participant (a send, an acknowledgement) counts occurrences, so
/// <c>TXCOORD_CRASH_AFTER=2</c> kills after the second one: between the messages of one transaction.
/// </summary>
internal static class CrashPoints
{
    // ---- coordinator --------------------------------------------------------------------

    /// <summary>Before a PrepareBranch leaves the coordinator (once per participant).</summary>
    public const string CoordinatorBeforePrepare = "coordinator.before-prepare";

    /// <summary>After a PrepareBranch left the coordinator (once per participant).</summary>
    public const string CoordinatorAfterPrepare = "coordinator.after-prepare";

    /// <summary>A vote arrived, before the coordinator acts on it.</summary>
    public const string CoordinatorAfterVote = "coordinator.after-vote";

    /// <summary>Every participant voted Yes, before the commit decision is forced to the journal.</summary>
    public const string CoordinatorBeforeDecision = "coordinator.before-decision";

    /// <summary>The commit decision is durable, before any CommitBranch is sent.</summary>
    public const string CoordinatorAfterDecision = "coordinator.after-decision";

    /// <summary>After a CommitBranch left the coordinator (once per participant and re-drive).</summary>
    public const string CoordinatorAfterCommitSent = "coordinator.after-commit-sent";

    /// <summary>A commit acknowledgement arrived, before the coordinator acts on it.</summary>
    public const string CoordinatorAfterAck = "coordinator.after-ack";

    /// <summary>Every participant acknowledged its commit, before the end is recorded in the journal.</summary>
    public const string CoordinatorBeforeEnd = "coordinator.before-end";

    /// <summary>After an AbortBranch left the coordinator (once per participant).</summary>
    public const string CoordinatorAfterAbortSent = "coordinator.after-abort-sent";

    /// <summary>During recovery at start, after each transaction was resumed from the journal.</summary>
    public const string CoordinatorRecovery = "coordinator.recovery";

    /// <summary>3PC: the PreCommit record is durable, before any PreCommitBranch is sent.</summary>
    public const string CoordinatorAfterPreCommitDurable = "coordinator.after-precommit-durable";

    /// <summary>3PC: after a PreCommitBranch left the coordinator (once per participant and re-drive).</summary>
    public const string CoordinatorAfterPreCommitSent = "coordinator.after-precommit-sent";

    // ---- participant SDK --------------------------------------------------------------

    /// <summary>The work handler finished, before the participant answers the initiator.</summary>
    public const string ParticipantAfterWork = "participant.after-work";

    /// <summary>The prepare step finished (PREPARE TRANSACTION ran, for a Yes vote), before the vote is sent.</summary>
    public const string ParticipantAfterPrepare = "participant.after-prepare";

    /// <summary>COMMIT PREPARED ran, before the acknowledgement is sent.</summary>
    public const string ParticipantAfterCommit = "participant.after-commit";

    /// <summary>The branch rolled back on AbortBranch, before the acknowledgement is sent.</summary>
    public const string ParticipantAfterAbort = "participant.after-abort";

    /// <summary>Resolution of prepared branches (at start and later), after each branch it finished.</summary>
    public const string ParticipantResolution = "participant.resolution";

    /// <summary>3PC: PreCommitted recorded (or the branch's outcome found), before the answer to PreCommitBranch is sent.</summary>
    public const string ParticipantAfterPreCommit = "participant.after-precommit";

    /// <summary>3PC termination: the round's leader collected the states (its peers joined the round), before it proposes.</summary>
    public const string ParticipantTerminationLeader = "participant.termination-leader";

    // ---- recovery tool ----------------------------------------------------------------

    /// <summary>txcoord-recover resolve: after each COMMIT PREPARED or ROLLBACK PREPARED it ran.</summary>
    public const string RecoveryToolAfterAction = "recover.after-action";

    /// <summary>Every known point, for validating <c>TXCOORD_CRASH_AT</c>.</summary>
    public static readonly IReadOnlyList<string> All =
    [
        CoordinatorBeforePrepare, CoordinatorAfterPrepare, CoordinatorAfterVote, CoordinatorBeforeDecision,
        CoordinatorAfterDecision, CoordinatorAfterCommitSent, CoordinatorAfterAck, CoordinatorBeforeEnd,
        CoordinatorAfterAbortSent, CoordinatorRecovery, CoordinatorAfterPreCommitDurable, CoordinatorAfterPreCommitSent,
        ParticipantAfterWork, ParticipantAfterPrepare, ParticipantAfterCommit, ParticipantAfterAbort, ParticipantResolution,
        ParticipantAfterPreCommit, ParticipantTerminationLeader,
        RecoveryToolAfterAction,
    ];
}

/// <summary>
/// Crash points: when the environment variable <c>TXCOORD_CRASH_AT</c> names a point of
/// <see cref="CrashPoints"/>, the process kills itself (SIGKILL, no orderly shutdown, nothing
/// flushed but one line on standard error) the <c>TXCOORD_CRASH_AFTER</c>-th time (default 1)
/// that point is reached. Read once, at first use; when unset, <see cref="Hit"/> is a test of a
/// static readonly field that the JIT folds away.
/// </summary>
internal static class CrashPoint
{
    public const string AtVariable = "TXCOORD_CRASH_AT";
    public const string AfterVariable = "TXCOORD_CRASH_AFTER";

    private static readonly CrashPlan? Plan = CrashPlan.Parse(
        Environment.GetEnvironmentVariable(AtVariable), Environment.GetEnvironmentVariable(AfterVariable));

    /// <summary>True when a crash point is armed in this process.</summary>
    public static bool IsArmed => Plan is not null;

    /// <summary>Kills the process when <paramref name="point"/> is the armed point and its occurrence has come.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Hit(string point)
    {
        if (Plan is not null)
        {
            Plan.Hit(point);
        }
    }

    /// <summary>
    /// Reads the environment now, so a misspelt point stops the start with a message that says
    /// what to fix rather than failing later inside a message handler.
    /// </summary>
    /// <exception cref="InvalidOperationException">The variables are set but invalid.</exception>
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
}

/// <summary>One armed crash point: its name and the occurrence that kills.</summary>
internal sealed class CrashPlan
{
    private readonly string _point;
    private readonly int _after;
    private int _count;

    private CrashPlan(string point, int after)
    {
        _point = point;
        _after = after;
    }

    public string Point => _point;

    public int After => _after;

    /// <summary>The plan of the two variables' values; null when <paramref name="at"/> is unset.</summary>
    /// <exception cref="InvalidOperationException">An unknown point, or an occurrence that is not a positive number.</exception>
    public static CrashPlan? Parse(string? at, string? after)
    {
        if (string.IsNullOrWhiteSpace(at))
        {
            return null;
        }

        at = at.Trim();
        if (!CrashPoints.All.Contains(at))
        {
            throw new InvalidOperationException(
                $"{CrashPoint.AtVariable}='{at}' is not a crash point; use one of: {string.Join(", ", CrashPoints.All)}");
        }

        var occurrence = 1;
        if (!string.IsNullOrWhiteSpace(after)
            && (!int.TryParse(after.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out occurrence) || occurrence < 1))
        {
            throw new InvalidOperationException($"{CrashPoint.AfterVariable}='{after}' must be a positive whole number (the occurrence of {at} that kills).");
        }

        return new CrashPlan(at, occurrence);
    }

    public void Hit(string point)
    {
        if (!string.Equals(point, _point, StringComparison.Ordinal))
        {
            return;
        }

        var count = Interlocked.Increment(ref _count);
        if (count == _after)
        {
            Die(point, count);
        }
    }

    private static void Die(string point, int occurrence)
    {
        using var process = Process.GetCurrentProcess();
        try
        {
            Console.Error.WriteLine($"TXCOORD-CRASH-POINT {point} (occurrence {occurrence}): killing process {process.Id} now");
            Console.Error.Flush();
        }
        catch (IOException)
        {
            // Nowhere to say it: die all the same.
        }

        // SIGKILL to ourselves: no finally blocks, no disposal, no broker or database goodbye.
        process.Kill();
        Environment.FailFast($"crash point {point}");
    }
}
