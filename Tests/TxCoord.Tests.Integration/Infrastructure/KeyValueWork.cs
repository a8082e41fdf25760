using Dapper;
using Npgsql;
using TxCoord.Participants;

namespace TxCoord.Tests.Integration.Infrastructure;

/// <summary>How the test participant's handler behaves for one work message.</summary>
public enum PutMode
{
    Normal,
    Refuse,
    Throw,

    /// <summary>Touches a temporary table, which PostgreSQL cannot PREPARE: the branch votes No.</summary>
    Unpreparable,

    /// <summary>Writes the key but answers <see cref="WorkResult.SuccessReadOnly"/>: a handler that lies.</summary>
    ClaimReadOnly,
}

/// <summary>The test participants' read-only work: read one key (answers <see cref="WorkResult.SuccessReadOnly"/>).</summary>
public sealed record ReadItem
{
    public required string Key { get; init; }
}

/// <summary>The test participants' work message: write one key.</summary>
public sealed record PutItem
{
    public required string Key { get; init; }
    public required string Value { get; init; }
    public PutMode Mode { get; init; }
}

/// <summary>A participant that stores keys in <c>items</c>: enough to see what committed where.</summary>
internal static class KeyValueParticipant
{
    public const string Schema = "CREATE TABLE IF NOT EXISTS items (key text PRIMARY KEY, value text NOT NULL)";

    public static async Task CreateSchemaAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.ExecuteAsync(Schema);
    }

    public static void Configure(TxCoordParticipantOptions options)
    {
        options.Handle<ReadItem>(async (branch, item, cancellationToken) =>
        {
            await branch.Connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
                "SELECT value FROM items WHERE key = @Key", new { item.Key }, branch.Transaction, cancellationToken: cancellationToken));
            return WorkResult.SuccessReadOnly;
        });
        options.Handle<PutItem>(async (branch, item, cancellationToken) =>
        {
            switch (item.Mode)
            {
                case PutMode.Refuse:
                    return WorkResult.Refuse($"refused {item.Key}");
                case PutMode.Throw:
                    throw new InvalidOperationException($"handler failure for {item.Key}");
                case PutMode.Unpreparable:
                    await branch.Connection.ExecuteAsync(new CommandDefinition(
                        "CREATE TEMP TABLE scratch (x int) ON COMMIT DROP", transaction: branch.Transaction, cancellationToken: cancellationToken));
                    break;
            }

            await branch.Connection.ExecuteAsync(new CommandDefinition(
                "INSERT INTO items (key, value) VALUES (@Key, @Value)", new { item.Key, item.Value }, branch.Transaction, cancellationToken: cancellationToken));
            return item.Mode == PutMode.ClaimReadOnly ? WorkResult.SuccessReadOnly : WorkResult.Success;
        });
    }

    public static async Task<string?> ReadAsync(string connectionString, string key)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        return await connection.QuerySingleOrDefaultAsync<string>("SELECT value FROM items WHERE key = @key", new { key });
    }

    public static async Task<long> CountPreparedAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        return await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()");
    }
}
