using System.Text.Json;
using Dapper;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Faults;
using TxCoord.Participants;
using TxCoord.Samples.Bank;
using TxCoord.Tests.Crash.Infrastructure;

namespace TxCoord.Tests.Crash;

/// <summary>
/// txcoord-recover, run as an operator runs it, against real processes' leftovers: scan, resolve
/// (dry run, beside a live coordinator, twice at once), force, verify, exit codes and errors; and
/// the matrix cases that need it: CR-10 to CR-13.
/// </summary>
[Category("Crash")]
[Category("Recovery")]
[Parallelizable(ParallelScope.Children)]
public sealed class RecoveryToolTests
{
    [Test]
    public async Task ScanThenResolve_CommitsWhatTheJournalDecidedAndPresumesAbortForTheRest_ThenNothingIsInDoubt()
    {
        await using var system = await BankSystem.CreateAsync();
        var records = await InDoubt.CreateAsync(system, decided: 2);
        var undecided = records[^1].TransactionId!.Value;

        var scan = await RecoverTool.RunAsync(["scan", "--json", .. RecoverTool.Settings(system)]);
        Assert.That(scan.ExitCode, Is.EqualTo(3), scan.ToString());
        var rows = scan.Json().RootElement.GetProperty("prepared").EnumerateArray().ToList();
        Assert.That(rows, Has.Count.EqualTo(4), scan.ToString());
        Assert.Multiple(() =>
        {
            Assert.That(rows.Count(r => r.GetProperty("journal").GetString() == "commit" && r.GetProperty("action").GetString() == "commit"), Is.EqualTo(2));
            Assert.That(rows.Where(r => r.GetProperty("transactionId").GetString() == undecided.ToString())
                .Select(r => (r.GetProperty("journal").GetString(), r.GetProperty("action").GetString())), Is.All.EqualTo(("none", "abort")));
            Assert.That(rows.Select(r => r.GetProperty("relations").GetString()), Has.All.Contain("accounts"), "what each one blocks");
            Assert.That(rows.Select(r => r.GetProperty("locks").GetInt32()), Has.All.GreaterThan(0));
        });

        var table = await RecoverTool.RunAsync(["scan", .. RecoverTool.Settings(system)]);
        Assert.That(table.Output, Does.Contain("RESOLVE WOULD").And.Contain(records[0].TransactionId!.Value.ToString()).And.Contain("RowExclusiveLock"), table.ToString());

        var dryRun = await RecoverTool.RunAsync(["resolve", "--dry-run", "--no-progress", .. RecoverTool.Settings(system)]);
        Assert.That(dryRun.ExitCode, Is.EqualTo(3), dryRun.ToString());
        Assert.That(dryRun.Output, Does.Contain("would COMMIT").And.Contain("would ROLLBACK"));
        Assert.That(await system.CountPreparedAsync(), Is.EqualTo(4), "a dry run changes nothing");

        var resolve = await RecoverTool.RunAsync(["resolve", "--progress", .. RecoverTool.Settings(system)]);
        Assert.That(resolve.ExitCode, Is.EqualTo(0), resolve.ToString());
        Assert.That(resolve.Error, Does.Contain("[###"), "a progress bar");
        Assert.That(await system.CountPreparedAsync(), Is.EqualTo(0));
        Assert.That(await system.JournalStateAsync(undecided), Is.EqualTo("aborted"), "the presumed abort is recorded in the journal before the rollback");

        var again = await RecoverTool.RunAsync(["resolve", "--no-progress", .. RecoverTool.Settings(system)]);
        Assert.That(again.ExitCode, Is.EqualTo(0), again.ToString());
        Assert.That(again.Output, Does.Contain("Nothing prepared"));

        // The coordinator and banks come back and close the journal; everyone agrees.
        await system.StartAllAsync();
        await system.AssertConvergedAsync(records);
    }

