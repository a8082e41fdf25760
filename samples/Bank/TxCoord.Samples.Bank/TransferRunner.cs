using System.Globalization;
using TxCoord.Contracts;
using TxCoord.Participants;

namespace TxCoord.Samples.Bank;

/// <summary>One transfer as its initiator saw it: what it asked for and the outcome it was told.</summary>
/// <param name="TransferId">The business id carried by the debit and credit messages.</param>
/// <param name="Outcome">The outcome reported to the initiator by commit (or rollback).</param>
public sealed record TransferRecord(Guid TransferId, CommitOutcome Outcome)
{
    /// <summary>The global transaction that carried the transfer; null when unknown.</summary>
    public TransactionId? TransactionId { get; init; }

    public int FromAccount { get; init; }

    public int ToAccount { get; init; }

    /// <summary>The amount asked for; 0 when unknown (verification then does not compare amounts).</summary>
    public long Amount { get; init; }

    /// <summary>True for the transfers made deliberately larger than any balance, to be refused.</summary>
    public bool Oversized { get; init; }

    /// <summary>Why a participant refused the work (e.g. "insufficient funds in account 7"); null when nobody refused.</summary>
    public string? Refusal { get; init; }

    /// <summary>The reason that came with the outcome, if any (rollback reason, in-doubt cause).</summary>
    public string? Reason { get; init; }
}

/// <summary>What a run of transfers did.</summary>
public sealed record TransferRunResult(IReadOnlyList<TransferRecord> Transfers, int Committed, int Aborted, int InDoubt, TimeSpan Elapsed)
{
    /// <summary>Finished transfers per second over the whole run.</summary>
    public double TransfersPerSecond => Elapsed > TimeSpan.Zero ? Transfers.Count / Elapsed.TotalSeconds : 0;
}

/// <summary>Settings of a <see cref="TransferRunner"/> run. Defaults are the documented constants.</summary>
public sealed record TransferRunOptions
{
    public const int DefaultTransfers = 300;
    public const int DefaultConcurrency = 32;
    public const int DefaultAccounts = 1000;
    public const double DefaultRefusedShare = 0.15;
    public const long DefaultMaxAmount = 100;

    /// <summary>Far above any balance the demo seeds: a debit of it is always refused.</summary>
    public const long DefaultOversizedAmount = 1_000_000_000_000;

    public static readonly TimeSpan DefaultProgressInterval = TimeSpan.FromSeconds(1);

    /// <summary>How many transfers to run.</summary>
    public int Transfers { get; init; } = DefaultTransfers;

    /// <summary>How many run at once.</summary>
    public int Concurrency { get; init; } = DefaultConcurrency;

    /// <summary>Accounts are picked at random from 1..Accounts in each bank.</summary>
    public int Accounts { get; init; } = DefaultAccounts;

    /// <summary>The share (0..1) of transfers for <see cref="OversizedAmount"/>, which the debit refuses.</summary>
    public double RefusedShare { get; init; } = DefaultRefusedShare;

    /// <summary>Ordinary transfers move a random amount in 1..MaxAmount.</summary>
    public long MaxAmount { get; init; } = DefaultMaxAmount;

    /// <summary>The amount of the transfers meant to be refused; must exceed every balance.</summary>
    public long OversizedAmount { get; init; } = DefaultOversizedAmount;

    /// <summary>The participant that debits (bank A).</summary>
    public string DebitParticipant { get; init; } = BankReadiness.DefaultDebitParticipant;

    /// <summary>The participant that credits (bank B).</summary>
    public string CreditParticipant { get; init; } = BankReadiness.DefaultCreditParticipant;

    /// <summary>Seed of the random choices (accounts, amounts, which are oversized); null for a new one each run.</summary>
    public int? RandomSeed { get; init; }

    /// <summary>How often a progress line is written.</summary>
    public TimeSpan ProgressInterval { get; init; } = DefaultProgressInterval;

    /// <summary>Options of each transaction (protocol, timeout); null takes the initiator's defaults.</summary>
    public TransactionOptions? Transaction { get; init; }

