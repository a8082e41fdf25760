using Npgsql;

namespace TxCoord.Participants.PostgreSql;

/// <summary>Thrown at start when the participant's PostgreSQL cannot prepare transactions at all.</summary>
public sealed class PreparedTransactionsDisabledException(string server)
    : InvalidOperationException(
        $"PostgreSQL at {server} has max_prepared_transactions = 0, so it cannot run PREPARE TRANSACTION. " +
        "Set max_prepared_transactions in postgresql.conf (at least the number of branches that may be prepared at once, " +
        "e.g. equal to max_connections) and restart PostgreSQL: the setting only changes at server start.");

/// <summary>Turns PostgreSQL errors into what they mean for a branch.</summary>
internal static class PostgresErrors
{
    public const string UndefinedObject = "42704";       // prepared transaction does not exist
    public const string DuplicateObject = "42710";       // GID already in use
    public const string UniqueViolation = "23505";       // our marker: the GID was aborted first
    public const string OutOfMemory = "53200";           // max_prepared_transactions exhausted
    public const string PrerequisiteState = "55000";     // prepared transactions disabled
    public const string FeatureNotSupported = "0A000";   // e.g. PREPARE after using temporary tables

    public static bool IsNoSuchPreparedTransaction(Exception e) =>
        e is PostgresException { SqlState: UndefinedObject };

    /// <summary>The reason a failed PREPARE becomes a No vote, worded so an operator knows what to do.</summary>
    public static string DescribePrepareFailure(Exception e) => e switch
    {
        PostgresException { SqlState: UniqueViolation, TableName: "branch_outcomes" } =>
            "the transaction was aborted before this branch could prepare",
        PostgresException { SqlState: OutOfMemory } p =>
            $"max_prepared_transactions is exhausted on the participant's PostgreSQL ({p.MessageText}); raise max_prepared_transactions or finish old prepared transactions",
        PostgresException { SqlState: PrerequisiteState } p when p.MessageText.Contains("disabled", StringComparison.OrdinalIgnoreCase) =>
            "prepared transactions are disabled on the participant's PostgreSQL: set max_prepared_transactions above 0 and restart it",
        PostgresException { SqlState: DuplicateObject } =>
            "the GID is already in use by another prepared transaction",
        PostgresException { SqlState: FeatureNotSupported } p =>
            $"PostgreSQL cannot prepare this work ({p.MessageText})",
        PostgresException p => $"PREPARE failed: {p.SqlState} {p.MessageText}",
        _ => $"PREPARE failed: {e.Message}",
    };
}