    [Test]
    public async Task CR10_ResolveBesideLiveTraffic_NeverAbortsATransactionInFlight()
    {
        await using var system = await BankSystem.CreateAsync();
        // Bank B votes late, so bank A's branch sits prepared with no decision yet: in flight.
        await system.StartAllAsync(bankB: Arm.Bus($"{BusFaults.Delay}:PrepareBranch:*:700"));
        var traffic = system.RunTransfersAsync(24, 4);
        var runs = new List<ToolRun>();
        while (!traffic.IsCompleted)
        {
            runs.AddRange(await Task.WhenAll(
                RecoverTool.RunAsync(["resolve", "--no-progress", .. RecoverTool.Settings(system)]),
                RecoverTool.RunAsync(["resolve", "--no-progress", .. RecoverTool.Settings(system)])));
        }

        var result = await traffic;
        Assert.That(runs.Select(r => r.ExitCode), Is.All.AnyOf(0, 3), string.Join(Environment.NewLine, runs));
        Assert.That(runs.Any(r => r.Output.Contains("is running", StringComparison.Ordinal)), Is.True, "the tool saw the live coordinator");
        Assert.That(runs.Sum(r => r.Output.Split('\n').Count(l => l.StartsWith("ROLLBACK", StringComparison.Ordinal))), Is.EqualTo(0),
            "nothing may be rolled back beside a live coordinator");
        Assert.That(result.Transfers.Select(t => t.Outcome), Has.Some.EqualTo(CommitOutcome.Committed));
        await system.AssertConvergedAsync(result.Transfers);
    }

    [Test]
    public async Task CR10_TwoResolvesAtOnce_EachInDoubtTransactionIsFinishedOnce()
    {
        await using var system = await BankSystem.CreateAsync();
        var records = await InDoubt.CreateAsync(system, decided: 3);
        var runs = await Task.WhenAll(
            RecoverTool.RunAsync(["resolve", "--no-progress", .. RecoverTool.Settings(system)]),
            RecoverTool.RunAsync(["resolve", "--no-progress", .. RecoverTool.Settings(system)]));
        Assert.That(runs.Select(r => r.ExitCode), Is.All.EqualTo(0), string.Join(Environment.NewLine, runs.Select(r => r.ToString())));
        Assert.That(await system.CountPreparedAsync(), Is.EqualTo(0));

        // One of them did the work, the other waited for the lock and found nothing left.
        await using var journal = new NpgsqlConnection(system.JournalConnectionString);
        var recovered = (await journal.QueryAsync<(Guid Id, long Count)>(
            "SELECT transaction_id, count(*) FROM txcoord.transaction_events WHERE kind = 'recovered' GROUP BY transaction_id")).ToList();
        Assert.That(recovered.Sum(r => r.Count), Is.EqualTo(5), "3 commits at A, the undecided one rolled back at A and B, each once");
        await system.StartAllAsync();
        await system.AssertConvergedAsync(records);
    }

    [Test]
    public async Task CR11_OtherCoordinatorsAndUnrelatedPreparedTransactions_AreLeftAlone()
    {
        await using var system = await BankSystem.CreateAsync();
        var other = BranchGid.Create(new CoordinatorId("someone-else"), TransactionId.New(), new ParticipantId(system.BankA)).Value;
        string[] foreign = [other, "unrelated-gid-1", "00000000-0000-0000-0000-000000000000/7411"];
        await using (var connection = await system.BankADataSource.OpenConnectionAsync())
        {
            await connection.ExecuteAsync("CREATE TABLE foreign_work (gid text)");
            foreach (var gid in foreign)
            {
                await using var transaction = await connection.BeginTransactionAsync();
                await connection.ExecuteAsync("INSERT INTO foreign_work VALUES (@Gid)", new { Gid = gid }, transaction);
                await connection.ExecuteAsync($"PREPARE TRANSACTION '{gid}'", transaction: transaction);
            }
        }

        try
        {
            // The bank serves only its own coordinator: its start-up resolution leaves them alone.
            await system.StartAllAsync();
            await system.Process(Role.BankA).WaitForOutputAsync($"leaves prepared branch {other} alone", TimeSpan.FromSeconds(30));
            var transfer = await system.SettleAsync(await system.TransferAsync());
            Assert.That(transfer.Outcome, Is.EqualTo(CommitOutcome.Committed), system.Diagnostics());

            var resolve = await RecoverTool.RunAsync(["resolve", "--no-progress", .. RecoverTool.Settings(system)]);
            Assert.That(resolve.ExitCode, Is.EqualTo(0), resolve.ToString());
            var scan = await RecoverTool.RunAsync(["scan", "--json", .. RecoverTool.Settings(system)]);
            var verdicts = scan.Json().RootElement.GetProperty("prepared").EnumerateArray()
                .ToDictionary(r => r.GetProperty("gid").GetString()!, r => (r.GetProperty("journal").GetString(), r.GetProperty("action").GetString()));
            Assert.That(verdicts, Has.Count.EqualTo(3), scan.ToString());
            Assert.That(verdicts[other], Is.EqualTo(("other coordinator", "leave")));
            Assert.That(verdicts["unrelated-gid-1"], Is.EqualTo(("unknown GID", "leave")));
            Assert.That(await BankSystem.PreparedGidsAsync(system.BankADataSource), Is.EquivalentTo(foreign));
        }
        finally
        {
            await using var connection = await system.BankADataSource.OpenConnectionAsync();
            foreach (var gid in foreign)
            {
                await connection.ExecuteAsync($"ROLLBACK PREPARED '{gid}'");
            }
        }
    }

