using TxCoord.Contracts;
using TxCoord.Participants.Protocol;

namespace TxCoord.Tests.Unit.Participants;

/// <summary>
/// The termination rules as tables. A report is written <c>S±a</c>: S the state (P Prepared, PC
/// PreCommitted, PA PreAborted, C Committed, A Aborted), + joined the round or - refused it, a its
/// <c>last_attempt</c> (none when omitted).
/// </summary>
public sealed class TerminationRulesTests
{
    // ---- who leads, and when --------------------------------------------------------------------

    [TestCase(0, 3, 0, 1)] // the lowest id leads round 1
    [TestCase(1, 3, 0, 2)] // the next one round 2, if round 1 did not finish
    [TestCase(2, 3, 0, 3)]
    [TestCase(0, 3, 1, 4)] // after round 1 the lowest id next leads round 4
    [TestCase(1, 3, 1, 2)]
    [TestCase(2, 3, 2, 3)]
    [TestCase(2, 3, 3, 6)]
    [TestCase(0, 1, 0, 1)] // alone: every round
    [TestCase(0, 1, 7, 8)]
    [TestCase(1, 2, 9, 10)]
    public void NextRoundLedBy_IsTheFirstRoundAboveTheHighestSeenThatRotatesToThisRank(int rank, int participants, int highest, int expected) =>
        Assert.That(TerminationRules.NextRoundLedBy(rank, participants, highest), Is.EqualTo(expected));

    [Test]
    public void EveryRoundHasExactlyOneLeader()
    {
        for (var participants = 1; participants <= 5; participants++)
        {
            for (var round = 1; round <= 30; round++)
            {
                var leaders = Enumerable.Range(0, participants).Where(rank => TerminationRules.NextRoundLedBy(rank, participants, round - 1) == round).ToList();
                Assert.That(leaders, Has.Count.EqualTo(1), $"round {round} of {participants}");
            }
        }
    }

    [TestCase(1, 0, 0.99, false)] // round 1 after a silent coordinator: one timeout after the last activity
    [TestCase(1, 0, 1.0, true)]
    [TestCase(3, 1, 1.5, false)] // round 3 after round 1: the leader of round 2 has its timeout first
    [TestCase(3, 1, 2.0, true)]
    public void IsTurnOf_WaitsOneTerminationTimeoutPerEarlierLeader(int round, int highest, double timeoutsSince, bool expected)
    {
        var lastActivity = new DateTimeOffset(2026, 12, 3, 12, 0, 0, TimeSpan.Zero);
        var timeout = TimeSpan.FromSeconds(10);
        Assert.That(TerminationRules.IsTurnOf(round, highest, lastActivity, timeout, lastActivity + (timeoutsSince * timeout)), Is.EqualTo(expected));
    }

    [TestCase(1, 1)]
    [TestCase(2, 2)]
    [TestCase(3, 2)]
    [TestCase(4, 3)]
    [TestCase(5, 3)]
    public void Quorum_IsAMajorityOfAllParticipants(int participants, int quorum) =>
        Assert.That(TerminationRules.Quorum(participants), Is.EqualTo(quorum));

    // ---- the leader's decision ------------------------------------------------------------------

    [TestCase(3, "C P-", "finish Committed")] // final somewhere: repeat it, no majority needed
    [TestCase(3, "A PC+0", "finish Aborted")]
    [TestCase(3, "PA+1 A C", "finish Committed")] // a commit settles it first (both cannot happen in a correct run)
    [TestCase(3, "P+ P+", "propose Aborted")] // nobody PreCommitted: abort
    [TestCase(3, "PC+0 P+", "propose Committed")] // the coordinator's PreCommit (attempt 0) is the highest attempt
    [TestCase(3, "PC+0 PA+1", "propose Aborted")] // a later round's PreAbort outranks the coordinator's PreCommit
    [TestCase(3, "PC+2 PA+1 P+", "propose Committed")] // only the highest attempt counts
    [TestCase(3, "PC+1 PA+1", "propose Aborted")] // split at the highest attempt: abort
    [TestCase(3, "PC+0 PC-0 P-", "no quorum, in progress")] // a majority answered, but one refused (joined a higher round)
    [TestCase(3, "PC+0", "no quorum, blocked")] // alone on its side of a partition
    [TestCase(4, "PC+0 PC+0", "no quorum, blocked")] // 2 of 4 is no majority
    [TestCase(5, "PC+0 PC+0 PC+0", "propose Committed")]
    [TestCase(5, "PC+0 PC+0 P+", "propose Committed")] // every highest-attempt one PreCommitted; the others never saw it
    [TestCase(1, "P+", "propose Aborted")]
    [TestCase(2, "PC+0 P+", "propose Committed")]
    public void DecideRound(int participants, string reports, string expected) =>
        Assert.That(Describe(TerminationRules.DecideRound(Reports(reports), participants)), Is.EqualTo(expected));

