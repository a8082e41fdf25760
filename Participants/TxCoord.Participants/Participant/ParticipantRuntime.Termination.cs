using System.Collections.Concurrent;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using TxCoord.Contracts;
using TxCoord.Contracts.Security;
using TxCoord.Faults;
using TxCoord.Participants.Security;
using TxCoord.Security;
using TxCoord.Participants.PostgreSql;
using TxCoord.Participants.Protocol;

namespace TxCoord.Participants.Participant;

/// <summary>What one attempt to finish a prepared branch without the coordinator came to.</summary>
internal enum TerminationResult
{
    /// <summary>The branch committed or rolled back.</summary>
    Finished,

    /// <summary>Not finished yet, but not stuck: another participant leads a round, or this one's turn has not come.</summary>
    InProgress,

    /// <summary>Stuck: no peer knows the outcome (2PC), or fewer than a majority of the participants answer (3PC).</summary>
    Blocked,
}

/// <summary>
/// The participant's side of three-phase commit and of termination without the coordinator.
/// <para>
/// 3PC (the rules the Promela model in <c>Coordinator/models</c> mirrors). Every participant keeps,
/// outside its prepared transaction (<see cref="BranchStateStore"/>): the participants of the
/// transaction, its state (Prepared, PreCommitted, PreAborted), <c>last_elected</c> (the highest
/// termination round it joined; 0 = it follows the coordinator, whose PreCommit is round 0) and
/// <c>last_attempt</c> (the round of its PreCommitted/PreAborted state).
/// <list type="number">
/// <item>PreCommitBranch (round 0) is taken, forced, only while <c>last_elected</c> = 0, then acknowledged.</item>
/// <item>A prepared branch that cannot reach the coordinator after its decision timeout (or that already
/// joined a round) terminates. Round r is led by the participant at index (r - 1) mod n of the
/// participants sorted by id: the lowest id leads round 1; when it is dead, the next one leads round
/// 2 one <see cref="TxCoordParticipantOptions.TerminationTimeout"/> later, and so on (a participant
/// waits (r - h) timeouts after the last activity it saw in round h before leading round r).</item>
/// <item>The leader first joins round r itself, durably (<c>last_elected</c> = r), and gives the round up
/// if it already joined a higher one; that join is its own report. Only then does it ask every peer for
/// its state in round r (<see cref="GetBranchState"/>); a peer joins (durably sets <c>last_elected</c> = r)
/// unless it joined a higher round; a peer that never voted Yes fences its branch and answers Aborted.</item>
/// <item>Decision rule: any Committed -> commit; any Aborted -> abort (both final already). Otherwise,
/// with at least a majority of all n participants joined: let m be the highest <c>last_attempt</c>
/// among them; if every joined participant with <c>last_attempt</c> = m is PreCommitted, propose commit,
/// else (also when none has a <c>last_attempt</c>) propose abort. With fewer than a majority: blocked,
/// nothing changes (the partition rule).</item>
/// <item>The leader proposes (<see cref="ProposeTermination"/>); a peer accepts unless it joined a higher
/// round, durably taking PreCommitted or PreAborted with <c>last_attempt</c> = <c>last_elected</c> = r.
/// Once a majority accepted, the outcome is decided: the leader finishes its own branch and sends
/// <see cref="TerminationDecided"/> to every participant and to the coordinator, which adopts it.</item>
/// </list>
/// These are the quorum rules of E3PC (Keidar and Dolev), so two rounds, or a round and the
/// coordinator (which commits on PreCommit acknowledgements from a majority), never decide differently,
/// even across a partition: a side without a majority stays blocked.
/// </para>
/// <para>
/// 2PC, cooperative termination: a prepared branch that cannot reach the coordinator asks its peers
/// (round 0, nobody joins anything); a peer that committed, aborted or never voted Yes (and is now
/// fenced) tells the outcome and the branch finishes that way; otherwise it stays prepared and is
/// reported blocked. In 2PC a participant never decides alone.
/// </para>
/// </summary>
internal sealed partial class ParticipantRuntime
{
    /// <summary>Rows of finished branches older than this are deleted from <c>txcoord.branch_states</c>.</summary>
    internal static readonly TimeSpan FinishedStateRetention = TimeSpan.FromMinutes(10);

    private const int FinishedStateDeleteBatch = 1000;

    private readonly ConcurrentDictionary<TransactionId, TerminationProgress> _terminations = new();
    private BranchStateStore? _states;

