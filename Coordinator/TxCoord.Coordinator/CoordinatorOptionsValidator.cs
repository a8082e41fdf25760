using Microsoft.Extensions.Options;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Contracts.Security;

namespace TxCoord.Coordinator;

/// <summary>Checks <see cref="CoordinatorOptions"/>; each failure names the setting and says what to fix.</summary>
internal sealed class CoordinatorOptionsValidator : IValidateOptions<CoordinatorOptions>
{
    public ValidateOptionsResult Validate(string? name, CoordinatorOptions options)
    {
        var failures = Check(options);
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    /// <summary>Every problem with <paramref name="options"/>, empty when they are valid.</summary>
    public static List<string> Check(CoordinatorOptions options)
    {
        var failures = new List<string>();
        if (!BranchGid.IsValidName(options.CoordinatorId))
        {
            failures.Add(
                $"{nameof(CoordinatorOptions.CoordinatorId)} '{options.CoordinatorId}' is invalid: use 1 to {BranchGid.MaxNameLength} characters of letters, digits, '_', '.' or '-'.");
        }

        if (CheckConnectionString(options.JournalConnectionString) is { } problem)
        {
            failures.Add($"{nameof(CoordinatorOptions.JournalConnectionString)} {problem}.");
        }

        Positive(failures, nameof(CoordinatorOptions.VoteTimeout), options.VoteTimeout);
        Positive(failures, nameof(CoordinatorOptions.DefaultTransactionTimeout), options.DefaultTransactionTimeout);
        Positive(failures, nameof(CoordinatorOptions.RedriveInitialInterval), options.RedriveInitialInterval);
        Positive(failures, nameof(CoordinatorOptions.RedriveMaxInterval), options.RedriveMaxInterval);
        Positive(failures, nameof(CoordinatorOptions.TickInterval), options.TickInterval);
        if (options.BatchWindow < TimeSpan.Zero || options.BatchWindow > CoordinatorOptions.MaxBatchWindow)
        {
            failures.Add(
                $"{nameof(CoordinatorOptions.BatchWindow)} ({options.BatchWindow}) must lie between 00:00:00 (no batching) and {CoordinatorOptions.MaxBatchWindow}.");
        }

        AtLeast(failures, nameof(CoordinatorOptions.MaxParticipantsPerTransaction), options.MaxParticipantsPerTransaction, 1);
        AtLeast(failures, nameof(CoordinatorOptions.MaxWorksPerParticipant), options.MaxWorksPerParticipant, 1);
        AtLeast(failures, nameof(CoordinatorOptions.MaxReasonLength), options.MaxReasonLength, 100);
        if (options.RedriveMaxInterval < options.RedriveInitialInterval)
        {
            failures.Add(
                $"{nameof(CoordinatorOptions.RedriveMaxInterval)} ({options.RedriveMaxInterval}) must not be shorter than {nameof(CoordinatorOptions.RedriveInitialInterval)} ({options.RedriveInitialInterval}).");
        }

        failures.AddRange(SecurityOptionsCheck.Check(options.Security, SenderRole.Coordinator, [options.CoordinatorId]));
        return failures;
    }

    /// <summary>Null when <paramref name="connectionString"/> is a usable Npgsql connection string, else what is wrong with it.</summary>
    public static string? CheckConnectionString(string? connectionString)
    {
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            return "is required: an Npgsql connection string such as 'Host=127.0.0.1;Port=5432;Username=postgres;Database=txcoord'";
        }

        try
        {
            var builder = new NpgsqlConnectionStringBuilder(connectionString);
            return string.IsNullOrWhiteSpace(builder.Host) ? "names no Host" : null;
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or InvalidCastException or OverflowException)
        {
            return $"cannot be parsed: {ex.Message}";
        }
    }

    private static void AtLeast(List<string> failures, string name, int value, int minimum)
    {
        if (value < minimum)
        {
            failures.Add($"{name} must be at least {minimum} (it is {value}).");
        }
    }

    private static void Positive(List<string> failures, string name, TimeSpan value)
    {
        if (value <= TimeSpan.Zero)
        {
            failures.Add($"{name} must be positive (it is {value}).");
        }
    }
}
