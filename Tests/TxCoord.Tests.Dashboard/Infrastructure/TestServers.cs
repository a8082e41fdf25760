using Npgsql;

namespace TxCoord.Tests.Dashboard.Infrastructure;

/// <summary>
/// The real PostgreSQL and RabbitMQ that <c>./run.sh test</c> started on private ports. The
/// tests never start or skip on their own: without them they fail and say how to run them.
/// </summary>
internal static class TestServers
{
    public static string PostgreSql => Require("TXCOORD_TEST_PG");

    public static string RabbitMq => Require("TXCOORD_TEST_RABBITMQ");

    public static string ConnectionString(string database) =>
        new NpgsqlConnectionStringBuilder(PostgreSql) { Database = database, MaxPoolSize = 40 }.ConnectionString;

    /// <summary>Creates a fresh database for one test fixture and returns its connection string.</summary>
    public static async Task<string> CreateDatabaseAsync(string name)
    {
        await using var connection = new NpgsqlConnection(ConnectionString("postgres"));
        await connection.OpenAsync();
        await using (var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", connection))
        {
            await drop.ExecuteNonQueryAsync();
        }

        await using (var create = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection))
        {
            await create.ExecuteNonQueryAsync();
        }

        return ConnectionString(name);
    }

    private static string Require(string variable) =>
        Environment.GetEnvironmentVariable(variable) is { Length: > 0 } value
            ? value
            : throw new InvalidOperationException(
                $"{variable} is not set: the dashboard tests need the PostgreSQL and RabbitMQ that './run.sh test' starts. Run the suite with './run.sh test'.");
}