    /// <summary>The branches' state outside their prepared transactions: peers, 3PC state and rounds.</summary>
    internal BranchStateStore States => _states ??= new BranchStateStore(_dataSource);

    /// <summary>Prepared branches whose participants are running (or waiting to run) 3PC termination.</summary>
    public int TerminatingBranches => _terminations.Count(t => t.Value.HighestRound > 0);

    private async Task InitializeStoresAsync()
    {
        await Store.InitializeAsync(CancellationToken.None);
        await States.InitializeAsync(CancellationToken.None);
    }

    /// <summary>
    /// Before PREPARE: records the protocol and the participants (3PC always; 2PC when it has peers)
    /// so the branch can reach its peers after a restart. Throws, so the branch votes No, when a 3PC
    /// Prepare does not name this participant among all of them: termination would count wrongly.
    /// </summary>
    private Task RecordPreparingAsync(BranchGid gid, PrepareBranch message, CancellationToken cancellationToken)
    {
        var participants = (message.Participants ?? []).Where(p => BranchGid.IsValidName(p.Value)).Distinct().ToList();
        if (message.Protocol == CommitProtocol.ThreePhase && !participants.Contains(Id))
        {
            throw new InvalidOperationException(
                $"a 3PC Prepare must list every participant of the transaction, this one ({Id}) included; it listed {participants.Count}");
        }

        if (message.Protocol != CommitProtocol.ThreePhase && !participants.Exists(p => p != Id))
        {
            return Task.CompletedTask; // no peer to ask: nothing to remember
        }

        if (!participants.Contains(Id))
        {
            participants.Add(Id);
        }

        return States.RecordPreparingAsync(gid, message.Protocol, participants, cancellationToken);
    }

    // ---- the coordinator's PreCommit -------------------------------------------------------

    public async Task HandlePreCommitAsync(ConsumeContext<PreCommitBranch> context)
    {
        await InitializeAsync();
        var message = context.Message;
        if (!IsForMe(message.Participant, message.TransactionId) || !TryCreateGid(message.Coordinator, message.TransactionId, out var gid)
            || !await KnowsCoordinatorAsync(message.Coordinator, message.TransactionId, nameof(PreCommitBranch), context.CancellationToken))
        {
            return;
        }

        object? reply = await PreCommitAsync(gid, context.CancellationToken) switch
        {
            BranchState.PreCommitted => new BranchPreCommitted { TransactionId = message.TransactionId, Participant = Id },
            BranchState.Committed => new BranchCommitted { TransactionId = message.TransactionId, Participant = Id },
            BranchState.Aborted => new BranchAborted { TransactionId = message.TransactionId, Participant = Id },
            _ => null,
        };
        if (reply is not null)
        {
            CrashPoint.Hit(CrashPoints.ParticipantAfterPreCommit);
            var coordinator = await context.GetSendEndpoint(TxCoordQueues.CoordinatorAddress(message.Coordinator));
            await coordinator.Send(reply, reply.GetType(), context.CancellationToken);
        }
    }

    /// <summary>
    /// <see cref="PreCommitBranch"/> for several transactions: each branch takes the PreCommit
    /// exactly as for a lone message, up to <see cref="BatchParallelism"/> at once; those
    /// PreCommitted are acknowledged in one <see cref="BranchesPreCommitted"/>, a branch found
    /// finished with its own BranchCommitted or BranchAborted, a refusal not at all. When one
    /// failed, the delivery fails after the answers and is retried whole (idempotent).
    /// </summary>
    public async Task HandlePreCommitBatchAsync(ConsumeContext<PreCommitBranches> context)
    {
        await InitializeAsync();
        var message = context.Message;
        var ids = BatchFor(message.Coordinator, message.Participant, message.TransactionIds);
        if (ids.Length > 0 && !await KnowsCoordinatorAsync(message.Coordinator, ids[0], nameof(PreCommitBranches), context.CancellationToken))
        {
            return;
        }

        var taken = await ForEachBranchAsync(ids, id => PreCommitAsync(BranchGid.Create(message.Coordinator, id, Id), context.CancellationToken));
        var preCommitted = ids.Where((_, i) => taken.Results[i] == BranchState.PreCommitted).ToArray();
        var finished = ids.Select((id, i) => (id, State: taken.Results[i])).Where(r => r.State is BranchState.Committed or BranchState.Aborted).ToArray();
        if (preCommitted.Length > 0 || finished.Length > 0)
        {
            CrashPoint.Hit(CrashPoints.ParticipantAfterPreCommit);
            var coordinator = await context.GetSendEndpoint(TxCoordQueues.CoordinatorAddress(message.Coordinator));
            if (preCommitted.Length > 0)
            {
                await coordinator.Send(new BranchesPreCommitted { Participant = Id, TransactionIds = preCommitted }, context.CancellationToken);
            }

            foreach (var (id, state) in finished)
            {
                object reply = state == BranchState.Committed
                    ? new BranchCommitted { TransactionId = id, Participant = Id }
                    : new BranchAborted { TransactionId = id, Participant = Id };
                await coordinator.Send(reply, reply.GetType(), context.CancellationToken);
            }
        }

        taken.ThrowIfAnyFailed();
    }

