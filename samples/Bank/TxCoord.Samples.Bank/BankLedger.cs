using System.Globalization;
using Dapper;
using Npgsql;
using TxCoord.Participants;

namespace TxCoord.Samples.Bank;

/// <summary>One bank database, named for messages (e.g. "bank_a").</summary>
public sealed record BankDatabase(string Name, NpgsqlDataSource DataSource);

/// <summary>
/// Read-only checks of the two banks, shared by the demo and the integration tests: totals,
/// prepared transactions left behind, and whether every transfer's reported outcome matches
/// what the databases committed.
/// </summary>
public static class BankLedger
{
    /// <summary>How often <see cref="WaitForNoPreparedAsync"/> looks again.</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(200);

    private const string TotalBalanceSql = "SELECT coalesce(sum(balance), 0)::bigint FROM accounts";

    private const string CountPreparedSql = "SELECT count(*)::int FROM pg_prepared_xacts WHERE database = current_database()";

    private const string AppliedSql = "SELECT transfer_id AS TransferId, amount AS Amount FROM applied_transfers WHERE kind = @Kind";

    /// <summary>The sum of all balances in the database.</summary>
    public static async Task<long> TotalBalanceAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<long>(new CommandDefinition(TotalBalanceSql, cancellationToken: cancellationToken));
    }

    /// <summary>How many prepared transactions (any GID) the database holds right now.</summary>
    public static async Task<int> CountPreparedAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<int>(new CommandDefinition(CountPreparedSql, cancellationToken: cancellationToken));
    }

    /// <summary>
    /// Waits until no prepared transaction is left in any of <paramref name="databases"/> (phase 2
    /// finished everywhere) or <paramref name="timeout"/> passes, writing a progress line about
    /// once a second to <paramref name="progress"/> while some are left. Returns what is left
    /// per database, in the order given: all zeros means done.
    /// </summary>
    public static async Task<IReadOnlyList<int>> WaitForNoPreparedAsync(
        IReadOnlyList<BankDatabase> databases,
        TimeSpan timeout,
        TextWriter? progress = null,
        TimeProvider? timeProvider = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(databases);
        var time = timeProvider ?? TimeProvider.System;
        var started = time.GetTimestamp();
        var lastReport = started;
        while (true)
        {
            var left = new int[databases.Count];
            for (var i = 0; i < databases.Count; i++)
            {
                left[i] = await CountPreparedAsync(databases[i].DataSource, cancellationToken);
            }

            var elapsed = time.GetElapsedTime(started);
            if (Array.TrueForAll(left, n => n == 0) || elapsed >= timeout)
            {
                return left;
            }

            if (progress is not null && time.GetElapsedTime(lastReport) >= TimeSpan.FromSeconds(1))
            {
                lastReport = time.GetTimestamp();
                var counts = string.Join(", ", databases.Select((d, i) => $"{d.Name} {left[i]}"));
                await progress.WriteLineAsync(string.Create(
                    CultureInfo.InvariantCulture, $"  waiting for phase 2 to finish ({elapsed.TotalSeconds:0.0} s): prepared {counts}"));
            }

            await Task.Delay(PollInterval, time, cancellationToken);
        }
    }

    /// <summary>
    /// Checks the outcome every transfer reported to its initiator against what the two banks
    /// committed (debits in <paramref name="bankA"/>, credits in <paramref name="bankB"/>):
    /// Committed means exactly one debit row and one credit row (with the transfer's amount when
    /// the record has one); Aborted means no row in either; InDoubt means both or neither
    /// (atomicity). Call it once nothing is left prepared. When the initial totals of the banks are
    /// given, also checks that the balances moved by exactly the applied rows, so that no balance
    /// change happened without its row or twice. Transfers not in the list are not checked.
    /// </summary>
    public static async Task<BankVerificationResult> VerifyAsync(
        NpgsqlDataSource bankA,
        NpgsqlDataSource bankB,
        IReadOnlyCollection<TransferRecord> transfers,
        long? initialTotalA = null,
        long? initialTotalB = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(bankA);
        ArgumentNullException.ThrowIfNull(bankB);
        ArgumentNullException.ThrowIfNull(transfers);

        var debits = await ReadAppliedAsync(bankA, "debit", cancellationToken);
        var credits = await ReadAppliedAsync(bankB, "credit", cancellationToken);
        var violations = new List<string>();
        int committed = 0, aborted = 0, inDoubtApplied = 0, inDoubtNotApplied = 0;
        foreach (var transfer in transfers)
        {
            long? debit = debits.TryGetValue(transfer.TransferId, out var debited) ? debited : null;
            long? credit = credits.TryGetValue(transfer.TransferId, out var credited) ? credited : null;
            var what = $"transfer {transfer.TransferId}{(transfer.TransactionId is { } tx ? $" (transaction {tx})" : "")} reported {transfer.Outcome}";
            switch (transfer.Outcome)
            {
                case CommitOutcome.Committed:
                    committed++;
                    if (debit is null || credit is null)
                    {
                        violations.Add($"{what}, but its debit is {Describe(debit)} in bank A and its credit {Describe(credit)} in bank B");
                    }
                    else if (transfer.Amount > 0 && (debit.Value != transfer.Amount || credit.Value != transfer.Amount))
                    {
                        violations.Add($"{what} for {transfer.Amount}, but bank A debited {debit.Value} and bank B credited {credit.Value}");
                    }

                    break;
                case CommitOutcome.Aborted:
                    aborted++;
                    if (debit is not null || credit is not null)
                    {
                        violations.Add($"{what}, but its debit is {Describe(debit)} in bank A and its credit {Describe(credit)} in bank B");
                    }

                    break;
                default:
                    if (debit is null != credit is null)
                    {
                        violations.Add($"{what} and is not atomic: its debit is {Describe(debit)} in bank A and its credit {Describe(credit)} in bank B");
                    }
                    else if (debit is null)
                    {
                        inDoubtNotApplied++;
                    }
                    else
                    {
                        inDoubtApplied++;
                    }

                    break;
            }
        }

        if (initialTotalA is { } startA)
        {
            var total = await TotalBalanceAsync(bankA, cancellationToken);
            var applied = debits.Values.Sum();
            if (total != startA - applied)
            {
                violations.Add(string.Create(CultureInfo.InvariantCulture,
                    $"bank A holds {total:N0}, but {startA:N0} less its {debits.Count:N0} applied debits ({applied:N0}) is {startA - applied:N0}"));
            }
        }

        if (initialTotalB is { } startB)
        {
            var total = await TotalBalanceAsync(bankB, cancellationToken);
            var applied = credits.Values.Sum();
            if (total != startB + applied)
            {
                violations.Add(string.Create(CultureInfo.InvariantCulture,
                    $"bank B holds {total:N0}, but {startB:N0} plus its {credits.Count:N0} applied credits ({applied:N0}) is {startB + applied:N0}"));
            }
        }

        return new BankVerificationResult(violations)
        {
            Transfers = transfers.Count,
            CommittedChecked = committed,
            AbortedChecked = aborted,
            InDoubtApplied = inDoubtApplied,
            InDoubtNotApplied = inDoubtNotApplied,
        };
    }

    private static string Describe(long? amount) => amount is { } a ? $"applied ({a})" : "missing";

    private static async Task<Dictionary<Guid, long>> ReadAppliedAsync(NpgsqlDataSource dataSource, string kind, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<(Guid TransferId, long Amount)>(
            new CommandDefinition(AppliedSql, new { Kind = kind }, cancellationToken: cancellationToken));

        // The primary key (transfer_id, kind) allows one row per transfer and kind.
        return rows.ToDictionary(row => row.TransferId, row => row.Amount);
    }
}

/// <summary>
/// What <see cref="BankLedger.VerifyAsync"/> found. <see cref="Violations"/> is empty when every
/// transfer's reported outcome matches the databases.
/// </summary>
public sealed record BankVerificationResult(IReadOnlyList<string> Violations)
{
    public bool IsOk => Violations.Count == 0;

    public int Transfers { get; init; }

    public int CommittedChecked { get; init; }

    public int AbortedChecked { get; init; }

    /// <summary>In-doubt transfers found applied in both banks (they committed).</summary>
    public int InDoubtApplied { get; init; }

    /// <summary>In-doubt transfers found in neither bank (they aborted).</summary>
    public int InDoubtNotApplied { get; init; }

    public override string ToString() => IsOk
        ? $"OK: {Transfers} transfers checked"
        : $"{Violations.Count} violation(s):{Environment.NewLine}  {string.Join(Environment.NewLine + "  ", Violations)}";
}
