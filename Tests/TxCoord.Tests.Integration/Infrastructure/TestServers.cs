using Npgsql;

namespace TxCoord.Tests.Integration.Infrastructure;

/// <summary>
/// The real PostgreSQL and RabbitMQ that <c>./run.sh test</c> started on private ports. The
/// suite never starts or skips on its own: without them it fails and says how to run it.
/// </summary>
internal static class TestServers
{
    public static string PostgreSql => Require("TXCOORD_TEST_PG");

    public static string PostgreSqlWithoutPreparedTransactions => Require("TXCOORD_TEST_PG_NOPREPARED");

    public static Uri RabbitMq => new(Require("TXCOORD_TEST_RABBITMQ"));

    public static string ConnectionString(string database, string? server = null) =>
        new NpgsqlConnectionStringBuilder(server ?? PostgreSql) { Database = database, MaxPoolSize = 60 }.ConnectionString;

    /// <summary>Creates a fresh database for one test and returns its connection string.</summary>
    public static async Task<string> CreateDatabaseAsync(string name, string? server = null)
    {
        await using var connection = new NpgsqlConnection(ConnectionString("postgres", server));
        await connection.OpenAsync();
        await using (var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", connection))
        {
            await drop.ExecuteNonQueryAsync();
        }

        await using (var create = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection))
        {
            await create.ExecuteNonQueryAsync();
        }

        return ConnectionString(name, server);
    }

    private static string Require(string variable) =>
        Environment.GetEnvironmentVariable(variable) is { Length: > 0 } value
            ? value
            : throw new InvalidOperationException(
                $"{variable} is not set: the integration tests need the PostgreSQL and RabbitMQ that './run.sh test' starts. Run the suite with './run.sh test'.");
}