    [Test]
    [NonParallelizable]
    public async Task CR12_JournalServerCrashesUnderLoad_TornTailDiscardedVerifyCleanAndEverythingConverges()
    {
        await using var system = await BankSystem.CreateAsync(new BankSystemOptions { JournalOnCrashServer = true });
        await system.StartAllAsync();
        var traffic = system.RunTransfersAsync(30, 6);
        async Task<long> JournalRowsAsync()
        {
            try
            {
                await using var journal = new NpgsqlConnection(system.JournalConnectionString);
                return await journal.ExecuteScalarAsync<long>("SELECT count(*) FROM txcoord.transactions");
            }
            catch (PostgresException)
            {
                return 0; // the schema is not there yet
            }
        }

        // Crash the journal's server (the banks' too) while decisions are being forced.
        await Eventually.WaitForAsync(JournalRowsAsync, n => n >= 5, TimeSpan.FromSeconds(60), "decisions in the journal", system.Diagnostics);
        await system.RestartBankServerAsync();
        var result = await traffic;

        var verify = await RecoverTool.RunAsync(["verify", "--journal", system.JournalConnectionString, "--coordinator", system.CoordinatorId]);
        Assert.That(verify.ExitCode, Is.EqualTo(0), verify.ToString());
        Assert.That(verify.Output, Does.Contain("Consistent"));

        // An end (or acknowledgement) lost with the server is an unforced write: the coordinator's
        // recovery at its next start closes the entry (ITransactionJournal.RecordEndAsync).
        await system.Process(Role.Coordinator).KillAsync();
        await system.StartAsync(Role.Coordinator);
        await system.AssertConvergedAsync(result.Transfers);
    }

    [Test]
    public async Task CR12_JournalCorruptedInTheMiddle_VerifyReportsItResolveRefusesToPresumeAbortForceFinishesIt()
    {
        await using var system = await BankSystem.CreateAsync();
        var records = await InDoubt.CreateAsync(system, decided: 1);
        var decided = records[0].TransactionId!.Value;
        await using (var journal = new NpgsqlConnection(system.JournalConnectionString))
        {
            // Damage: the decision's row is gone, its history is not.
            await journal.ExecuteAsync("DELETE FROM txcoord.transactions WHERE transaction_id = @Id", new { Id = decided.Value });
        }

        var verify = await RecoverTool.RunAsync(["verify", "--json", "--journal", system.JournalConnectionString]);
        Assert.That(verify.ExitCode, Is.EqualTo(4), verify.ToString());
        var problems = verify.Json().RootElement.GetProperty("problems").EnumerateArray().ToList();
        Assert.That(problems.Select(p => (p.GetProperty("check").GetString(), p.GetProperty("transactionId").GetString())),
            Does.Contain(("decision-without-row", decided.ToString())));

        var resolve = await RecoverTool.RunAsync(["resolve", "--no-progress", .. RecoverTool.Settings(system)]);
        Assert.That(resolve.ExitCode, Is.EqualTo(3), resolve.ToString());
        Assert.That(resolve.Output, Does.Contain("refusing to presume abort"));
        var gid = BranchGid.Create(new CoordinatorId(system.CoordinatorId), decided, new ParticipantId(system.BankA)).Value;
        Assert.That(await BankSystem.PreparedGidsAsync(system.BankADataSource), Is.EqualTo(new[] { gid }), "the damaged one stays prepared; the undecided one is rolled back");

        var force = await RecoverTool.RunAsync(["force", "commit", gid, "--reason", "journal row lost; history shows commit-decided", "--yes-i-know", "--operator", "oncall@test", .. RecoverTool.Settings(system)]);
        Assert.That(force.ExitCode, Is.EqualTo(0), force.ToString());
        Assert.That(await system.CountPreparedAsync(), Is.EqualTo(0));
        var audit = await RecoverTool.RunAsync(["verify", "--journal", system.JournalConnectionString]);
        Assert.That(audit.Output, Does.Contain("oncall@test").And.Contain("journal row lost"), audit.ToString());
    }

