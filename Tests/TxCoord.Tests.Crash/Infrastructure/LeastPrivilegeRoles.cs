using Npgsql;

namespace TxCoord.Tests.Crash.Infrastructure;

/// <summary>
/// The PostgreSQL roles of a least-privilege deployment (docs/least-privilege.md), made for one
/// bank system: each bank participant logs in as a role that owns only its own database, the
/// coordinator as a role that owns only the <c>txcoord</c> schema of the journal database, and the
/// dashboard's monitor as a <c>pg_monitor</c> member that may connect to the bank databases and
/// read nothing in them. No database lets PUBLIC connect. The statements are the ones the docs give.
/// </summary>
internal sealed record LeastPrivilegeRoles(string BankA, string BankB, string Coordinator, string Monitor)
{
    public static LeastPrivilegeRoles For(string suffix) =>
        new($"lp_{suffix}_bank_a", $"lp_{suffix}_bank_b", $"lp_{suffix}_coordinator", $"lp_{suffix}_monitor");

    /// <summary>
    /// Creates the roles and hands each its database, as a superuser. The journal may be on
    /// another server than the banks: roles belong to a server, so each is made where it is used.
    /// </summary>
    public async Task ApplyAsync(string journal, string bankA, string bankB)
    {
        var journalDb = Database(journal);
        var bankADb = Database(bankA);
        var bankBDb = Database(bankB);
        await ExecuteAsync(AsDatabase(bankA, "postgres"),
            CreateRole(BankA, ""),
            CreateRole(BankB, ""),
            CreateRole(Monitor, " IN ROLE pg_monitor"),
            $"ALTER DATABASE \"{bankADb}\" OWNER TO \"{BankA}\"",
            $"ALTER DATABASE \"{bankBDb}\" OWNER TO \"{BankB}\"",
            $"REVOKE ALL ON DATABASE \"{bankADb}\" FROM PUBLIC",
            $"REVOKE ALL ON DATABASE \"{bankBDb}\" FROM PUBLIC",
            $"GRANT CONNECT ON DATABASE \"{bankADb}\", \"{bankBDb}\" TO \"{Monitor}\"");
        await ExecuteAsync(AsDatabase(journal, "postgres"),
            CreateRole(Coordinator, ""),
            $"REVOKE ALL ON DATABASE \"{journalDb}\" FROM PUBLIC",
            $"GRANT CONNECT ON DATABASE \"{journalDb}\" TO \"{Coordinator}\"");

        // The journal database stays the DBA's; the coordinator owns only its schema.
        await ExecuteAsync(journal, $"CREATE SCHEMA txcoord AUTHORIZATION \"{Coordinator}\"");
    }

    private static string CreateRole(string role, string options) =>
        $"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE \"{role}\" LOGIN{options}; END IF; END $$";

    /// <summary><paramref name="connectionString"/> logging in as <paramref name="role"/>.</summary>
    public static string As(string connectionString, string role) =>
        new NpgsqlConnectionStringBuilder(connectionString) { Username = role }.ConnectionString;

    public static string AsDatabase(string connectionString, string database) =>
        new NpgsqlConnectionStringBuilder(connectionString) { Database = database }.ConnectionString;

    private static string Database(string connectionString) =>
        new NpgsqlConnectionStringBuilder(connectionString).Database ?? throw new ArgumentException("no Database in the connection string", nameof(connectionString));

    private static async Task ExecuteAsync(string connectionString, params string[] statements)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        foreach (var statement in statements)
        {
            await using var command = new NpgsqlCommand(statement, connection);
            await command.ExecuteNonQueryAsync();
        }
    }
}
