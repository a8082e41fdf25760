using Dapper;
using Npgsql;
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

    private static async Task ExecuteOnJournalAsync(TxCoordCluster cluster, string sql)
    {
        await using var connection = new NpgsqlConnection(cluster.JournalConnectionString);
        await connection.ExecuteAsync(sql);
    }
}