    [Test]
    public async Task CR12_TwoCoordinatorsWithOneIdOnOneJournal_TheSecondWaitsAndTakesOverOnlyWhenTheFirstDies()
    {
        await using var system = await BankSystem.CreateAsync();
        await system.StartAllAsync();
        var first = system.Process(Role.Coordinator);
        var environment = new Dictionary<string, string>
        {
            ["ConnectionStrings__Journal"] = system.JournalConnectionString,
            ["ConnectionStrings__RabbitMq"] = CrashServices.RabbitMq.ToString(),
            ["TxCoord__CoordinatorId"] = system.CoordinatorId,
            ["ASPNETCORE_URLS"] = "http://127.0.0.1:0",
        };
        await using var second = ChildProcess.Start("Coordinator-second", Repository.CoordinatorHost, environment, Path.Combine(system.LogDirectory, "Coordinator-second.log"));
        await second.WaitForOutputAsync("is owned by txcoord-coordinator:" + system.CoordinatorId, TimeSpan.FromSeconds(60));

        var whileFirstOwns = await system.SettleAsync(await system.TransferAsync());
        Assert.That(whileFirstOwns.Outcome, Is.EqualTo(CommitOutcome.Committed), system.Diagnostics());
        Assert.That(second.Output, Does.Not.Contain(BankSystem.BusStartedLine), "the second may not consume the coordinator's queue while the first owns the id");

        await first.KillAsync();
        await second.WaitForOutputAsync("this process owns the coordinator id", TimeSpan.FromSeconds(30));
        await second.WaitForOutputAsync(BankSystem.BusStartedLine, TimeSpan.FromSeconds(30));
        var afterTakeOver = await system.SettleAsync(await system.TransferAsync());
        Assert.That(afterTakeOver.Outcome, Is.EqualTo(CommitOutcome.Committed), second.Tail());
        await system.AssertConvergedAsync([whileFirstOwns, afterTakeOver]);
    }

    [Test]
    public async Task CR13_ForceAbortOfATransactionDecidedCommit_RefusedWithoutTheFlagRecordedAsHeuristicWithIt()
    {
        await using var system = await BankSystem.CreateAsync();
        var records = await InDoubt.CreateAsync(system, decided: 1);
        var gid = BranchGid.Create(new CoordinatorId(system.CoordinatorId), records[0].TransactionId!.Value, new ParticipantId(system.BankA)).Value;

        var refused = await RecoverTool.RunAsync(["force", "abort", gid, "--reason", "testing", .. RecoverTool.Settings(system)]);
        Assert.That(refused.ExitCode, Is.EqualTo(2), refused.ToString());
        Assert.That(refused.Error, Does.Contain("refused").And.Contain("HEURISTIC HAZARD").And.Contain("decided COMMIT"));
        Assert.That(await BankSystem.PreparedGidsAsync(system.BankADataSource), Does.Contain(gid));

        var noReason = await RecoverTool.RunAsync(["force", "abort", gid, "--yes-i-know", .. RecoverTool.Settings(system)]);
        Assert.That(noReason.ExitCode, Is.EqualTo(2), noReason.ToString());

        var forced = await RecoverTool.RunAsync(["force", "abort", gid, "--reason", "customer asked to cancel", "--yes-i-know", "--operator", "alice@ops", "--json", .. RecoverTool.Settings(system)]);
        Assert.That(forced.ExitCode, Is.EqualTo(0), forced.ToString());
        Assert.That(forced.Json().RootElement.GetProperty("againstJournal").GetBoolean(), Is.True);
        Assert.That(await BankSystem.PreparedGidsAsync(system.BankADataSource), Does.Not.Contain(gid));

        await using var journal = new NpgsqlConnection(system.JournalConnectionString);
        var heuristic = await journal.QuerySingleAsync<(string Action, string JournalState, string Operator, string Reason, string Outcome, DateTime At)>(
            "SELECT action, journal_state, operator, reason, outcome, at FROM txcoord.heuristic_decisions WHERE gid = @Gid", new { Gid = gid });
        Assert.Multiple(() =>
        {
            Assert.That(heuristic.Action, Is.EqualTo("abort"));
            Assert.That(heuristic.JournalState, Does.StartWith("committing"));
            Assert.That(heuristic.Operator, Is.EqualTo("alice@ops"));
            Assert.That(heuristic.Reason, Is.EqualTo("customer asked to cancel"));
            Assert.That(heuristic.Outcome, Is.EqualTo("done"));
            Assert.That(heuristic.At, Is.EqualTo(DateTime.UtcNow).Within(TimeSpan.FromMinutes(5)));
        });
        var history = await journal.ExecuteScalarAsync<long>(
            "SELECT count(*) FROM txcoord.transaction_events WHERE transaction_id = @Id AND kind = 'heuristic-abort'", new { Id = records[0].TransactionId!.Value.Value });
        Assert.That(history, Is.EqualTo(1));
    }

