using TxCoord.Contracts;

namespace TxCoord.Participants.Protocol;

/// <summary>
/// A prepared branch's termination state: what <c>txcoord.branch_states</c> keeps of it besides its
/// peers (<see cref="PostgreSql.BranchStateStore"/> is its durable form).
/// </summary>
/// <param name="State">Prepared, PreCommitted or PreAborted.</param>
/// <param name="LastElected">The highest termination round the branch joined; 0 while it follows the coordinator (whose PreCommit is round 0).</param>
/// <param name="LastAttempt">The round of its PreCommitted or PreAborted state; null while Prepared.</param>
internal readonly record struct RoundState(BranchState State, int LastElected, int? LastAttempt)
{
    /// <summary>A branch just prepared: it joined no round and took nothing.</summary>
    public static RoundState Prepared => new(BranchState.Prepared, 0, null);
}

/// <summary>What a leader's round comes to once it has its peers' states (<see cref="TerminationRules.DecideRound"/>).</summary>
internal enum RoundStep
{
    /// <summary>Some participant already committed or aborted: repeat that outcome, no majority needed.</summary>
    Finish,

    /// <summary>A majority joined: propose <see cref="RoundDecision.Outcome"/> to every participant.</summary>
    Propose,

    /// <summary>Fewer than a majority joined: nothing is proposed (the partition rule).</summary>
    NoQuorum,
}

/// <summary>The leader's decision after collecting states, or after collecting answers to its proposal.</summary>
/// <param name="Step">What to do next.</param>
/// <param name="Outcome">The outcome to finish with or to propose (Finish, Propose).</param>
/// <param name="Blocked">NoQuorum: true when fewer than a majority even answered (the round is blocked), false when a majority answered but some of them had joined a higher round (another round is in progress).</param>
/// <param name="Because">Finish: the participant whose final state settles it.</param>
internal readonly record struct RoundDecision(RoundStep Step, TransactionOutcome Outcome, bool Blocked, ParticipantId? Because);

/// <summary>
/// The rules of 3PC termination and of 2PC cooperative termination, as pure functions: the E3PC
/// quorum rules (Keidar and Dolev) that <c>Coordinator/models/threepc.pml</c> checks, which
/// <see cref="Participant.ParticipantRuntime"/> follows and <see cref="PostgreSql.BranchStateStore"/>'s
/// guarded writes implement durably (a contract test holds the two to the same answers). See the
/// summary of <c>ParticipantRuntime.Termination.cs</c> for the protocol they make up.
/// </summary>
internal static class TerminationRules
{
    /// <summary>A majority of all the transaction's participants (not of those that answered).</summary>
    public static int Quorum(int participants) => participants / 2 + 1;

    /// <summary>
    /// The first round above <paramref name="highest"/> led by the participant at <paramref name="rank"/> (its
    /// index among the participants sorted by id, ordinal): rounds rotate, round r is led by rank (r - 1) mod n.
    /// </summary>
    public static int NextRoundLedBy(int rank, int participants, int highest) =>
        highest + 1 + ((((rank - highest) % participants) + participants) % participants);

    /// <summary>
    /// True when a participant may lead <paramref name="round"/>: (round - highest) termination timeouts
    /// have passed since the last activity seen in round <paramref name="highest"/>, so each earlier
    /// leader had its turn (a participant leading round 1 after a silent coordinator waits one timeout).
    /// </summary>
    public static bool IsTurnOf(int round, int highest, DateTimeOffset lastActivity, TimeSpan timeout, DateTimeOffset now) =>
        now >= lastActivity + ((round - highest) * timeout);

    // ---- a peer's side: the guarded writes of txcoord.branch_states ----------------------------

    /// <summary>
    /// The coordinator's PreCommit (round 0): taken, as PreCommitted with <c>last_attempt</c> 0, only by a
    /// branch that joined no termination round and did not PreAbort. Null: refused, nothing changes.
    /// </summary>
    public static RoundState? TakePreCommit(RoundState branch) =>
        branch.LastElected == 0 && branch.State is BranchState.Prepared or BranchState.PreCommitted
            ? branch with { State = BranchState.PreCommitted, LastAttempt = 0 }
            : null;