    /// <summary>
    /// Takes the coordinator's PreCommit. Returns PreCommitted when recorded (now or before),
    /// Committed or Aborted when the branch already finished (the coordinator adopts that), or
    /// null when refused: the branch joined a termination round, or never prepared.
    /// </summary>
    internal async Task<BranchState?> PreCommitAsync(BranchGid gid, CancellationToken cancellationToken)
    {
        var branch = await _branches.AcquireAsync(gid, cancellationToken);
        try
        {
            if (branch.Phase == BranchPhase.Working)
            {
                Log.PreCommitForUnpreparedBranch(_logger, gid.Transaction, Id.Value);
                return null;
            }

            _branches.Remove(branch);
            switch (await Store.GetStatusAsync(gid, cancellationToken))
            {
                case BranchStatus.Committed:
                    return BranchState.Committed;
                case BranchStatus.Aborted:
                    return BranchState.Aborted;
                case BranchStatus.Unknown:
                    Log.PreCommitForUnpreparedBranch(_logger, gid.Transaction, Id.Value);
                    return null;
            }

            if (await States.TryPreCommitAsync(gid, cancellationToken) is not null)
            {
                Log.PreCommitted(_logger, gid.Transaction, Id.Value);
                return BranchState.PreCommitted;
            }

            var record = await States.FindAsync(gid, cancellationToken);
            Log.PreCommitRefused(_logger, gid.Transaction, Id.Value, record?.LastElected ?? 0);
            return null;
        }
        finally
        {
            _branches.Release(branch);
        }
    }

    // ---- answering peers ---------------------------------------------------------------------

    public async Task HandleGetBranchStateAsync(ConsumeContext<GetBranchState> context)
    {
        await InitializeAsync();
        var message = context.Message;
        if (!IsForMe(message.Participant, message.TransactionId) || !TryCreateGid(message.Coordinator, message.TransactionId, out var gid)
            || !IsValidRequest(message.TransactionId, message.Asker, message.Round, minimumRound: 0)
            || !await IsAllowedPeerAsync(gid, nameof(GetBranchState), message.Asker, message.Round, isStateQuestion: true, context.CancellationToken))
        {
            return; // no answer: the asker counts this participant as unreachable
        }

        await context.RespondAsync(await ReportStateAsync(gid, message.Asker, message.Round, context.CancellationToken));
    }

    /// <summary>
    /// This branch's state for a peer. From round 1 on, joins the round first (durably) unless it
    /// joined a higher one. A branch that never voted Yes is fenced and reported Aborted.
    /// </summary>
    internal async Task<BranchStateReported> ReportStateAsync(BranchGid gid, ParticipantId asker, int round, CancellationToken cancellationToken)
    {
        if (round > 0)
        {
            NoteRound(gid.Transaction, round);
        }

        var branch = await _branches.AcquireAsync(gid, cancellationToken);
        try
        {
            var status = await FinalStatusOrFenceAsync(branch, asker, cancellationToken);
            if (status is { } final)
            {
                return Report(gid, round, final, joined: false, record: null);
            }

            if (round == 0)
            {
                var known = await States.FindAsync(gid, cancellationToken);
                return Report(gid, round, known?.State ?? BranchState.Prepared, joined: false, known);
            }

            if (await States.JoinRoundAsync(gid, round, cancellationToken) is { } joined)
            {
                Log.JoinedRound(_logger, gid.Transaction, Id.Value, round, asker.Value, joined.State);
                return Report(gid, round, joined.State, joined: true, joined);
            }

            var record = await States.FindAsync(gid, cancellationToken);
            Log.RoundRefused(_logger, gid.Transaction, Id.Value, round, asker.Value, record?.LastElected ?? 0);
            return Report(gid, round, record?.State ?? BranchState.Prepared, joined: false, record);
        }
        finally
        {
            _branches.Release(branch);
        }
    }