    [TestCase(2, 2, 3, "finish Committed")]
    [TestCase(1, 3, 3, "no quorum, in progress")] // a majority answered, most refused: a higher round runs
    [TestCase(1, 1, 3, "no quorum, blocked")]
    [TestCase(2, 4, 4, "no quorum, in progress")]
    [TestCase(3, 3, 5, "finish Committed")]
    public void CountAcceptances(int accepted, int answered, int participants, string expected) =>
        Assert.That(Describe(TerminationRules.CountAcceptances(accepted, answered, participants, TransactionOutcome.Committed)), Is.EqualTo(expected));

    [TestCase("P- P-", null)] // nobody knows: blocked
    [TestCase("PC- A", "A")]
    [TestCase("A C", "C")]
    [TestCase("C", "C")]
    public void LearnFromPeers_TakesAFinalState_OrNothing(string reports, string? expected) =>
        Assert.That(TerminationRules.LearnFromPeers(Reports(reports))?.State, Is.EqualTo(expected is null ? null : State(expected)));

    // ---- a peer's guarded writes ----------------------------------------------------------------

    [TestCase("P", 0, null, "PC 0 0")] // the coordinator's PreCommit, as round 0
    [TestCase("PC", 0, 0, "PC 0 0")] // again: idempotent
    [TestCase("P", 1, null, "refused")] // joined round 1: the coordinator may no longer PreCommit it
    [TestCase("PC", 2, 2, "refused")]
    [TestCase("PA", 0, null, "refused")] // not reachable in a correct run; never turned into a PreCommit
    public void TakePreCommit(string state, int lastElected, int? lastAttempt, string expected) =>
        Assert.That(Describe(TerminationRules.TakePreCommit(new RoundState(State(state), lastElected, lastAttempt))), Is.EqualTo(expected));

    [TestCase("P", 0, null, 1, "P 1 -")]
    [TestCase("PC", 0, 0, 3, "PC 3 0")] // joining keeps the state and its attempt
    [TestCase("PC", 2, 2, 2, "PC 2 2")] // the same round again (a re-sent question)
    [TestCase("PA", 3, 3, 2, "refused")] // a lower round
    public void JoinRound(string state, int lastElected, int? lastAttempt, int round, string expected) =>
        Assert.That(Describe(TerminationRules.JoinRound(new RoundState(State(state), lastElected, lastAttempt), round)), Is.EqualTo(expected));

    [TestCase("P", 1, null, 1, true, "PC 1 1")]
    [TestCase("PC", 1, 0, 1, false, "PA 1 1")] // a round's proposal replaces the coordinator's PreCommit
    [TestCase("P", 0, null, 3, false, "PA 3 3")] // a proposal of a round it did not join (its question was lost)
    [TestCase("PC", 4, 2, 3, true, "refused")] // joined a higher round since
    public void AcceptProposal(string state, int lastElected, int? lastAttempt, int round, bool commit, string expected) =>
        Assert.That(Describe(TerminationRules.AcceptProposal(new RoundState(State(state), lastElected, lastAttempt), round, commit)), Is.EqualTo(expected));

    // ---- notation -------------------------------------------------------------------------------

    private static List<BranchStateReported> Reports(string text) =>
    [
        .. text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select((report, i) =>
        {
            var sign = report.IndexOfAny(['+', '-']);
            var state = sign < 0 ? report : report[..sign];
            var attempt = sign >= 0 && sign + 1 < report.Length ? int.Parse(report[(sign + 1)..], System.Globalization.CultureInfo.InvariantCulture) : (int?)null;
            return new BranchStateReported
            {
                TransactionId = TransactionId.New(), Participant = new ParticipantId($"p{i}"), State = State(state), Round = 1,
                Joined = sign >= 0 && report[sign] == '+', LastAttempt = attempt,
            };
        }),
    ];

    private static BranchState State(string text) => text switch
    {
        "P" => BranchState.Prepared,
        "PC" => BranchState.PreCommitted,
        "PA" => BranchState.PreAborted,
        "C" => BranchState.Committed,
        "A" => BranchState.Aborted,
        _ => throw new ArgumentException($"unknown state {text}"),
    };

    private static string Describe(RoundDecision decision) => decision.Step switch
    {
        RoundStep.Finish => $"finish {decision.Outcome}",
        RoundStep.Propose => $"propose {decision.Outcome}",
        _ => decision.Blocked ? "no quorum, blocked" : "no quorum, in progress",
    };

    private static string Describe(RoundState? state) => state is { } s
        ? $"{Short(s.State)} {s.LastElected} {(s.LastAttempt is { } a ? a.ToString(System.Globalization.CultureInfo.InvariantCulture) : "-")}"
        : "refused";

    private static string Short(BranchState state) => state switch
    {
        BranchState.Prepared => "P",
        BranchState.PreCommitted => "PC",
        BranchState.PreAborted => "PA",
        _ => state.ToString(),
    };
}
