using Dapper;
using Npgsql;
using TxCoord.Participants;
using TxCoord.Tests.Crash.Infrastructure;

namespace TxCoord.Tests.Crash;

/// <summary>
/// The least-privilege deployment of docs/least-privilege.md, run for real: each bank participant
/// as a PostgreSQL role owning only its database, the coordinator as a role owning only the
/// journal's <c>txcoord</c> schema, the dashboard's monitor in <c>pg_monitor</c>. Transfers commit,
/// a kill -9 of the coordinator and a bank under load recovers with nothing left prepared, and
/// none of these roles can reach what is not its own (a superuser participant could finish the
/// other bank's prepared transactions).
/// </summary>
[Category("Crash")]
public sealed class LeastPrivilegeTests
{
    [Test]
    public async Task ServicesAsTheirOwnRoles_CommitAndRecoverFromKill9_AndNoRoleReachesAnotherBank()
    {
        await using var system = await BankSystem.CreateAsync(new BankSystemOptions { LeastPrivilege = true });
        var roles = system.Roles!;
        await system.StartAllAsync();
        var traffic = system.RunTransfersAsync(40, 8);
        await Eventually.WaitForAsync(async () =>
        {
            await using var journal = new NpgsqlConnection(system.JournalConnectionString);
            return await journal.ExecuteScalarAsync<long>("SELECT count(*) FROM txcoord.transactions");
        }, n => n >= 8, TimeSpan.FromSeconds(90), "some transfers decided", system.Diagnostics);
        await system.Process(Role.Coordinator).KillAsync();
        await system.Process(Role.BankA).KillAsync();
        await system.StartAsync(Role.BankA);
        await system.StartAsync(Role.Coordinator);
        var settled = await system.AssertConvergedAsync((await traffic).Transfers);
        await system.AssertStillCommitsAsync();
        Assert.That(settled.Count(t => t.Outcome == CommitOutcome.Committed), Is.GreaterThan(0), "transfers committed under the roles");

        // What each role may not do. A branch of bank B left prepared, as its own role prepared it.
        var bankB = system.ServiceBankConnectionString(Role.BankB);
        var gid = $"lp-test-{system.Suffix}";
        await using (var asBankB = new NpgsqlConnection(bankB))
        {
            await asBankB.OpenAsync();
            await using var prepare = new NpgsqlCommand($"BEGIN; UPDATE accounts SET balance = balance WHERE id = 1; PREPARE TRANSACTION '{gid}'", asBankB);
            await prepare.ExecuteNonQueryAsync();
        }

        try
        {
            var bankAIntoB = await FailureAsync(LeastPrivilegeRoles.As(system.BankBConnectionString, roles.BankA), "SELECT 1");
            var coordinatorIntoB = await FailureAsync(LeastPrivilegeRoles.As(system.BankBConnectionString, roles.Coordinator), "SELECT 1");
            var monitorFinishes = await FailureAsync(LeastPrivilegeRoles.As(system.BankBConnectionString, roles.Monitor), $"ROLLBACK PREPARED '{gid}'");
            var monitorReadsRows = await FailureAsync(LeastPrivilegeRoles.As(system.BankBConnectionString, roles.Monitor), "SELECT count(*) FROM accounts");
            var bankAIntoJournal = await FailureAsync(LeastPrivilegeRoles.As(system.JournalConnectionString, roles.BankA), "SELECT 1");
            await using var monitor = new NpgsqlConnection(LeastPrivilegeRoles.As(system.BankBConnectionString, roles.Monitor));
            var monitorSees = await monitor.ExecuteScalarAsync<long>(
                "SELECT count(*) FROM pg_prepared_xacts p JOIN pg_locks l ON l.locktype = 'transactionid' AND l.transactionid = p.transaction WHERE p.gid = @Gid",
                new { Gid = gid });
            Assert.Multiple(() =>
            {
                Assert.That(bankAIntoB, Does.Contain("permission denied for database"), "bank A's role cannot connect to bank B's database");
                Assert.That(coordinatorIntoB, Does.Contain("permission denied for database").Or.Contain("does not exist"), "nor can the coordinator's (whose role may live on the journal's server only)");
                Assert.That(monitorFinishes, Does.Contain("permission denied to finish prepared transaction"), "the monitor sees prepared transactions but cannot finish them");
                Assert.That(monitorReadsRows, Does.Contain("permission denied for table accounts"), "nor read the bank's rows");
                Assert.That(bankAIntoJournal, Does.Contain("does not exist").Or.Contain("permission denied"), "a bank's role has no business in the journal");
                Assert.That(monitorSees, Is.GreaterThan(0), "the dashboard's monitor sees the prepared branch and its locks");
            });
        }
        finally
        {
            await using var asBankB = new NpgsqlConnection(bankB);
            await asBankB.OpenAsync();
            await using var rollback = new NpgsqlCommand($"ROLLBACK PREPARED '{gid}'", asBankB);
            await rollback.ExecuteNonQueryAsync();
        }
    }

    /// <summary>The error PostgreSQL gives <paramref name="sql"/> run through <paramref name="connectionString"/>; fails the test if it succeeds.</summary>
    private static async Task<string> FailureAsync(string connectionString, string sql)
    {
        try
        {
            await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
            await connection.OpenAsync();
            await connection.ExecuteAsync(sql);
        }
        catch (PostgresException ex)
        {
            return ex.MessageText;
        }

        Assert.Fail($"'{sql}' as {new NpgsqlConnectionStringBuilder(connectionString).Username} succeeded");
        return "";
    }
}