    public async Task HandleProposeTerminationAsync(ConsumeContext<ProposeTermination> context)
    {
        await InitializeAsync();
        var message = context.Message;
        if (!IsForMe(message.Participant, message.TransactionId) || !TryCreateGid(message.Coordinator, message.TransactionId, out var gid)
            || !IsValidRequest(message.TransactionId, message.Leader, message.Round, minimumRound: 1)
            || message.Outcome is not (TransactionOutcome.Committed or TransactionOutcome.Aborted)
            || !await IsAllowedPeerAsync(gid, nameof(ProposeTermination), message.Leader, message.Round, isStateQuestion: false, context.CancellationToken))
        {
            return;
        }

        var (accepted, lastElected) = await AcceptProposalAsync(gid, message.Leader, message.Round, message.Outcome == TransactionOutcome.Committed, context.CancellationToken);
        await context.RespondAsync(new TerminationProposalAnswered
        {
            TransactionId = message.TransactionId,
            Participant = Id,
            Round = message.Round,
            Accepted = accepted,
            LastElected = lastElected,
        });
    }

    /// <summary>
    /// Takes PreCommitted (<paramref name="commit"/>) or PreAborted in <paramref name="round"/>, unless
    /// the branch joined a higher round. A branch that already finished accepts only its own outcome.
    /// </summary>
    internal async Task<(bool Accepted, int LastElected)> AcceptProposalAsync(
        BranchGid gid, ParticipantId leader, int round, bool commit, CancellationToken cancellationToken)
    {
        NoteRound(gid.Transaction, round);
        var branch = await _branches.AcquireAsync(gid, cancellationToken);
        try
        {
            var status = await FinalStatusOrFenceAsync(branch, leader, cancellationToken);
            if (status is { } final)
            {
                return (final == (commit ? BranchState.Committed : BranchState.Aborted), round);
            }

            if (await States.AcceptProposalAsync(gid, round, commit, cancellationToken) is { } accepted)
            {
                Log.ProposalAccepted(_logger, gid.Transaction, Id.Value, round, leader.Value, accepted.State);
                return (true, accepted.LastElected);
            }

            var record = await States.FindAsync(gid, cancellationToken);
            Log.RoundRefused(_logger, gid.Transaction, Id.Value, round, leader.Value, record?.LastElected ?? 0);
            return (false, record?.LastElected ?? 0);
        }
        finally
        {
            _branches.Release(branch);
        }
    }

    public async Task HandleTerminationDecidedAsync(ConsumeContext<TerminationDecided> context)
    {
        await InitializeAsync();
        var message = context.Message;
        if (!TryCreateGid(message.Coordinator, message.TransactionId, out var gid)
            || !IsValidRequest(message.TransactionId, message.Leader, message.Round, minimumRound: 1)
            || message.Outcome is not (TransactionOutcome.Committed or TransactionOutcome.Aborted)
            || !await IsAllowedPeerAsync(gid, nameof(TerminationDecided), message.Leader, message.Round, isStateQuestion: false, context.CancellationToken))
        {
            return;
        }

        await FinishAsDecidedAsync(gid, message.Leader, message.Round, message.Outcome, context.CancellationToken);
    }

    /// <summary>Finishes the branch as a termination round decided.</summary>
    private async Task FinishAsDecidedAsync(BranchGid gid, ParticipantId leader, int round, TransactionOutcome outcome, CancellationToken cancellationToken)
    {
        Log.FinishingAsDecided(_logger, gid.Transaction, Id.Value, outcome, round, leader.Value);
        if (outcome == TransactionOutcome.Committed)
        {
            await CommitAsync(gid, cancellationToken);
        }
        else
        {
            await AbortAsync(gid, $"the participants' termination decided abort (round {round}, leader {leader})", cancellationToken);
        }

        _terminations.TryRemove(gid.Transaction, out _);
    }

