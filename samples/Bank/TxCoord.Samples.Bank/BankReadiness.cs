using System.Globalization;
using TxCoord.Contracts;
using TxCoord.Participants;

namespace TxCoord.Samples.Bank;

/// <summary>Waits until the coordinator and the bank participants answer, e.g. while their services start.</summary>
public static class BankReadiness
{
    /// <summary>The participant id of the bank that debits.</summary>
    public const string DefaultDebitParticipant = "bank-a";

    /// <summary>The participant id of the bank that credits.</summary>
    public const string DefaultCreditParticipant = "bank-b";

    /// <summary>How long one probe may wait for its answer before it is sent again.</summary>
    public static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(5);

    /// <summary>The pause between two rounds of probes.</summary>
    public static readonly TimeSpan RetryInterval = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// Asks the coordinator about a transaction it has never seen until it answers (it says
    /// aborted: presumed abort). Throws <see cref="TimeoutException"/> with what to check after
    /// <paramref name="timeout"/>.
    /// </summary>
    public static async Task WaitForCoordinatorAsync(
        ITransactionInitiator initiator, TimeSpan timeout, TimeProvider? timeProvider = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(initiator);
        var time = timeProvider ?? TimeProvider.System;
        var started = time.GetTimestamp();
        var lastError = "no answer yet";
        while (true)
        {
            var remaining = timeout - time.GetElapsedTime(started);
            if (remaining <= TimeSpan.Zero)
            {
                throw new TimeoutException(
                    $"The coordinator did not answer within {Seconds(timeout)} ({lastError}): is the coordinator service running, " +
                    "with the same CoordinatorId as this initiator, on the same RabbitMQ?");
            }

            var attemptTimeout = Min(ProbeTimeout, remaining);
            using var attempt = new CancellationTokenSource(attemptTimeout, time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, attempt.Token);
            try
            {
                var answer = await initiator.GetOutcomeAsync(TransactionId.New(), linked.Token);
                if (answer.Outcome != CommitOutcome.InDoubt)
                {
                    return;
                }

                lastError = answer.Reason ?? "it has not decided";
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                lastError = $"no answer within {Seconds(attemptTimeout)}";
            }

            await Task.Delay(RetryInterval, time, cancellationToken);
        }
    }

    /// <summary>
    /// Sends <see cref="ProbeAccounts"/> to every participant in <paramref name="participants"/>,
    /// each in its own transaction that is then rolled back, until every one has answered with
    /// success (they may still be starting). Throws <see cref="TimeoutException"/> naming the
    /// participants that did not answer, and why, after <paramref name="timeout"/>.
    /// </summary>
    public static async Task WaitForParticipantsAsync(
        ITransactionInitiator initiator,
        IEnumerable<string> participants,
        TimeSpan timeout,
        TimeProvider? timeProvider = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(initiator);
        ArgumentNullException.ThrowIfNull(participants);
        var time = timeProvider ?? TimeProvider.System;
        var started = time.GetTimestamp();
        var waiting = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var participant in participants)
        {
            BranchGid.EnsureValidName(participant, "participant id");
            waiting[participant] = "no answer yet";
        }

        while (waiting.Count > 0)
        {
            foreach (var participant in waiting.Keys.ToList())
            {
                var remaining = timeout - time.GetElapsedTime(started);
                if (remaining <= TimeSpan.Zero)
                {
                    var why = string.Join("; ", waiting.Select(w => $"{w.Key}: {w.Value}"));
                    throw new TimeoutException(
                        $"Participants not ready after {Seconds(timeout)}: {why}. Is each participant service running, " +
                        "with that participant id, on the same RabbitMQ?");
                }

                var error = await ProbeAsync(initiator, participant, Min(ProbeTimeout, remaining), time, cancellationToken);
                if (error is null)
                {
                    waiting.Remove(participant);
                }
                else
                {
                    waiting[participant] = error;
                }
            }

            if (waiting.Count > 0)
            {
                await Task.Delay(RetryInterval, time, cancellationToken);
            }
        }
    }

    /// <summary>One probe in its own transaction, rolled back. Null when the participant answered with success.</summary>
    private static async Task<string?> ProbeAsync(
        ITransactionInitiator initiator, string participant, TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        // Not disposed: disposing repeats a rollback that was cut short, with no time limit. A
        // probe branch whose rollback did not arrive rolls back after its branch timeout.
        var transaction = initiator.Begin();
        using var attempt = new CancellationTokenSource(timeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, attempt.Token);
        string? error;
        try
        {
            var answer = await transaction.SendAsync(participant, new ProbeAccounts(), linked.Token);
            error = answer.Succeeded ? null : answer.Reason ?? "refused the probe";
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return $"no answer within {Seconds(timeout)}";
        }

        try
        {
            await transaction.RollbackAsync("readiness probe", linked.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // The participant answered; the branch rolls back after its timeout.
        }

        return error;
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    private static string Seconds(TimeSpan span) => string.Create(CultureInfo.InvariantCulture, $"{span.TotalSeconds:0.#} s");
}
