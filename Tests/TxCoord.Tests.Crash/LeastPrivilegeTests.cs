using Dapper;
using Npgsql;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using RabbitMQ.Client.Exceptions;
using TxCoord.Contracts;
using TxCoord.Participants;
using TxCoord.Tests.Crash.Infrastructure;

namespace TxCoord.Tests.Crash;

/// <summary>
/// The least-privilege deployment of docs/least-privilege.md, run for real: each bank participant
/// as a PostgreSQL role owning only its database, the coordinator as a role owning only the
/// journal's <c>txcoord</c> schema, the dashboard's monitor in <c>pg_monitor</c>. Transfers commit,
/// a kill -9 of the coordinator and a bank under load recovers with nothing left prepared, and
/// none of these roles can reach what is not its own (a superuser participant could finish the
/// other bank's prepared transactions). On the broker, each service is its own user with sender
/// authentication on, allowed only its own queues and the inbox exchanges it sends to.
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
        await AssertBrokerUsersConfinedAsync(system);

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

    /// <summary>
    /// docs/tls.md, run: every service reaches PostgreSQL with SSL Mode=VerifyFull on the test
    /// command's own CA, and the coordinator and the banks reach RabbitMQ over amqps://, as their
    /// own roles. Transfers commit, and every connection of theirs is encrypted (the servers say so).
    /// </summary>
    [Test]
    public async Task ServicesAsTheirOwnRoles_OverVerifiedTls_Commit_AndEveryConnectionOfTheirsIsEncrypted()
    {
        await using var system = await BankSystem.CreateAsync(new BankSystemOptions { LeastPrivilege = true, Tls = true });
        var roles = system.Roles!;
        await system.StartAllAsync();
        var result = await system.RunTransfersAsync(20, 4);
        var settled = await system.AssertConvergedAsync(result.Transfers);

        await using var journal = new NpgsqlConnection(system.JournalConnectionString);
        var sessions = (await journal.QueryAsync<(string User, bool Ssl)>(
            "SELECT a.usename, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = ANY(@Roles)",
            new { Roles = new[] { roles.BankA, roles.BankB, roles.Coordinator } })).ToList();
        // Only these services use the TLS listener: its connections are theirs.
        var tlsPort = CrashServices.RabbitMqTls.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var connections = await CrashServices.RabbitMqCtlAsync("list_connections", "--quiet", "--no-table-headers", "port", "ssl", "ssl_protocol");
        var ours = connections.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => l.StartsWith(tlsPort + "\t", StringComparison.Ordinal)).ToList();
        await TestContext.Out.WriteLineAsync($"PostgreSQL sessions of the services: {sessions.Count} ({sessions.Count(s => s.Ssl)} over TLS); their broker connections:{Environment.NewLine}{string.Join(Environment.NewLine, ours)}");
        Assert.Multiple(() =>
        {
            Assert.That(settled.Count(t => t.Outcome == CommitOutcome.Committed), Is.GreaterThan(0), "transfers committed over TLS");
            Assert.That(sessions.Select(s => s.User).Distinct(), Is.EquivalentTo(new[] { roles.BankA, roles.BankB, roles.Coordinator }), "each service has sessions open");
            Assert.That(sessions.Where(s => !s.Ssl), Is.Empty, "every PostgreSQL session of the services is encrypted");
            Assert.That(ours, Has.Count.GreaterThanOrEqualTo(3), "the coordinator and both banks hold broker connections on the TLS listener");
            Assert.That(ours.Where(l => !l.Contains("\ttrue", StringComparison.Ordinal)), Is.Empty, "and each of them is TLS");
        });
    }

    /// <summary>
    /// docker/rabbitmq/definitions.json, the compose broker's users: each service user's
    /// permissions are the ones these tests run under (for the demo's ids), the file imports into a
    /// real broker, every user and password of docker-compose.yml logs in, and bank-a's user cannot
    /// read bank-b's queue.
    /// </summary>
    [Test]
    public async Task ComposeBrokerDefinitions_AreTheTestedPermissions_AndTheComposeUsersLogIn()
    {
        var definitions = await File.ReadAllTextAsync(Path.Combine(Repository.Root, "docker", "rabbitmq", "definitions.json"));
        using var document = System.Text.Json.JsonDocument.Parse(definitions);
        var permissions = document.RootElement.GetProperty("permissions").EnumerateArray().ToDictionary(
            p => p.GetProperty("user").GetString()!,
            p => new BrokerPermissions(p.GetProperty("configure").GetString()!, p.GetProperty("write").GetString()!, p.GetProperty("read").GetString()!));
        Assert.Multiple(() =>
        {
            Assert.That(permissions["txcoord-coordinator"], Is.EqualTo(BrokerRoles.CoordinatorPermissions("demo")));
            Assert.That(permissions["txcoord-bank-a"], Is.EqualTo(BrokerRoles.ParticipantPermissions("bank-a", "demo")));
            Assert.That(permissions["txcoord-bank-b"], Is.EqualTo(BrokerRoles.ParticipantPermissions("bank-b", "demo")));
            Assert.That(permissions["txcoord-transfers"], Is.EqualTo(BrokerRoles.InitiatorPermissions("demo")));
        });

        var compose = await File.ReadAllTextAsync(Path.Combine(Repository.Root, "docker", "docker-compose.yml"));
        var logins = System.Text.RegularExpressions.Regex.Matches(compose, @"amqp://([^:@/""]+):([^@""]+)@rabbitmq:5672/")
            .Select(m => (User: m.Groups[1].Value, Password: m.Groups[2].Value)).Distinct().ToList();
        Assert.That(logins.Select(l => l.User), Is.EquivalentTo(new[] { "txcoord-coordinator", "txcoord-bank-a", "txcoord-bank-b", "txcoord-transfers" }), "one broker user per service in the compose file");

        await BrokerRoles.ImportAsync(definitions);
        var bankBQueue = TxCoordQueues.Participant(new ParticipantId("bank-b"));
        try
        {
            // The queue bank-b's endpoint would declare, made here as the test's administrator.
            var admin = new ConnectionFactory { Uri = CrashServices.RabbitMq };
            await using (var connection = await admin.CreateConnectionAsync())
            await using (var channel = await connection.CreateChannelAsync())
            {
                await channel.QueueDeclareAsync(bankBQueue, durable: false, exclusive: false, autoDelete: false);
            }

            foreach (var (user, password) in logins)
            {
                var factory = new ConnectionFactory { Uri = new UriBuilder(CrashServices.RabbitMq) { UserName = user, Password = password }.Uri };
                await using var connection = await factory.CreateConnectionAsync();
                if (user != "txcoord-bank-a")
                {
                    continue;
                }

                await using var channel = await connection.CreateChannelAsync();
                var refused = Assert.ThrowsAsync<OperationInterruptedException>(async () => await channel.BasicGetAsync(bankBQueue, autoAck: true));
                Assert.That(refused!.ShutdownReason?.ReplyCode, Is.EqualTo(403), "bank-a's user cannot read bank-b's queue");
            }
        }
        finally
        {
            var admin = new ConnectionFactory { Uri = CrashServices.RabbitMq };
            await using (var connection = await admin.CreateConnectionAsync())
            await using (var channel = await connection.CreateChannelAsync())
            {
                await channel.QueueDeleteAsync(bankBQueue);
            }

            foreach (var user in permissions.Keys)
            {
                await CrashServices.RabbitMqCtlAsync("delete_user", user);
            }
        }
    }

    /// <summary>
    /// What bank A's broker user may not do: read, delete or purge bank B's queue or the
    /// coordinator's, or send a message claiming to be the coordinator (RabbitMQ checks user_id).
    /// Each refusal closes the channel with its AMQP code: 403 ACCESS_REFUSED, 406 PRECONDITION_FAILED.
    /// </summary>
    private static async Task AssertBrokerUsersConfinedAsync(BankSystem system)
    {
        var users = system.BrokerUsers!;
        var bankBQueue = TxCoordQueues.Participant(new ParticipantId(system.BankB));
        var coordinatorQueue = TxCoordQueues.Coordinator(new CoordinatorId(system.CoordinatorId));
        var factory = new ConnectionFactory
        {
            Uri = new UriBuilder(CrashServices.RabbitMq) { UserName = users.BankA, Password = BrokerRoles.PasswordOf(users.BankA) }.Uri,
        };
        await using var connection = await factory.CreateConnectionAsync();

        async Task<ushort> RefusalAsync(Func<IChannel, Task> action)
        {
            await using var channel = await connection.CreateChannelAsync();
            try
            {
                await action(channel);
                await channel.BasicQosAsync(0, 1, false); // a round trip: an asynchronous channel error arrives before it
            }
            catch (OperationInterruptedException ex) when (ex.ShutdownReason is { } reason)
            {
                return reason.ReplyCode;
            }

            return 0;
        }

        var readB = await RefusalAsync(ch => ch.BasicGetAsync(bankBQueue, autoAck: true));
        var consumeCoordinator = await RefusalAsync(ch => ch.BasicConsumeAsync(coordinatorQueue, autoAck: true, new AsyncEventingBasicConsumer(ch)));
        var deleteB = await RefusalAsync(ch => ch.QueueDeleteAsync(bankBQueue));
        var purgeCoordinator = await RefusalAsync(ch => ch.QueuePurgeAsync(coordinatorQueue));
        var asCoordinator = await RefusalAsync(ch => ch.BasicPublishAsync(
            TxCoordQueues.ParticipantInbox(new ParticipantId(system.BankB)), "", mandatory: false,
            new BasicProperties { UserId = users.Coordinator }, "{}"u8.ToArray()).AsTask());
        var ownInbox = await RefusalAsync(ch => ch.BasicGetAsync(TxCoordQueues.Participant(new ParticipantId(system.BankA)), autoAck: false));
        Assert.Multiple(() =>
        {
            Assert.That(readB, Is.EqualTo(403), "bank A's user cannot read bank B's queue");
            Assert.That(consumeCoordinator, Is.EqualTo(403), "nor consume the coordinator's");
            Assert.That(deleteB, Is.EqualTo(403), "nor delete bank B's queue");
            Assert.That(purgeCoordinator, Is.EqualTo(403), "nor purge the coordinator's");
            Assert.That(asCoordinator, Is.EqualTo(406), "nor send a message as the coordinator's user");
            Assert.That(ownInbox, Is.Zero, "its own queue it may read");
        });
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