    /// <summary>
    /// Under the branch's lock: Committed or Aborted when the branch has finished; a branch that never
    /// voted Yes (still working, or unknown) is rolled back and fenced, so it can never prepare, and is
    /// Aborted; null while it is prepared.
    /// </summary>
    private async Task<BranchState?> FinalStatusOrFenceAsync(Branch branch, ParticipantId asker, CancellationToken cancellationToken)
    {
        var gid = branch.Gid;
        if (branch.Phase == BranchPhase.Working)
        {
            Log.Fenced(_logger, gid.Transaction, Id.Value, asker.Value);
            await RollBackWorkingAsync(branch, $"participant {asker} asked during termination before this branch voted: fenced", cancellationToken, forced: true);
            return BranchState.Aborted;
        }

        _branches.Remove(branch);
        switch (await Store.GetStatusAsync(gid, cancellationToken))
        {
            case BranchStatus.Committed:
                return BranchState.Committed;
            case BranchStatus.Aborted:
                return BranchState.Aborted;
            case BranchStatus.Unknown:
                Log.Fenced(_logger, gid.Transaction, Id.Value, asker.Value);
                await Store.RecordAbortedAsync(gid, cancellationToken, forced: true);
                return BranchState.Aborted;
            default:
                return null;
        }
    }

    private BranchStateReported Report(BranchGid gid, int round, BranchState state, bool joined, BranchRecord? record) => new()
    {
        TransactionId = gid.Transaction,
        Participant = Id,
        State = state,
        Round = round,
        Joined = joined,
        LastElected = record?.LastElected ?? 0,
        LastAttempt = state is BranchState.PreCommitted or BranchState.PreAborted ? record?.LastAttempt : null,
    };

    /// <summary>
    /// A peer's termination message is taken only from a participant the branch recorded at prepare,
    /// and rounds, proposals and decisions only for a 3PC branch (SenderRules.CheckPeer), whatever the
    /// sender authentication: no real leader is outside that list. Refused: logged, counted, unanswered.
    /// </summary>
    private async Task<bool> IsAllowedPeerAsync(BranchGid gid, string messageType, ParticipantId sender, int round, bool isStateQuestion, CancellationToken cancellationToken)
    {
        var record = await States.FindAsync(gid, cancellationToken);
        if (SenderRules.CheckPeer(sender.Value, round, isStateQuestion, record?.Protocol, record?.Participants) is not { } refused)
        {
            return true;
        }

        RefusedMessages.Count(messageType, refused.Reason);
        SdkSenderChecks.PeerRefused(_logger, gid.Transaction, Id.Value, messageType, sender.Value, round, refused.Detail);
        return false;
    }

    private bool IsValidRequest(TransactionId transactionId, ParticipantId from, int round, int minimumRound)
    {
        if (BranchGid.IsValidName(from.Value) && round >= minimumRound)
        {
            return true;
        }

        Log.InvalidTerminationMessage(_logger, transactionId, Id.Value, from.Value ?? "", round);
        return false;
    }

    // ---- terminating without the coordinator ---------------------------------------------------

    /// <summary>
    /// Called for a prepared branch whose coordinator did not answer (<paramref name="coordinatorAnswered"/>
    /// false) or answered "not decided yet" (true). 2PC: asks the peers when the coordinator is silent.
    /// 3PC: runs or waits for a termination round when the coordinator is silent, or when the branch has
    /// already joined a round (it then refuses the coordinator's PreCommit, so only termination can end it).
    /// </summary>
    internal async Task<TerminationResult> TerminateAsync(
        IClientFactory clients, PreparedBranch prepared, bool coordinatorAnswered, CancellationToken cancellationToken)
    {
        var gid = prepared.Gid;
        var record = await States.FindAsync(gid, cancellationToken);
        if (record is null)
        {
            // A 2PC branch with no peers (or one prepared before its peers were recorded): only the coordinator can tell.
            return coordinatorAnswered ? TerminationResult.InProgress : TerminationResult.Blocked;
        }

        if (record.Protocol != CommitProtocol.ThreePhase)
        {
            return coordinatorAnswered ? TerminationResult.InProgress : await CooperativeTerminationAsync(clients, record, cancellationToken);
        }

        if (coordinatorAnswered && record.LastElected == 0 && !_terminations.ContainsKey(gid.Transaction))
        {
            return TerminationResult.InProgress; // the coordinator is alive and driving it
        }

        return await RunTerminationRoundAsync(clients, record, cancellationToken);
    }

