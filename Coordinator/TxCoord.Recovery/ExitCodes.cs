namespace TxCoord.Recovery;

/// <summary>The tool's exit codes, for scripts (also in the usage text and the README).</summary>
internal static class ExitCodes
{
    /// <summary>Nothing of this coordinator is in doubt (verify: the journal is consistent).</summary>
    public const int NothingInDoubt = 0;

    /// <summary>An error: a database could not be reached or used, or an action failed.</summary>
    public const int Error = 1;

    /// <summary>Bad usage or configuration.</summary>
    public const int Usage = 2;

    /// <summary>Prepared transactions of this coordinator remain in doubt.</summary>
    public const int InDoubt = 3;

    /// <summary>verify: the journal has integrity problems.</summary>
    public const int JournalDamaged = 4;
}
