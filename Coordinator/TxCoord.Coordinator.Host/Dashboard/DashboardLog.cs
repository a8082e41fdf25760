namespace TxCoord.Coordinator.Host.Dashboard;

/// <summary>
/// The dashboard's log messages. Event ids are stable: 1200-1229 (1230-1249 are the monitoring
/// classes in the coordinator library). 1200-1209 admin actions, 1210-1219 access, 1220-1229 start;
/// 1500-1549 the dashboard's defences (issue 16).
/// </summary>
internal static partial class DashboardLog
{
    [LoggerMessage(1200, LogLevel.Warning, "Transaction {TransactionId}: operator {Actor} ({Credential} from {RemoteAddress}) asks {Action}: {Reason} (audit #{AuditId})")]
    public static partial void AdminRequested(ILogger logger, Guid transactionId, string actor, string credential, string? remoteAddress, string action, string reason, long auditId);

    [LoggerMessage(1201, LogLevel.Warning, "Transaction {TransactionId}: {Action} {Outcome}: {Result} (audit #{AuditId})")]
    public static partial void AdminCompleted(ILogger logger, Guid transactionId, string action, string outcome, string result, long auditId);

    [LoggerMessage(1202, LogLevel.Error, "Transaction {TransactionId}: {Action} failed (audit #{AuditId})")]
    public static partial void AdminFailed(ILogger logger, Exception exception, Guid transactionId, string action, long auditId);

    [LoggerMessage(1203, LogLevel.Critical, "Transaction {TransactionId}: heuristic {Outcome} forced by operator {Actor}: {Reason} (audit #{AuditId})")]
    public static partial void Heuristic(ILogger logger, Guid transactionId, string outcome, string actor, string reason, long auditId);

    [LoggerMessage(1210, LogLevel.Warning, "Dashboard: {Method} {Path} from {RemoteAddress} refused with {StatusCode}: {Reason}")]
    public static partial void AccessRefused(ILogger logger, string method, string path, string? remoteAddress, int statusCode, string reason);

    [LoggerMessage(1500, LogLevel.Warning, "Dashboard: {Address} sent {Failures} wrong keys within {Window}: every request from it is refused with 429 until {Until} (key guessing?)")]
    public static partial void KeyGuessingLockedOut(ILogger logger, string address, int failures, TimeSpan window, DateTimeOffset until);

    [LoggerMessage(1220, LogLevel.Information, "Dashboard ready: {Settings}")]
    public static partial void Ready(ILogger logger, string settings);

    [LoggerMessage(1221, LogLevel.Critical, "Dashboard: the audit table could not be created in the journal database; check the journal connection string and its rights")]
    public static partial void AuditSchemaFailed(ILogger logger, Exception exception);
}