    /// <summary>2PC: asks every peer; finishes the way one that knows says, otherwise stays prepared (blocked).</summary>
    private async Task<TerminationResult> CooperativeTerminationAsync(IClientFactory clients, BranchRecord record, CancellationToken cancellationToken)
    {
        var gid = record.Gid;
        var peers = record.Participants.Where(p => p != Id).ToList();
        var reports = await AskAllAsync(clients, record, peers, round: 0, TerminationRules.AnyFinal, cancellationToken);
        var knowing = TerminationRules.LearnFromPeers(reports);
        if (knowing is null)
        {
            Log.CooperativeTerminationBlocked(_logger, gid.Transaction, Id.Value, reports.Count, peers.Count);
            return TerminationResult.Blocked;
        }

        Log.LearnedFromPeer(_logger, gid.Transaction, Id.Value, knowing.State, knowing.Participant.Value);
        if (knowing.State == BranchState.Committed)
        {
            await CommitAsync(gid, cancellationToken);
        }
        else
        {
            await AbortAsync(gid, $"peer {knowing.Participant} reports its branch aborted (or it never voted Yes)", cancellationToken);
        }

        CrashPoint.Hit(CrashPoints.ParticipantResolution);
        return TerminationResult.Finished;
    }

    /// <summary>3PC: leads the next round this participant leads, when its turn has come.</summary>
    private async Task<TerminationResult> RunTerminationRoundAsync(IClientFactory clients, BranchRecord record, CancellationToken cancellationToken)
    {
        var gid = record.Gid;
        var participants = record.Participants.Distinct().OrderBy(p => p.Value, StringComparer.Ordinal).ToList();
        var rank = participants.IndexOf(Id);
        if (rank < 0)
        {
            Log.NotAmongParticipants(_logger, gid.Transaction, Id.Value);
            return TerminationResult.Blocked;
        }

        var now = _time.GetUtcNow();
        var timeout = _options.TerminationTimeout;
        var progress = _terminations.GetOrAdd(gid.Transaction, static (_, start) => new TerminationProgress(start), now - timeout);
        progress.Raise(record.LastElected, now);
        var (highest, lastActivity) = progress.Read();
        var round = TerminationRules.NextRoundLedBy(rank, participants.Count, highest);
        if (!TerminationRules.IsTurnOf(round, highest, lastActivity, timeout, now))
        {
            // An earlier leader's turn, or its round is still running. Still blocked if this
            // participant's own last round found no majority.
            return progress.LastRoundBlocked ? TerminationResult.Blocked : TerminationResult.InProgress;
        }

        var result = await LeadRoundAsync(clients, record, participants, round, progress, cancellationToken);
        progress.LastRoundBlocked = result == TerminationResult.Blocked;
        return result;
    }

    /// <summary>Leads round <paramref name="round"/>: collect states, propose, decide (see the class summary).</summary>
    private async Task<TerminationResult> LeadRoundAsync(
        IClientFactory clients, BranchRecord record, List<ParticipantId> participants, int round, TerminationProgress progress, CancellationToken cancellationToken)
    {
        var gid = record.Gid;
        var now = _time.GetUtcNow();

        var quorum = TerminationRules.Quorum(participants.Count);
        progress.Saw(round, now);
        Log.RoundStarted(_logger, gid.Transaction, Id.Value, round, participants.Count, quorum);

        // The leader joins its own round durably (last_elected = round) before it asks anyone, and that join
        // is its own report; it never asks itself over the bus. Asked over the bus, its own question could
        // time out (its consumer slow): it would propose without having joined, and after a restart (its
        // progress lost, last_elected still lower) NextRoundLedBy would give it the same round again, with
        // possibly a different proposal (models/README.md, finding 4; threepc.pml -DLEADER_JOINS_FIRST).
        var own = await ReportStateAsync(gid, Id, round, cancellationToken);
        var reports = new List<BranchStateReported> { own };
        if (!TerminationRules.AnyFinal(reports))
        {
            if (!own.Joined)
            {
                // It joined a higher round since this one was chosen (a later leader asked it): give this round up.
                progress.Raise(own.LastElected, _time.GetUtcNow());
                return TerminationResult.InProgress;
            }

            reports.AddRange(await AskAllAsync(clients, record, participants.Where(p => p != Id), round, TerminationRules.AnyFinal, cancellationToken));
        }

        foreach (var refused in reports.Where(r => !r.Joined))
        {
            progress.Raise(refused.LastElected, _time.GetUtcNow());
        }

        CrashPoint.Hit(CrashPoints.ParticipantTerminationLeader);
        var decision = TerminationRules.DecideRound(reports, participants.Count);
        var joined = reports.Where(r => r.Joined).ToList();
        switch (decision.Step)
        {
            case RoundStep.Finish:
                // Already final somewhere: a commit was decided, or a participant never voted Yes (no PreCommit
                // can exist) or an abort was decided. No majority needed to repeat a decision.
                return await DecideAsync(record, round, decision.Outcome, $"participant {decision.Because} is {decision.Outcome}", cancellationToken);
            case RoundStep.NoQuorum:
                Log.NoQuorum(_logger, gid.Transaction, Id.Value, round, joined.Count, quorum, participants.Count);
                return decision.Blocked ? TerminationResult.Blocked : TerminationResult.InProgress;
        }

        var proposal = decision.Outcome;
        Log.Proposing(_logger, gid.Transaction, Id.Value, round, proposal, joined.Count(r => r.State == BranchState.PreCommitted), joined.Count);

        var answers = await ProposeAllAsync(
            clients, record, participants, round, proposal, soFar => soFar.Count(a => a.Accepted) >= quorum, cancellationToken);
        foreach (var refused in answers.Where(a => !a.Accepted))
        {
            progress.Raise(refused.LastElected, _time.GetUtcNow());
        }

        var accepted = answers.Count(a => a.Accepted);
        var result = TerminationRules.CountAcceptances(accepted, answers.Count, participants.Count, proposal);
        if (result.Step == RoundStep.NoQuorum)
        {
            Log.NoQuorum(_logger, gid.Transaction, Id.Value, round, accepted, quorum, participants.Count);
            return result.Blocked ? TerminationResult.Blocked : TerminationResult.InProgress;
        }

        return await DecideAsync(record, round, proposal, $"{accepted} of {participants.Count} participants accepted", cancellationToken);
    }