    [Test]
    public async Task CR13_ForceAbortOfAnUndecidedTransaction_RecordsTheAbortInTheJournalFirst_AndBesideALiveCoordinatorNeedsEvenIfLive()
    {
        // The coordinator died before deciding; bank A's branch and bank B's are prepared; the
        // journal has no row. A forced abort of A's branch must make the abort the journal's
        // decision before the rollback, or a coordinator could still decide commit for B.
        await using var system = await BankSystem.CreateAsync();
        var records = await InDoubt.CreateAsync(system, decided: 0);
        var undecided = records[^1].TransactionId!.Value;
        var coordinator = new CoordinatorId(system.CoordinatorId);
        var gid = BranchGid.Create(coordinator, undecided, new ParticipantId(system.BankA)).Value;

        var forced = await RecoverTool.RunAsync(["force", "abort", gid, "--reason", "stuck", "--yes-i-know", .. RecoverTool.Settings(system)]);
        Assert.That(forced.ExitCode, Is.EqualTo(0), forced.ToString());
        Assert.That(forced.Output, Does.Contain("now its decision"), forced.ToString());
        Assert.That(await system.JournalStateAsync(undecided), Is.EqualTo("aborted"), "the abort is the journal's decision before the rollback");
        Assert.That(await BankSystem.PreparedGidsAsync(system.BankADataSource), Does.Not.Contain(gid));

        // Beside a running coordinator a transaction it has no row for may be live there (still
        // collecting votes): refused unless the operator says so. A branch prepared by hand stands
        // for it, so that nothing asks the coordinator about it meanwhile.
        await system.StartAsync(Role.Coordinator);
        var live = TransactionId.New();
        var liveGid = BranchGid.Create(coordinator, live, new ParticipantId(system.BankB)).Value;
        await using (var connection = await system.BankBDataSource.OpenConnectionAsync())
        {
            await using var prepare = new NpgsqlCommand($"BEGIN; PREPARE TRANSACTION '{liveGid}'", connection);
            await prepare.ExecuteNonQueryAsync();
        }

        var refused = await RecoverTool.RunAsync(["force", "abort", liveGid, "--reason", "stuck", "--yes-i-know", .. RecoverTool.Settings(system)]);
        Assert.That(refused.ExitCode, Is.EqualTo(2), refused.ToString());
        Assert.That(refused.Error, Does.Contain("is running").And.Contain("--even-if-live"), refused.ToString());
        Assert.That(await BankSystem.PreparedGidsAsync(system.BankBDataSource), Does.Contain(liveGid), "refused: nothing rolled back");
        Assert.That(await system.JournalStateAsync(live), Is.Null, "refused: nothing recorded");

        var evenIfLive = await RecoverTool.RunAsync(["force", "abort", liveGid, "--reason", "stuck", "--yes-i-know", "--even-if-live", .. RecoverTool.Settings(system)]);
        Assert.That(evenIfLive.ExitCode, Is.EqualTo(0), evenIfLive.ToString());
        Assert.That(await system.JournalStateAsync(live), Is.EqualTo("aborted"));
        Assert.That(await BankSystem.PreparedGidsAsync(system.BankBDataSource), Does.Not.Contain(liveGid));

        // Bank B follows the journal's abort for the first one when it comes back; the ledger stays whole.
        await system.StartAsync(Role.BankA);
        await system.StartAsync(Role.BankB);
        await system.AssertConvergedAsync(records);
    }

