using MassTransit;
using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using TxCoord.Coordinator.Journal;
using TxCoord.Faults;
using TxCoord.Coordinator.Security;
using TxCoord.Security;

namespace TxCoord.Coordinator.Runtime;

/// <summary>
/// The driver's part of three-phase commit: PreCommit acknowledgements, the forced PreCommit
/// record, and the decisions of the participants' termination protocol, which a coordinator that
/// was away adopts before it drives anything of its own.
/// </summary>
internal sealed partial class CoordinatorRuntime
{
    public Task HandlePreCommittedAsync(ConsumeContext<BranchPreCommitted> context) =>
        PreCommitAcknowledgedAsync(context.Message, context.CancellationToken);

    /// <summary>Each acknowledgement of a batch on its own, at once; the delivery is retried when any of them failed (all are idempotent).</summary>
    public Task HandlePreCommittedBatchAsync(ConsumeContext<BranchesPreCommitted> context) =>
        Task.WhenAll(context.Message.TransactionIds.Distinct().Select(id =>
            PreCommitAcknowledgedAsync(new BranchPreCommitted { TransactionId = id, Participant = context.Message.Participant }, context.CancellationToken)));

    public Task HandleTerminationDecidedAsync(ConsumeContext<TerminationDecided> context) =>
        TerminationDecidedAsync(context.Message, context.CancellationToken);

    /// <summary>
    /// A PreCommit acknowledgement. Ignored for a transaction not in memory: it has ended, or
    /// recovery re-sends PreCommit and the participant acknowledges again.
    /// </summary>
    public Task PreCommitAcknowledgedAsync(BranchPreCommitted message, CancellationToken cancellationToken)
    {
        message = MessageLimits.Bound(message);
        Seen(message.Participant);
        return WithExistingEntryAsync(message.TransactionId, nameof(BranchPreCommitted), message.Participant, entry =>
            ApplyAsync(entry, new PreCommitAcknowledged(message.Participant), cancellationToken), cancellationToken);
    }

    /// <summary>
    /// The decision of the participants' termination protocol. Adopted by a transaction in memory
    /// that has not decided; for one only the journal knows, a PreCommit row is resumed and then
    /// adopts it, an unknown transaction records the abort (a commit for it would contradict the
    /// journal, which is reported). A decision that contradicts the journal or the coordinator's own
    /// commit is a heuristic hazard and is logged critically, never applied.
    /// </summary>
    public Task TerminationDecidedAsync(TerminationDecided message, CancellationToken cancellationToken)
    {
        message = MessageLimits.Bound(message);
        var id = message.TransactionId;
        var leader = message.Leader.Value ?? "";
        if (!BranchGid.IsValidName(leader) || message.Outcome is not (TransactionOutcome.Committed or TransactionOutcome.Aborted))
        {
            Log.TerminationDecisionInvalid(_logger, id, leader, message.Outcome);
            return Task.CompletedTask;
        }

        Seen(message.Leader);
        var decided = new TerminationDecisionReceived(message.Leader, message.Round, message.Outcome);
        return WithEntryAsync(id, async entry =>
        {
            if (entry.State is null)
            {
                var known = await _journal.FindAsync(id, cancellationToken);
                if (!await TryResumePreCommitAsync(entry, known, cancellationToken))
                {
                    await TerminationDecidedForUnknownAsync(message, known, cancellationToken);
                    return;
                }
            }

            var state = entry.State!;
            if (state.Protocol != CommitProtocol.ThreePhase)
            {
                Log.TerminationDecisionInvalid(_logger, id, leader, message.Outcome);
                return;
            }

            if (!state.Participants.Contains(message.Leader))
            {
                RefuseTermination(id, leader, "not_a_participant", "its leader is not a participant of the transaction");
                return;
            }

            if (state.Phase == TransactionPhase.Preparing && message.Outcome == TransactionOutcome.Committed)
            {
                // The engine ignores it too: no participant can be PreCommitted before this coordinator sent PreCommit.
                RefuseTermination(id, leader, "commit_while_preparing", "a termination round cannot decide commit while the coordinator has sent no PreCommit (it is still collecting votes)");
                return;
            }

            var committed = state.Phase is TransactionPhase.Deciding or TransactionPhase.Committing or TransactionPhase.Committed;
            if ((committed && message.Outcome == TransactionOutcome.Aborted)
                || (state.Phase == TransactionPhase.Aborted && message.Outcome == TransactionOutcome.Committed))
            {
                Log.TerminationContradicts(_logger, id, message.Round, leader, message.Outcome, state.Phase);
            }
            else if (!state.IsTerminal && !committed)
            {
                Log.TerminationAdopted(_logger, id, message.Round, leader, message.Outcome, state.Phase);
            }

            await ApplyAsync(entry, decided, cancellationToken);
        }, cancellationToken);
    }

