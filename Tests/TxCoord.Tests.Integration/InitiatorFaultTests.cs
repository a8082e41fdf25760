using Dapper;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Participants;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// A coordinator that faults (its journal fails every statement) after the commit request left:
/// the application gets InDoubt with the reason, never an exception it cannot interpret (issue 10, item 6).
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class InitiatorFaultTests
{
    [Test]
    public async Task CoordinatorWhoseJournalFaults_CommitAndGetOutcomeAnswerInDoubt_WithTheFault()
    {
        await using var cluster = await TxCoordCluster.StartAsync();
        var key = $"k-{Guid.NewGuid():N}";
        await using var tx = cluster.Initiator.Begin();
        foreach (var participant in cluster.ParticipantIds)
        {
            Assert.That((await tx.SendAsync(participant, new PutItem { Key = key, Value = "v" })).Succeeded, Is.True);
        }

        // The journal's table is gone: every statement of the coordinator on it fails.
        await ExecuteOnJournalAsync(cluster, "ALTER TABLE txcoord.transactions RENAME TO transactions_away");
        try
        {
            var commit = await tx.CommitAsync();
            var outcome = await cluster.Initiator.GetOutcomeAsync(tx.Id);

            Assert.Multiple(() =>
            {
                Assert.That(commit.Outcome, Is.EqualTo(CommitOutcome.InDoubt), commit.Reason);
                Assert.That(commit.Reason, Does.Contain("fault"));
                Assert.That(outcome.Outcome, Is.EqualTo(CommitOutcome.InDoubt), outcome.Reason);
                Assert.That(outcome.Reason, Does.Contain("fault"));
            });
        }
        finally
        {
            await ExecuteOnJournalAsync(cluster, "ALTER TABLE txcoord.transactions_away RENAME TO transactions");
        }

        // The journal back, the transaction ends one way everywhere and the initiator can learn which.
        var final = await Eventually.WaitForAsync(
            () => cluster.Initiator.GetOutcomeAsync(tx.Id), r => r.Outcome != CommitOutcome.InDoubt, TimeSpan.FromSeconds(30), "a definite outcome");
        var values = await Eventually.WaitForAsync(
            () => cluster.ReadEverywhereAsync(key), v => v.Distinct().Count() == 1 && cluster.CountPreparedAsync().Result == 0, TimeSpan.FromSeconds(30), "every participant finished");
        Assert.That(values[0], Is.EqualTo(final.Outcome == CommitOutcome.Committed ? "v" : null));
    }

    [Test]
    public async Task CommitCancelledAfterTheRequestLeft_MayStillCommit_AndTheIdTellsTheOutcome()
    {
        await using var cluster = await TxCoordCluster.StartAsync();
        var (first, second) = (cluster.ParticipantIds[0], cluster.ParticipantIds[1]);
        var key = $"k-{Guid.NewGuid():N}";
        await using var tx = cluster.Initiator.Begin();
        foreach (var participant in cluster.ParticipantIds)
        {
            Assert.That((await tx.SendAsync(participant, new PutItem { Key = key, Value = "v" })).Succeeded, Is.True);
        }

        // Hold the second participant's prepare: its commit marker waits on this uncommitted row of the same GID.
        var gid = BranchGid.Create(new CoordinatorId(cluster.CoordinatorId), tx.Id, new ParticipantId(second));
        await using var holder = new NpgsqlConnection(cluster.ParticipantDatabases[second]);
        await holder.OpenAsync();
        var hold = await holder.BeginTransactionAsync();
        await holder.ExecuteAsync(
            "INSERT INTO txcoord.branch_outcomes (gid, transaction_id, outcome) VALUES (@Gid, @Id, 'committed')",
            new { Gid = gid.Value, Id = tx.Id.Value }, hold);

        using var cancel = new CancellationTokenSource();
        var commit = tx.CommitAsync(cancel.Token);
        await Eventually.WaitForAsync(
            async () =>
            {
                await using var connection = new NpgsqlConnection(cluster.ParticipantDatabases[second]);
                return await connection.ExecuteScalarAsync<long>(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
            },
            n => n >= 1, TimeSpan.FromSeconds(10), "the commit request to reach the coordinator and its Prepare the participant");
        await cancel.CancelAsync();
        Assert.CatchAsync<OperationCanceledException>(async () => await commit, "a cancelled CommitAsync throws");
        await hold.RollbackAsync();

        var outcome = await Eventually.WaitForAsync(
            () => cluster.Initiator.GetOutcomeAsync(tx.Id), r => r.Outcome != CommitOutcome.InDoubt, TimeSpan.FromSeconds(20), "the outcome by id");
        Assert.That(outcome.Outcome, Is.EqualTo(CommitOutcome.Committed), "the request had left: the cancel did not stop the commit");
        Assert.That((await tx.CommitAsync()).Outcome, Is.EqualTo(CommitOutcome.Committed), "asking again answers the same");
        await Eventually.WaitForAsync(
            () => cluster.ReadEverywhereAsync(key), v => v.All(x => x == "v"), TimeSpan.FromSeconds(15), "the commit everywhere");
    }

    private static async Task ExecuteOnJournalAsync(TxCoordCluster cluster, string sql)
    {
        await using var connection = new NpgsqlConnection(cluster.JournalConnectionString);
        await connection.ExecuteAsync(sql);
    }
}