    [Test]
    public async Task Errors_UnreachableDatabaseWrongCredentialsAndARoleThatMayNotFinishAnotherRolesTransaction_ExitOneWithWhatToFix()
    {
        await using var system = await BankSystem.CreateAsync();
        string[] journal = ["--coordinator", system.CoordinatorId, "--journal", system.JournalConnectionString];
        await using (var connection = new NpgsqlConnection(system.JournalConnectionString))
        {
            await connection.ExecuteAsync("CREATE SCHEMA IF NOT EXISTS txcoord; CREATE TABLE IF NOT EXISTS txcoord.transactions (transaction_id uuid PRIMARY KEY, coordinator_id text, protocol smallint, state text, participants text[], acked text[], reason text, created_at timestamptz, decided_at timestamptz, ended_at timestamptz); CREATE TABLE IF NOT EXISTS txcoord.transaction_events (id bigserial, transaction_id uuid, at timestamptz, kind text, detail text);");
        }

        var unreachable = await RecoverTool.RunAsync(["scan", .. journal, "--participant", $"{system.BankA}=Host=127.0.0.1;Port=1;Username=postgres;Database=x;Timeout=3"]);
        Assert.That(unreachable.ExitCode, Is.EqualTo(1), unreachable.ToString());
        Assert.That(unreachable.Error, Does.Contain($"participant {system.BankA}").And.Contain("cannot reach 127.0.0.1:1").And.Contain($"TxCoord:Participants:{system.BankA}:ConnectionString"));

        var noSuchRole = await RecoverTool.RunAsync(["scan", .. journal, "--participant", $"{system.BankA}={new NpgsqlConnectionStringBuilder(system.BankAConnectionString) { Username = "nobody_here" }}"]);
        Assert.That(noSuchRole.ExitCode, Is.EqualTo(1), noSuchRole.ToString());
        Assert.That(noSuchRole.Error, Does.Contain("the server refused").And.Contain("nobody_here"));

        // A role with a password, checked by the server (scram), and a role that is no superuser.
        var suffix = system.Suffix;
        await using (var admin = await system.BankADataSource.OpenConnectionAsync())
        {
            await admin.ExecuteAsync($"CREATE ROLE pw_{suffix} LOGIN PASSWORD 'right'; CREATE ROLE other_{suffix} LOGIN;");
        }

        await CrashServices.RequirePasswordAsync($"pw_{suffix}");
        // From the environment: the tool refuses a password on its command line.
        var wrongPassword = await RecoverTool.RunAsync(["scan", .. journal], new Dictionary<string, string>
        {
            [$"TxCoord__Participants__{system.BankA}__ConnectionString"] =
                new NpgsqlConnectionStringBuilder(system.BankAConnectionString) { Username = $"pw_{suffix}", Password = "wrong" }.ConnectionString,
        });
        Assert.That(wrongPassword.ExitCode, Is.EqualTo(1), wrongPassword.ToString());
        Assert.That(wrongPassword.Error, Does.Contain("authentication failed").And.Contain("wrong password"));

        // Prepared by postgres; the tool connects as another role.
        var gid = BranchGid.Create(new CoordinatorId(system.CoordinatorId), TransactionId.New(), new ParticipantId(system.BankA)).Value;
        await using (var connection = await system.BankADataSource.OpenConnectionAsync())
        {
            await using var transaction = await connection.BeginTransactionAsync();
            await connection.ExecuteAsync("UPDATE accounts SET balance = balance WHERE id = 1", transaction: transaction);
            await connection.ExecuteAsync($"PREPARE TRANSACTION '{gid}'", transaction: transaction);
        }

        var otherRole = await RecoverTool.RunAsync(["resolve", "--no-progress", .. journal, "--participant",
            $"{system.BankA}={new NpgsqlConnectionStringBuilder(system.BankAConnectionString) { Username = $"other_{suffix}" }}"]);
        Assert.That(otherRole.ExitCode, Is.EqualTo(1), otherRole.ToString());
        Assert.That(otherRole.Output, Does.Contain("permission denied").And.Contain("only the role that prepared"));
        Assert.That(await BankSystem.PreparedGidsAsync(system.BankADataSource), Does.Contain(gid));

        var asOwner = await RecoverTool.RunAsync(["resolve", "--no-progress", .. journal, "--participant", $"{system.BankA}={system.BankAConnectionString}"]);
        Assert.That(asOwner.ExitCode, Is.EqualTo(0), asOwner.ToString());
    }