    /// <summary>Counts a refused message in the process-wide meter and in this coordinator's /metrics.</summary>
    private void CountRefused(string messageType, string reason)
    {
        RefusedMessages.Count(messageType, reason);
        _monitor?.MessageRefused(messageType, reason);
    }

    private void RefuseTermination(TransactionId id, string leader, string reason, string why)
    {
        CountRefused(nameof(TerminationDecided), reason);
        CoordinatorSenderChecks.Refused(_logger, id, nameof(TerminationDecided), leader, why);
    }

    private async Task TerminationDecidedForUnknownAsync(TerminationDecided message, JournalEntry? known, CancellationToken cancellationToken)
    {
        var id = message.TransactionId;
        var leader = message.Leader.Value;
        // A commit or PreCommit row lists every participant (all voted Yes); an abort row may list fewer.
        if (known is { IsCommit: true } or { State: JournalState.PreCommitting } && !known.Participants.Contains(message.Leader))
        {
            RefuseTermination(id, leader, "not_a_participant", "its leader is not a participant of the transaction");
            return;
        }
        var journalSays = known switch
        {
            null => TransactionOutcome.Aborted,
            { IsCommit: true } => TransactionOutcome.Committed,
            _ => TransactionOutcome.Aborted,
        };
        if (journalSays != message.Outcome)
        {
            Log.TerminationContradicts(_logger, id, message.Round, leader, message.Outcome, known is null ? null : JournalPhase(known));
            return;
        }

        if (known is null)
        {
            // No PreCommit was ever forced, so the participants could only abort: keep it so.
            var reason = $"the participants' termination protocol decided abort (round {message.Round}, leader {leader})";
            await _journal.RecordAbortAsync(new AbortRecord(id, Id, CommitProtocol.ThreePhase, [], reason, Now), Now, cancellationToken);
        }

        Log.TerminationAgrees(_logger, id, message.Round, leader, message.Outcome);
    }

    /// <summary>
    /// Brings a 3PC transaction whose PreCommit is durable but which is not in memory (this
    /// coordinator restarted and recovery has not reached it yet) back into memory, PreCommit
    /// re-sent. False, doing nothing, for any other row.
    /// </summary>
    private async Task<bool> TryResumePreCommitAsync(Entry entry, JournalEntry? known, CancellationToken cancellationToken)
    {
        if (entry.State is not null || known is not { State: JournalState.PreCommitting } row || row.CoordinatorId != Id)
        {
            return false;
        }

        var transition = _engine.Recover(row.TransactionId, RecoveredFrom(row), Now);
        LogRecovered(transition.State);
        await RunAsync(entry, transition, cancellationToken);
        return true;
    }

    private static Recovered RecoveredFrom(JournalEntry row) => new(
        row.Protocol,
        row.Participants,
        row.Acknowledged,
        row.CreatedAt,
        row.DecidedAt ?? row.CreatedAt,
        row.State == JournalState.PreCommitting ? TransactionPhase.PreCommitting : TransactionPhase.Committing);

    private void LogRecovered(TransactionState state)
    {
        if (state.Phase == TransactionPhase.PreCommitting)
        {
            Log.RecoveredPreCommit(_logger, state.TransactionId, Join(state.Participants));
        }
        else
        {
            Log.Recovered(_logger, state.TransactionId, Join(state.UnacknowledgedYesVoters));
        }
    }

    private async Task<TransactionEvent> ForcePreCommitAsync(TransactionState state, CancellationToken cancellationToken)
    {
        try
        {
            await _journal.WritePreCommitAsync(Decision(state), Now, cancellationToken);
            Log.PreCommitDurable(_logger, state.TransactionId, state.PreCommitWriteAttempts);
            CrashPoint.Hit(CrashPoints.CoordinatorAfterPreCommitDurable);
            return new PreCommitDurable();
        }
        catch (JournalDecisionRefusedException refused)
        {
            Log.DecisionRefused(_logger, state.TransactionId, refused.Message);
            return new DecisionRefused(refused.Message);
        }
        catch (Exception ex)
        {
            // Including a cancellation: the write's outcome is unknown either way.
            Log.PreCommitWriteFailed(_logger, ex, state.TransactionId, state.PreCommitWriteAttempts);
            return new PreCommitWriteFailed(ex.Message);
        }
    }

    private static TransactionPhase JournalPhase(JournalEntry row) => row.State switch
    {
        JournalState.PreCommitting => TransactionPhase.PreCommitting,
        JournalState.Committing => TransactionPhase.Committing,
        JournalState.Committed => TransactionPhase.Committed,
        _ => TransactionPhase.Aborted,
    };
}
