namespace TxCoord.Faults;

/// <summary>The switches of every crash point and fault seam, checked together at start.</summary>
internal static class FaultInjection
{
    /// <summary>
    /// Reads <c>TXCOORD_CRASH_AT</c>, <c>TXCOORD_CRASH_AFTER</c>, <c>TXCOORD_BUS_FAULTS</c> and
    /// <c>TXCOORD_DB_FAULTS</c> now, so a typo stops the start with a message that says what to
    /// fix instead of failing inside a message handler later.
    /// </summary>
    /// <exception cref="InvalidOperationException">One of them is set but invalid.</exception>
    public static void EnsureValid()
    {
        CrashPoint.EnsureValid();
        BusFaults.EnsureValid();
        DbFaults.EnsureValid();
    }

    /// <summary>True when any crash point or fault is armed in this process.</summary>
    public static bool IsArmed => CrashPoint.IsArmed || BusFaults.IsArmed || DbFaults.IsArmed;
}