    /// <summary>
    /// Early prepare (2PC only): the two banks are declared at Begin and each prepares its branch
    /// right after its work, so the commit needs no Prepare round.
    /// </summary>
    public bool EarlyPrepare { get; init; }

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegative(Transfers);
        ArgumentOutOfRangeException.ThrowIfLessThan(Concurrency, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(Accounts, 1);
        if (RefusedShare is < 0 or > 1 || double.IsNaN(RefusedShare))
        {
            throw new ArgumentOutOfRangeException(nameof(RefusedShare), RefusedShare, "The refused share must be between 0 and 1.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(MaxAmount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(OversizedAmount, MaxAmount);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ProgressInterval, TimeSpan.Zero);
        BranchGid.EnsureValidName(DebitParticipant, "debit participant");
        BranchGid.EnsureValidName(CreditParticipant, "credit participant");
        if (EarlyPrepare && Transaction?.Protocol is CommitProtocol.ThreePhase)
        {
            throw new ArgumentException("Early prepare is for 2PC only; run 3PC transfers without it.", nameof(EarlyPrepare));
        }
    }
}

/// <summary>
/// Runs bank transfers through an initiator: each one begins a global transaction, debits an
/// account at <see cref="TransferRunOptions.DebitParticipant"/>, credits one at
/// <see cref="TransferRunOptions.CreditParticipant"/> if the debit succeeded, and commits (the SDK
/// turns a refused work into a rollback). Every outcome is recorded for <see cref="BankLedger.VerifyAsync"/>.
/// </summary>
public sealed class TransferRunner(ITransactionInitiator initiator, TimeProvider? timeProvider = null)
{
    private readonly ITransactionInitiator _initiator = initiator ?? throw new ArgumentNullException(nameof(initiator));
    private readonly TimeProvider _time = timeProvider ?? TimeProvider.System;

    /// <summary>
    /// Runs <see cref="TransferRunOptions.Transfers"/> transfers, <see cref="TransferRunOptions.Concurrency"/>
    /// at a time, writing a progress line about every <see cref="TransferRunOptions.ProgressInterval"/>
    /// to <paramref name="progress"/> (null: quiet). A transfer that throws is recorded, not rethrown:
    /// Aborted when it failed before commit was asked for (the coordinator cannot commit it),
    /// InDoubt when commit itself failed. Cancellation stops the run and throws.
    /// </summary>
    public async Task<TransferRunResult> RunAsync(TransferRunOptions? options = null, TextWriter? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new TransferRunOptions();
        options.Validate();
        var plan = Plan(options);
        var records = new TransferRecord[plan.Length];
        var counters = new Counters();
        var started = _time.GetTimestamp();

        using var stopProgress = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var reporting = progress is null
            ? Task.CompletedTask
            : ReportProgressAsync(progress, options, counters, plan.Length, started, stopProgress.Token);
        try
        {
            await Parallel.ForEachAsync(
                Enumerable.Range(0, plan.Length),
                new ParallelOptions { MaxDegreeOfParallelism = options.Concurrency, CancellationToken = cancellationToken },
                async (i, token) =>
                {
                    var record = await RunOneAsync(plan[i], options, token);
                    records[i] = record;
                    counters.Add(record.Outcome);
                });
        }
        finally
        {
            await stopProgress.CancelAsync();
            await reporting;
        }

        var elapsed = _time.GetElapsedTime(started);
        if (progress is not null)
        {
            await progress.WriteLineAsync(ProgressLine(counters, plan.Length, elapsed));
        }

        return new TransferRunResult(records, counters.Committed, counters.Aborted, counters.InDoubt, elapsed);
    }

    private async Task<TransferRecord> RunOneAsync(TransferRecord planned, TransferRunOptions options, CancellationToken cancellationToken)
    {
        // Not disposed: commit or rollback below always ends the transaction, and disposing
        // would only repeat a rollback that already failed (or outlive a cancelled run).
        var transaction = _initiator.Begin(options.EarlyPrepare
            ? (options.Transaction ?? new TransactionOptions()) with { Participants = [options.DebitParticipant, options.CreditParticipant] }
            : options.Transaction);
        string? refusal = null;
        var commitAsked = false;
        CommitResult result;
        try
        {
            var debit = await transaction.SendAsync(
                options.DebitParticipant,
                new DebitAccount { TransferId = planned.TransferId, AccountId = planned.FromAccount, Amount = planned.Amount },
                options.EarlyPrepare,
                cancellationToken);
            if (!debit.Succeeded)
            {
                refusal = debit.Reason ?? $"{options.DebitParticipant} refused the debit";
            }
            else
            {
                var credit = await transaction.SendAsync(
                    options.CreditParticipant,
                    new CreditAccount { TransferId = planned.TransferId, AccountId = planned.ToAccount, Amount = planned.Amount },
                    options.EarlyPrepare,
                    cancellationToken);
                if (!credit.Succeeded)
                {
                    refusal = credit.Reason ?? $"{options.CreditParticipant} refused the credit";
                }
            }

            // After a refusal this rolls back: the refusing branch is gone, the transaction can only abort.
            commitAsked = true;
            result = await transaction.CommitAsync(cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            var failure = $"{e.GetType().Name}: {e.Message}";
            result = commitAsked
                ? new CommitResult(transaction.Id, CommitOutcome.InDoubt, $"commit failed: {failure}")
                : await RollBackAfterFailureAsync(transaction, $"failed before commit: {failure}");
        }

        return planned with { TransactionId = transaction.Id, Outcome = result.Outcome, Refusal = refusal, Reason = result.Reason };
    }

    private static async Task<CommitResult> RollBackAfterFailureAsync(IGlobalTransaction transaction, string reason)
    {
        try
        {
            return await transaction.RollbackAsync(reason, CancellationToken.None);
        }
        catch (Exception e)
        {
            // Commit was never asked for, so no coordinator can have decided commit: the
            // branches roll back after their timeout at the latest.
            return new CommitResult(transaction.Id, CommitOutcome.Aborted, $"{reason}; the rollback was not confirmed ({e.GetType().Name}: {e.Message})");
        }
    }

    private static TransferRecord[] Plan(TransferRunOptions options)
    {
        var random = options.RandomSeed is { } seed ? new Random(seed) : new Random();
        var plan = new TransferRecord[options.Transfers];
        for (var i = 0; i < plan.Length; i++)
        {
            var oversized = random.NextDouble() < options.RefusedShare;
            plan[i] = new TransferRecord(Guid.CreateVersion7(), CommitOutcome.InDoubt)
            {
                FromAccount = random.Next(1, options.Accounts + 1),
                ToAccount = random.Next(1, options.Accounts + 1),
                Amount = oversized ? options.OversizedAmount : random.NextInt64(1, options.MaxAmount + 1),
                Oversized = oversized,
            };
        }

        return plan;
    }

    private async Task ReportProgressAsync(
        TextWriter progress, TransferRunOptions options, Counters counters, int total, long started, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(options.ProgressInterval, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                await progress.WriteLineAsync(ProgressLine(counters, total, _time.GetElapsedTime(started)));
            }
        }
        catch (OperationCanceledException)
        {
            // The run ended.
        }
    }

    private static string ProgressLine(Counters counters, int total, TimeSpan elapsed)
    {
        var (committed, aborted, inDoubt) = (counters.Committed, counters.Aborted, counters.InDoubt);
        var done = committed + aborted + inDoubt;
        var rate = elapsed > TimeSpan.Zero ? done / elapsed.TotalSeconds : 0;
        return string.Create(CultureInfo.InvariantCulture,
            $"  {elapsed.TotalSeconds,6:0.0} s  {done,6}/{total}  committed {committed}, aborted {aborted}, in doubt {inDoubt}  ({rate:0.0} transfers/s)");
    }

    private sealed class Counters
    {
        private int _committed;
        private int _aborted;
        private int _inDoubt;

        public int Committed => Volatile.Read(ref _committed);

        public int Aborted => Volatile.Read(ref _aborted);

        public int InDoubt => Volatile.Read(ref _inDoubt);

        public void Add(CommitOutcome outcome)
        {
            switch (outcome)
            {
                case CommitOutcome.Committed:
                    Interlocked.Increment(ref _committed);
                    break;
                case CommitOutcome.Aborted:
                    Interlocked.Increment(ref _aborted);
                    break;
                default:
                    Interlocked.Increment(ref _inDoubt);
                    break;
            }
        }
    }
}