    /// <summary>The decided outcome: finish this branch, then tell every peer and the coordinator.</summary>
    private async Task<TerminationResult> DecideAsync(BranchRecord record, int round, TransactionOutcome outcome, string why, CancellationToken cancellationToken)
    {
        var gid = record.Gid;
        Log.TerminationDecided(_logger, gid.Transaction, Id.Value, round, outcome, why);
        await FinishAsDecidedAsync(gid, Id, round, outcome, cancellationToken);

        var decided = new TerminationDecided { TransactionId = gid.Transaction, Coordinator = gid.Coordinator, Leader = Id, Round = round, Outcome = outcome };
        var bus = _services.GetRequiredService<IBus>();
        var targets = record.Participants.Where(p => p != Id).Select(TxCoordQueues.ParticipantAddress).Append(TxCoordQueues.CoordinatorAddress(gid.Coordinator));
        foreach (var address in targets)
        {
            try
            {
                var endpoint = await bus.GetSendEndpoint(address);
                await endpoint.Send(decided, cancellationToken);
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                // A peer that misses it learns the outcome from this branch in its own round.
                Log.DecisionNotSent(_logger, e, gid.Transaction, Id.Value, address);
            }
        }

        return TerminationResult.Finished;
    }

    /// <summary>
    /// Asks each of <paramref name="participants"/> for its state in <paramref name="round"/>, in parallel: the
    /// answers that came before every one answered, <paramref name="enough"/> held, or the termination timeout.
    /// </summary>
    private Task<List<BranchStateReported>> AskAllAsync(
        IClientFactory clients, BranchRecord record, IEnumerable<ParticipantId> participants, int round,
        Func<List<BranchStateReported>, bool> enough, CancellationToken cancellationToken)
    {
        var gid = record.Gid;
        return GatherAsync(participants.Select(async peer =>
        {
            var request = new GetBranchState { TransactionId = gid.Transaction, Coordinator = gid.Coordinator, Participant = peer, Asker = Id, Round = round };
            var answer = await RequestAsync<GetBranchState, BranchStateReported>(clients, peer, request, cancellationToken);
            return answer is { } a && a.Participant == peer && a.TransactionId == gid.Transaction && a.Round == round ? a : null;
        }), enough);
    }

    private Task<List<TerminationProposalAnswered>> ProposeAllAsync(
        IClientFactory clients, BranchRecord record, IEnumerable<ParticipantId> participants, int round, TransactionOutcome outcome,
        Func<List<TerminationProposalAnswered>, bool> enough, CancellationToken cancellationToken)
    {
        var gid = record.Gid;
        return GatherAsync(participants.Select(async peer =>
        {
            var request = new ProposeTermination
            {
                TransactionId = gid.Transaction, Coordinator = gid.Coordinator, Participant = peer, Leader = Id, Round = round, Outcome = outcome,
            };
            var answer = await RequestAsync<ProposeTermination, TerminationProposalAnswered>(clients, peer, request, cancellationToken);
            return answer is { } a && a.Participant == peer && a.TransactionId == gid.Transaction && a.Round == round ? a : null;
        }), enough);
    }

