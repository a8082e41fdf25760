using RabbitMQ.Client;
using TxCoord.Contracts;
using TxCoord.Participants;
using TxCoord.Samples.Bank;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// Several works of one transaction at one participant, and a restart of that participant between
/// them (kill -9 of the real bank service): PostgreSQL rolls the open branch back with the first
/// work in it, and the second work begins a fresh branch. The initiator numbers its works per
/// participant (<see cref="TxCoordHeaders.WorkSequence"/>) and the prepare carries the count, so
/// the branch that lost a work votes No and nothing of the transaction commits anywhere.
/// </summary>
[NonParallelizable]
public sealed class WorkSequenceTests
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(90);

    [Test]
    public async Task ParticipantRestartedBetweenTwoWorks_TheBranchVotesNo_AndNothingCommits()
    {
        await using var cluster = await ProcessCluster.CreateAsync(new ProcessClusterOptions { Participants = 2 });
        await cluster.StartAllAsync();
        var (a, b) = (cluster.ParticipantIds[0], cluster.ParticipantIds[1]);

        await using var tx = cluster.Initiator.Begin(new TransactionOptions { Protocol = CommitProtocol.TwoPhase });
        var transferId = tx.Id.Value;
        // 20 leave account 1 at a; 10 of them go to account 2 at a, 10 to account 1 at b.
        var debit = await tx.SendAsync(a, new DebitAccount { TransferId = transferId, AccountId = 1, Amount = 20 });
        Assert.That(debit.Succeeded, Is.True, debit.Reason);

        await cluster.KillAsync(a);
        await ForgetUnacknowledgedWorkAsync(a);
        await cluster.StartParticipantAsync(a);

        var credits = new[]
        {
            await tx.SendAsync(a, new CreditAccount { TransferId = transferId, AccountId = 2, Amount = 10 }),
            await tx.SendAsync(b, new CreditAccount { TransferId = transferId, AccountId = 1, Amount = 10 }),
        };
        Assert.That(credits.Select(c => c.Succeeded), Is.All.True, "the works after the restart run (a fresh branch at a)");

        var result = await tx.CommitAsync();

        Assert.Multiple(() =>
        {
            Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted), $"{result.Reason}{Environment.NewLine}{cluster.Diagnostics()}");
            Assert.That(result.Reason, Does.Contain("work 1 was lost"));
        });
        Assert.That(await cluster.WaitUntilFinishedAsync(tx.Id, Generous), Is.All.Not.EqualTo(BranchFinish.Committed));
        Assert.That(await cluster.CountPreparedAsync(), Is.Zero);
        await cluster.AssertAppliedAsync(tx.Id, committed: false);
    }

    [Test]
    public async Task ParticipantRestartedBeforeTheWorkThatPreparesEarly_ThatWorkIsRefused_AndNothingCommits()
    {
        await using var cluster = await ProcessCluster.CreateAsync(new ProcessClusterOptions { Participants = 2 });
        await cluster.StartAllAsync();
        var (a, b) = (cluster.ParticipantIds[0], cluster.ParticipantIds[1]);

        await using var tx = cluster.Initiator.Begin(new TransactionOptions { Protocol = CommitProtocol.TwoPhase, Participants = [a, b] });
        var transferId = tx.Id.Value;
        var debit = await tx.SendAsync(a, new DebitAccount { TransferId = transferId, AccountId = 1, Amount = 20 });
        Assert.That(debit.Succeeded, Is.True, debit.Reason);

        await cluster.KillAsync(a);
        await ForgetUnacknowledgedWorkAsync(a);
        await cluster.StartParticipantAsync(a);

        // The last work at a asks for early prepare: its branch holds work 2 only.
        var lastAtA = await tx.SendAsync(a, new CreditAccount { TransferId = transferId, AccountId = 2, Amount = 10 }, prepare: true);
        Assert.Multiple(() =>
        {
            Assert.That(lastAtA.Succeeded, Is.False, "a branch that lost work 1 must not prepare early");
            Assert.That(lastAtA.Prepared, Is.False);
            Assert.That(lastAtA.Reason, Does.Contain("work 1 was lost"));
        });

        await tx.SendAsync(b, new CreditAccount { TransferId = transferId, AccountId = 1, Amount = 10 }, prepare: true);
        var result = await tx.CommitAsync();

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Aborted), $"{result.Reason}{Environment.NewLine}{cluster.Diagnostics()}");
        Assert.That(await cluster.WaitUntilFinishedAsync(tx.Id, Generous), Is.All.Not.EqualTo(BranchFinish.Committed));
        Assert.That(await cluster.CountPreparedAsync(), Is.Zero);
        await cluster.AssertAppliedAsync(tx.Id, committed: false);
    }

    [Test]
    public async Task TwoWorksAtOneParticipantWithoutARestart_Commit()
    {
        await using var cluster = await ProcessCluster.CreateAsync(new ProcessClusterOptions { Participants = 2 });
        await cluster.StartAllAsync();
        var (a, b) = (cluster.ParticipantIds[0], cluster.ParticipantIds[1]);

        await using var tx = cluster.Initiator.Begin(new TransactionOptions { Protocol = CommitProtocol.TwoPhase });
        var transferId = tx.Id.Value;
        var works = new[]
        {
            await tx.SendAsync(a, new DebitAccount { TransferId = transferId, AccountId = 1, Amount = 20 }),
            await tx.SendAsync(a, new CreditAccount { TransferId = transferId, AccountId = 2, Amount = 10 }),
            await tx.SendAsync(b, new CreditAccount { TransferId = transferId, AccountId = 1, Amount = 10 }),
        };
        Assert.That(works.Select(w => w.Succeeded), Is.All.True);

        var result = await tx.CommitAsync();

        Assert.That(result.Outcome, Is.EqualTo(CommitOutcome.Committed), $"{result.Reason}{Environment.NewLine}{cluster.Diagnostics()}");
        Assert.That(await cluster.WaitUntilFinishedAsync(tx.Id, Generous), Is.All.EqualTo(BranchFinish.Committed));
        Assert.That(await cluster.CountPreparedAsync(), Is.Zero);
    }

    /// <summary>
    /// The hole needs work 1 acknowledged before the kill; a kill that comes between its answer and
    /// its acknowledgement makes the broker deliver work 1 again to the restarted process, which
    /// then runs it in the fresh branch (and the transaction rightly commits). Purging the killed
    /// participant's queue, with no consumer on it, drops such a redelivery: the same state as an
    /// acknowledgement that made it out before the kill.
    /// </summary>
    private static async Task ForgetUnacknowledgedWorkAsync(string participant)
    {
        var factory = new ConnectionFactory { Uri = TestServers.RabbitMq };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        var queue = TxCoordQueues.Participant(new ParticipantId(participant));
        // Once the broker has closed the dead process's channel (no consumer left), its unacknowledged deliveries are back in the queue.
        await Eventually.WaitForAsync(async () => (await channel.QueueDeclarePassiveAsync(queue)).ConsumerCount, c => c == 0, TimeSpan.FromSeconds(30), $"the broker to see {participant}'s consumer gone");
        await channel.QueuePurgeAsync(queue);
    }
}
