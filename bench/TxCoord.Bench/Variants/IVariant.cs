namespace TxCoord.Bench.Variants;

/// <summary>One transfer of the workload: <see cref="Amount"/> from account <see cref="From"/> in bank A to account <see cref="To"/> in bank B.</summary>
internal readonly record struct Transfer(Guid TransferId, int From, int To, long Amount);

/// <summary>How one transfer ended, from the client's point of view.</summary>
internal enum TransferOutcome
{
    Committed,

    /// <summary>Definitely not applied (refused, rolled back, or failed before any commit).</summary>
    Aborted,

    /// <summary>The client cannot tell (a timeout after commit was asked for): applied everywhere or nowhere.</summary>
    InDoubt,
}

/// <summary>The result of one transfer; <see cref="Reason"/> says why it did not commit.</summary>
internal readonly record struct TransferResult(TransferOutcome Outcome, string? Reason = null)
{
    public static TransferResult Committed { get; } = new(TransferOutcome.Committed);
}

/// <summary>Where a variant's committed transfer leaves its rows in <c>applied_transfers</c>, for the checks after the run.</summary>
internal enum AppliedRows
{
    /// <summary>No rows: the variant only moves balances.</summary>
    None,

    /// <summary>A 'debit' row in bank A and a 'credit' row in bank B per committed transfer.</summary>
    DebitInACreditInB,
}

/// <summary>A process the variant runs besides the benchmark itself, whose CPU and memory are measured.</summary>
internal sealed record MeasuredProcess(string Role, int ProcessId);

/// <summary>The variant cannot run here; the table says why (e.g. 3PC is not available yet).</summary>
internal sealed class VariantUnavailableException(string reason) : Exception(reason);

/// <summary>One way of doing the workload's transfer. Variants run one after another against the same servers.</summary>
internal interface IVariant : IAsyncDisposable
{
    /// <summary>B1, B1', B2, B2ts, B3, B3e or B4.</summary>
    string Id { get; }

    string Description { get; }

    AppliedRows Rows { get; }

    /// <summary>The processes besides this one that do the variant's work (the coordinator, participant services).</summary>
    IReadOnlyList<MeasuredProcess> Processes { get; }

    /// <summary>Gets ready (starts services, waits until they answer). Throws <see cref="VariantUnavailableException"/> when it cannot run here.</summary>
    Task StartAsync(CancellationToken cancellationToken);

    /// <summary>Runs one transfer to its end. Never throws for a failed transfer: the result says how it ended.</summary>
    Task<TransferResult> TransferAsync(Transfer transfer, CancellationToken cancellationToken);
}