    /// <summary>Joins round <paramref name="round"/> unless the branch joined a higher one. Null: refused, nothing changes.</summary>
    public static RoundState? JoinRound(RoundState branch, int round) =>
        branch.LastElected <= round ? branch with { LastElected = round } : null;

    /// <summary>
    /// Takes round <paramref name="round"/>'s proposal (PreCommitted for commit, PreAborted for abort,
    /// <c>last_attempt</c> = <c>last_elected</c> = round) unless the branch joined a higher round. Null: refused.
    /// </summary>
    public static RoundState? AcceptProposal(RoundState branch, int round, bool commit) =>
        branch.LastElected <= round
            ? new RoundState(commit ? BranchState.PreCommitted : BranchState.PreAborted, round, round)
            : null;

    // ---- the leader's side -------------------------------------------------------------------

    /// <summary>
    /// The decision rule once the leader has the states of its round (its own among them):
    /// any Committed: commit; any Aborted: abort (both final already). Otherwise, with a majority of
    /// all <paramref name="participants"/> joined: let m be the highest <c>last_attempt</c> among
    /// them; propose commit if every joined participant with <c>last_attempt</c> = m is
    /// PreCommitted, else abort (also when none has a <c>last_attempt</c>). With fewer: no quorum.
    /// </summary>
    public static RoundDecision DecideRound(IReadOnlyCollection<BranchStateReported> reports, int participants)
    {
        if (reports.FirstOrDefault(r => r.State == BranchState.Committed) is { } committed)
        {
            return new RoundDecision(RoundStep.Finish, TransactionOutcome.Committed, false, committed.Participant);
        }

        if (reports.FirstOrDefault(r => r.State == BranchState.Aborted) is { } aborted)
        {
            return new RoundDecision(RoundStep.Finish, TransactionOutcome.Aborted, false, aborted.Participant);
        }

        var quorum = Quorum(participants);
        var joined = reports.Where(r => r.Joined).ToList();
        if (joined.Count < quorum)
        {
            return new RoundDecision(RoundStep.NoQuorum, TransactionOutcome.Pending, reports.Count < quorum, null);
        }

        var highest = joined.Max(r => r.LastAttempt);
        var commit = highest is { } m && joined.Where(r => r.LastAttempt == m).All(r => r.State == BranchState.PreCommitted);
        return new RoundDecision(RoundStep.Propose, commit ? TransactionOutcome.Committed : TransactionOutcome.Aborted, false, null);
    }

    /// <summary>
    /// The proposal's result: decided (Finish with <paramref name="proposal"/>) once a majority of all
    /// participants accepted; otherwise no quorum, blocked when fewer than a majority even answered.
    /// </summary>
    public static RoundDecision CountAcceptances(int accepted, int answered, int participants, TransactionOutcome proposal)
    {
        var quorum = Quorum(participants);
        return accepted >= quorum
            ? new RoundDecision(RoundStep.Finish, proposal, false, null)
            : new RoundDecision(RoundStep.NoQuorum, TransactionOutcome.Pending, answered < quorum, null);
    }

    /// <summary>
    /// 2PC cooperative termination: the outcome a peer's answer settles (a peer that committed: commit;
    /// one that aborted or never voted Yes, now fenced: abort; a commit wins over an abort, which cannot
    /// happen in a correct run), or null when no peer knows: the branch stays prepared, blocked.
    /// </summary>
    public static BranchStateReported? LearnFromPeers(IEnumerable<BranchStateReported> reports)
    {
        var list = reports as IReadOnlyCollection<BranchStateReported> ?? [.. reports];
        return list.FirstOrDefault(r => r.State == BranchState.Committed) ?? list.FirstOrDefault(r => r.State == BranchState.Aborted);
    }

    /// <summary>True when an answer already settles the outcome: a branch that committed or aborted.</summary>
    public static bool AnyFinal(IEnumerable<BranchStateReported> reports) => reports.Any(r => r.State is BranchState.Committed or BranchState.Aborted);
}
