using System.Net.Sockets;
using Npgsql;

namespace TxCoord.Coordinator.Recovery;

/// <summary>A failure of recovery, with a message for the operator that says what to check or fix.</summary>
internal sealed class RecoveryException(string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>
    /// Turns a database failure into a message naming the database (host, port, name, user), the
    /// setting it came from, and the likely fix: unreachable server, wrong credentials, unknown
    /// database or role, a role that may not finish another role's prepared transaction.
    /// </summary>
    public static RecoveryException From(Exception exception, string what, string connectionString, string setting)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        var where = $"{builder.Host}:{builder.Port}/{builder.Database ?? "(default database)"} as user '{builder.Username ?? "(default)"}'";
        var message = exception switch
        {
            PostgresException { SqlState: PostgresErrorCodes.InvalidPassword } =>
                $"{what}: authentication failed for {where}: wrong password. Fix the credentials in {setting}.",
            PostgresException { SqlState: PostgresErrorCodes.InvalidAuthorizationSpecification } e =>
                $"{what}: the server refused {where}: {e.MessageText}. Fix the user or the server's pg_hba.conf ({setting}).",
            PostgresException { SqlState: PostgresErrorCodes.InvalidCatalogName } e =>
                $"{what}: {e.MessageText} on {builder.Host}:{builder.Port}. Fix Database= in {setting}.",
            PostgresException { SqlState: PostgresErrorCodes.InsufficientPrivilege } e =>
                $"{what}: permission denied for {where}: {e.MessageText}{(e.Hint is { Length: > 0 } hint ? $" ({hint})" : "")}. " +
                "PostgreSQL lets only the role that prepared a transaction, or a superuser, finish it, and only from the database it was prepared in: " +
                $"connect as that role or as a superuser ({setting}).",
            PostgresException e => $"{what}: {where}: {e.SqlState} {e.MessageText}",
            NpgsqlException { InnerException: SocketException socket } =>
                $"{what}: cannot reach {builder.Host}:{builder.Port} ({socket.SocketErrorCode}: {socket.Message}). Is PostgreSQL running there? Check {setting}.",
            NpgsqlException { InnerException: TimeoutException } or TimeoutException =>
                $"{what}: no answer from {builder.Host}:{builder.Port} within {builder.Timeout} s. Is the server up and reachable? Check {setting}.",
            NpgsqlException e => $"{what}: {where}: {e.Message}. Check {setting}.",
            _ => $"{what}: {exception.Message}",
        };
        return new RecoveryException(message, exception);
    }
}

/// <summary>A forced decision refused for a reason the operator can act on (the message says which); nothing was changed.</summary>
internal sealed class ForceRefusedException(string message) : Exception(message);
