using TxCoord.Contracts;
using TxCoord.Participants.Participant;
using TxCoord.Participants.PostgreSql;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// The participant's side of 3PC and of termination, one rule at a time, on the real PostgreSQL: a probe
/// stands in for the coordinator (work and Prepare over the real RabbitMQ) and the test plays the
/// peers by calling the participant's handlers directly. These are the round rules the termination
/// protocol's safety rests on.
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class TerminationProtocolTests
{
    private TxCoordCluster _cluster = null!;
    private ProbeCoordinator _probe = null!;
    private string _participant = null!;
    private ParticipantId[] _all = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _cluster = await TxCoordCluster.StartAsync(new ClusterOptions { Participants = 1, BranchTimeout = TimeSpan.FromSeconds(60), DecisionTimeout = TimeSpan.FromMinutes(10) });
        _probe = await ProbeCoordinator.StartAsync(_cluster);
        _participant = _cluster.ParticipantIds[0];
        // Peers that do not run: only this participant's own rules are under test.
        _all = [new ParticipantId(_participant), new ParticipantId("peer-x"), new ParticipantId("peer-y")];
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        await _probe.DisposeAsync();
        await _cluster.DisposeAsync();
    }

    private ParticipantRuntime Runtime => _cluster.ParticipantRuntime(_participant);

    private ParticipantId Me => new(_participant);

    private static readonly ParticipantId PeerX = new("peer-x");

    [Test]
    public async Task ThreePhasePrepare_RecordsProtocolAndPeersOutsideTheBranch_ThenTakesTheCoordinatorsPreCommit()
    {
        var gid = await PrepareAsync(CommitProtocol.ThreePhase, _all);

        var before = await Runtime.States.FindAsync(gid, CancellationToken.None);
        var first = await Runtime.PreCommitAsync(gid, CancellationToken.None);
        var again = await Runtime.PreCommitAsync(gid, CancellationToken.None);
        var after = await Runtime.States.FindAsync(gid, CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(before!.Protocol, Is.EqualTo(CommitProtocol.ThreePhase));
            Assert.That(before.Participants, Is.EquivalentTo(_all));
            Assert.That(before.State, Is.EqualTo(BranchState.Prepared));
            Assert.That(first, Is.EqualTo(BranchState.PreCommitted));
            Assert.That(again, Is.EqualTo(BranchState.PreCommitted), "a duplicate PreCommit is acknowledged again");
            Assert.That(after!.State, Is.EqualTo(BranchState.PreCommitted));
            Assert.That(after.LastAttempt, Is.Zero, "the coordinator's PreCommit is round 0");
            Assert.That(after.LastElected, Is.Zero);
        });
    }

    [Test]
    public async Task BranchThatJoinedARound_RefusesTheCoordinatorsPreCommitAndLowerRounds_AcceptsItsOwnRound()
    {
        var gid = await PrepareAsync(CommitProtocol.ThreePhase, _all);

        var joined = await Runtime.ReportStateAsync(gid, PeerX, 2, CancellationToken.None);
        var preCommit = await Runtime.PreCommitAsync(gid, CancellationToken.None);
        var lowerRound = await Runtime.ReportStateAsync(gid, PeerX, 1, CancellationToken.None);
        var lowerProposal = await Runtime.AcceptProposalAsync(gid, PeerX, 1, commit: true, CancellationToken.None);
        var ownProposal = await Runtime.AcceptProposalAsync(gid, PeerX, 2, commit: false, CancellationToken.None);
        var record = await Runtime.States.FindAsync(gid, CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(joined.Joined, Is.True);
            Assert.That(joined.State, Is.EqualTo(BranchState.Prepared));
            Assert.That(joined.LastElected, Is.EqualTo(2));
            Assert.That(joined.LastAttempt, Is.Null);
            Assert.That(preCommit, Is.Null, "the coordinator's PreCommit (round 0) is refused once a round was joined");
            Assert.That(lowerRound.Joined, Is.False);
            Assert.That(lowerRound.LastElected, Is.EqualTo(2));
            Assert.That(lowerProposal, Is.EqualTo((false, 2)));
            Assert.That(ownProposal, Is.EqualTo((true, 2)));
            Assert.That(record!.State, Is.EqualTo(BranchState.PreAborted));
            Assert.That(record.LastAttempt, Is.EqualTo(2));
        });
    }

    [Test]
    public async Task PreCommittedBranch_ReportsItsAttemptInALaterRound_AndAHigherRoundCanStillMoveIt()
    {
        var gid = await PrepareAsync(CommitProtocol.ThreePhase, _all);
        await Runtime.PreCommitAsync(gid, CancellationToken.None);

        var report = await Runtime.ReportStateAsync(gid, PeerX, 1, CancellationToken.None);
        var accepted = await Runtime.AcceptProposalAsync(gid, PeerX, 4, commit: true, CancellationToken.None);
        var record = await Runtime.States.FindAsync(gid, CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(report.State, Is.EqualTo(BranchState.PreCommitted));
            Assert.That(report.LastAttempt, Is.Zero);
            Assert.That(report.Joined, Is.True);
            Assert.That(accepted, Is.EqualTo((true, 4)));
            Assert.That(record!.LastAttempt, Is.EqualTo(4));
            Assert.That(record.LastElected, Is.EqualTo(4));
        });
    }

    [Test]
    public async Task PeerThatIsStillWorking_IsFencedWhenAsked_AndItsLatePrepareVotesNo()
    {
        var id = TransactionId.New();
        var work = await _probe.SendRawWorkAsync(_participant, new PutItem { Key = $"k-{id}", Value = "v" }, Headers(id));
        Assert.That(work.Succeeded, Is.True);
        var gid = BranchGid.Create(_probe.Id, id, Me);

        var report = await Runtime.ReportStateAsync(gid, PeerX, 0, CancellationToken.None);
        await _probe.SendAsync(_participant, Prepare(id, CommitProtocol.TwoPhase, _all));
        var vote = await _probe.NextAsync<BranchVoted>(id);

        Assert.Multiple(async () =>
        {
            Assert.That(report.State, Is.EqualTo(BranchState.Aborted), "never voted Yes: abort");
            Assert.That(vote.Vote, Is.EqualTo(Vote.No));
            Assert.That(await Runtime.Store.GetStatusAsync(gid, CancellationToken.None), Is.EqualTo(BranchStatus.Aborted));
            Assert.That(await KeyValueParticipant.ReadAsync(_cluster.ParticipantDatabases[_participant], $"k-{id}"), Is.Null);
        });
    }

    [Test]
    public async Task PeerThatNeverHeardOfTheTransaction_IsFencedWhenAsked_AndALateWorkIsRefused()
    {
        var id = TransactionId.New();
        var gid = BranchGid.Create(_probe.Id, id, Me);

        var report = await Runtime.ReportStateAsync(gid, PeerX, 3, CancellationToken.None);
        var proposal = await Runtime.AcceptProposalAsync(gid, PeerX, 3, commit: true, CancellationToken.None);
        var late = await _probe.SendRawWorkAsync(_participant, new PutItem { Key = $"k-{id}", Value = "v" }, Headers(id));

        Assert.Multiple(() =>
        {
            Assert.That(report.State, Is.EqualTo(BranchState.Aborted));
            Assert.That(report.Joined, Is.False);
            Assert.That(proposal.Accepted, Is.False, "an aborted branch accepts only abort");
            Assert.That(late.Succeeded, Is.False);
        });
    }

    [Test]
    public async Task FinishedBranch_ReportsItsOutcome_AndAcceptsOnlyThatOutcome()
    {
        var gid = await PrepareAsync(CommitProtocol.ThreePhase, _all);
        await _probe.SendAsync(_participant, new CommitBranch { TransactionId = gid.Transaction, Coordinator = _probe.Id, Participant = Me });
        await _probe.NextAsync<BranchCommitted>(gid.Transaction);

        var report = await Runtime.ReportStateAsync(gid, PeerX, 5, CancellationToken.None);
        var abort = await Runtime.AcceptProposalAsync(gid, PeerX, 5, commit: false, CancellationToken.None);
        var commit = await Runtime.AcceptProposalAsync(gid, PeerX, 5, commit: true, CancellationToken.None);
        var preCommit = await Runtime.PreCommitAsync(gid, CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(report.State, Is.EqualTo(BranchState.Committed));
            Assert.That(abort.Accepted, Is.False);
            Assert.That(commit.Accepted, Is.True);
            Assert.That(preCommit, Is.EqualTo(BranchState.Committed), "a late PreCommit is answered with the outcome, which the coordinator adopts");
        });
    }

    [Test]
    public async Task TwoPhasePrepare_RecordsPeersOnlyWhenThereArePeers()
    {
        var alone = await PrepareAsync(CommitProtocol.TwoPhase, [Me]);
        var withPeers = await PrepareAsync(CommitProtocol.TwoPhase, _all);

        Assert.Multiple(async () =>
        {
            Assert.That(await Runtime.States.FindAsync(alone, CancellationToken.None), Is.Null);
            Assert.That((await Runtime.States.FindAsync(withPeers, CancellationToken.None))!.Protocol, Is.EqualTo(CommitProtocol.TwoPhase));
            Assert.That((await Runtime.ReportStateAsync(withPeers, PeerX, 0, CancellationToken.None)).State, Is.EqualTo(BranchState.Prepared));
        });
    }

    [Test]
    public async Task ThreePhasePrepareThatDoesNotListThisParticipant_VotesNo()
    {
        var id = TransactionId.New();
        Assert.That((await _probe.SendRawWorkAsync(_participant, new PutItem { Key = $"k-{id}", Value = "v" }, Headers(id))).Succeeded);

        await _probe.SendAsync(_participant, Prepare(id, CommitProtocol.ThreePhase, [PeerX]));
        var vote = await _probe.NextAsync<BranchVoted>(id);

        Assert.Multiple(() =>
        {
            Assert.That(vote.Vote, Is.EqualTo(Vote.No));
            Assert.That(vote.Reason, Does.Contain("must list every participant"));
        });
    }

    /// <summary>Work, then Prepare from the probe; returns once the branch voted Yes.</summary>
    private async Task<BranchGid> PrepareAsync(CommitProtocol protocol, ParticipantId[] participants)
    {
        var id = TransactionId.New();
        var work = await _probe.SendRawWorkAsync(_participant, new PutItem { Key = $"k-{id}", Value = "v" }, Headers(id));
        Assert.That(work.Succeeded, Is.True, work.Reason);
        await _probe.SendAsync(_participant, Prepare(id, protocol, participants));
        var vote = await _probe.NextAsync<BranchVoted>(id);
        Assert.That(vote.Vote, Is.EqualTo(Vote.Yes), vote.Reason);
        return BranchGid.Create(_probe.Id, id, Me);
    }

    private PrepareBranch Prepare(TransactionId id, CommitProtocol protocol, ParticipantId[] participants) => new()
    {
        TransactionId = id, Coordinator = _probe.Id, Participant = Me, Protocol = protocol, Participants = participants,
    };

    private Dictionary<string, object> Headers(TransactionId id) => new()
    {
        [TxCoordHeaders.TransactionId] = id.Value.ToString(),
        [TxCoordHeaders.CoordinatorId] = _probe.Id.Value,
    };
}