    /// <summary>
    /// Collects the answers of requests running in parallel until all are in or <paramref name="enough"/>
    /// holds; requests still running then end on their own timeout, their answers unused.
    /// </summary>
    private static async Task<List<T>> GatherAsync<T>(IEnumerable<Task<T?>> requests, Func<List<T>, bool> enough)
        where T : class
    {
        var pending = requests.ToList();
        var answers = new List<T>();
        while (pending.Count > 0 && !enough(answers))
        {
            var done = await Task.WhenAny(pending);
            pending.Remove(done);
            if (await done is { } answer)
            {
                answers.Add(answer);
            }
        }

        return answers;
    }

    private async Task<TResponse?> RequestAsync<TRequest, TResponse>(IClientFactory clients, ParticipantId peer, TRequest request, CancellationToken cancellationToken)
        where TRequest : class
        where TResponse : class
    {
        try
        {
            var client = clients.CreateRequestClient<TRequest>(
                TxCoordQueues.ParticipantAddress(peer), RequestTimeout.After(ms: (int)_options.TerminationTimeout.TotalMilliseconds));
            var response = await client.GetResponse<TResponse>(request, cancellationToken);
            return response.Message;
        }
        catch (Exception e) when (e is RequestTimeoutException || !cancellationToken.IsCancellationRequested)
        {
            return null; // dead, partitioned away, busy, or the broker refused the request: not counted
        }
    }

    /// <summary>Remembers activity in a termination round (a state request or proposal from its leader).</summary>
    private void NoteRound(TransactionId transactionId, int round)
    {
        var now = _time.GetUtcNow();
        _terminations.GetOrAdd(transactionId, static (_, start) => new TerminationProgress(start), now).Saw(round, now);
    }

    /// <summary>
    /// Forgets termination progress of branches no longer prepared, and deletes old rows of finished
    /// branches from <c>txcoord.branch_states</c>. Run at the end of each resolution pass.
    /// </summary>
    private async Task TidyTerminationsAsync(IReadOnlyList<PreparedBranch> prepared, CancellationToken cancellationToken)
    {
        var stillPrepared = prepared.Select(p => p.Gid.Transaction).ToHashSet();
        var now = _time.GetUtcNow();
        foreach (var (id, progress) in _terminations)
        {
            // Progress noted for a transaction this participant has no prepared branch of expires after a while.
            if (!stillPrepared.Contains(id) && progress.Read().LastActivity + FinishedStateRetention < now)
            {
                _terminations.TryRemove(new KeyValuePair<TransactionId, TerminationProgress>(id, progress));
            }
        }

        await States.DeleteFinishedAsync(FinishedStateRetention, FinishedStateDeleteBatch, cancellationToken);
    }

    /// <summary>The rounds seen for one transaction: the highest, and when it last showed activity.</summary>
    private sealed class TerminationProgress(DateTimeOffset start)
    {
        private readonly Lock _gate = new();
        private int _highest;
        private DateTimeOffset _lastActivity = start;

        public int HighestRound
        {
            get
            {
                lock (_gate)
                {
                    return _highest;
                }
            }
        }

        /// <summary>True when this participant's own last round found fewer than a majority (read and written by the resolution loop only).</summary>
        public bool LastRoundBlocked { get; set; }

        public (int Highest, DateTimeOffset LastActivity) Read()
        {
            lock (_gate)
            {
                return (_highest, _lastActivity);
            }
        }

        /// <summary>Learns that round <paramref name="round"/> exists (from a stored or refused round number): counts only when higher.</summary>
        public void Raise(int round, DateTimeOffset at)
        {
            lock (_gate)
            {
                if (round > _highest)
                {
                    _highest = round;
                    _lastActivity = at;
                }
            }
        }

        /// <summary>Activity in round <paramref name="round"/> (its leader asked or proposed): a higher round, or fresh life in the current one.</summary>
        public void Saw(int round, DateTimeOffset at)
        {
            lock (_gate)
            {
                if (round > _highest || (round == _highest && round > 0 && at > _lastActivity))
                {
                    _highest = round;
                    _lastActivity = at;
                }
            }
        }
    }
}