    /// <summary>
    /// A password in an argument is visible to every user of the machine (<c>ps</c>,
    /// <c>/proc/PID/cmdline</c>) while the tool runs: refused before anything connects, with
    /// the ways that keep it private. The same connection string from the environment is taken.
    /// </summary>
    [Test]
    public async Task PasswordInAConnectionStringOnTheCommandLine_IsRefused_TheEnvironmentIsTaken()
    {
        var withPassword = $"{CrashServices.PostgreSql};Password=s3cret-pw;Database=postgres";
        var journalArg = await RecoverTool.RunAsync(["verify", "--coordinator", "pw-test", "--journal", withPassword]);
        var participantArg = await RecoverTool.RunAsync(
            ["scan", "--no-progress", "--coordinator", "pw-test", "--journal", CrashServices.PostgreSql, "--participant", $"bank-x=Host=db;PWD=s3cret-pw"]);
        var fromEnvironment = await RecoverTool.RunAsync(
            ["verify", "--coordinator", "pw-test"],
            new Dictionary<string, string> { ["ConnectionStrings__Journal"] = withPassword });
        Assert.Multiple(() =>
        {
            Assert.That(journalArg.ExitCode, Is.EqualTo(2), journalArg.ToString());
            Assert.That(journalArg.Error, Does.Contain("--journal").And.Contain("password").And.Contain("ConnectionStrings__Journal").And.Contain("--config"));
            Assert.That(journalArg.Error + journalArg.Output, Does.Not.Contain("s3cret-pw"), "the password is not echoed either");
            Assert.That(participantArg.ExitCode, Is.EqualTo(2), participantArg.ToString());
            Assert.That(participantArg.Error, Does.Contain("--participant bank-x").And.Contain("password"));
            Assert.That(participantArg.Error + participantArg.Output, Does.Not.Contain("s3cret-pw"));
            Assert.That(fromEnvironment.ExitCode, Is.Not.EqualTo(2), fromEnvironment.ToString());
        });
    }

    [Test]
    public async Task Usage_BadCommandsAndMissingSettings_ExitTwoAndSayWhatToFix()
    {
        var unknown = await RecoverTool.RunAsync(["frobnicate"]);
        Assert.That(unknown.ExitCode, Is.EqualTo(2), unknown.ToString());
        Assert.That(unknown.Error, Does.Contain("unknown command 'frobnicate'"));
        var missing = await RecoverTool.RunAsync(["scan"]);
        Assert.That(missing.ExitCode, Is.EqualTo(2), missing.ToString());
        Assert.That(missing.Error, Does.Contain("TxCoord:CoordinatorId is missing").And.Contain("ConnectionStrings:Journal"));
        var badDuration = await RecoverTool.RunAsync(["resolve", "--min-age", "soon"]);
        Assert.That(badDuration.ExitCode, Is.EqualTo(2), badDuration.ToString());
        var notOurs = await RecoverTool.RunAsync(["force", "commit", "00000000-0000-0000-0000-000000000000/42", "--reason", "x", "--yes-i-know"]);
        Assert.That(notOurs.ExitCode, Is.EqualTo(2), notOurs.ToString());
        Assert.That(notOurs.Error, Does.Contain("not a TxCoord GID"));
        var help = await RecoverTool.RunAsync(["help"]);
        Assert.That(help.ExitCode, Is.EqualTo(0));
        Assert.That(help.Output, Does.Contain("exit codes").And.Contain("3  prepared transactions of this coordinator remain in doubt"));
    }
}
