using System.Collections.Immutable;
using TxCoord.Contracts;

namespace TxCoord.Coordinator.Engine;

/// <summary>
/// Two-phase commit, presumed abort. Preparing collects votes; all Yes (ReadOnly counts as a
/// Yes that needs no phase 2) forces the commit decision (Deciding); once it is durable every
/// Yes voter is told to commit, re-driven with back-off until each acknowledged (Committing),
/// never given up. Any No, a vote timeout, the transaction deadline or a rollback while
/// preparing aborts, with no forced write and no acknowledgements awaited.
/// </summary>
internal sealed class TwoPhaseCommitEngine(EngineSettings settings) : ICommitProtocolEngine
{
    public CommitProtocol Protocol => CommitProtocol.TwoPhase;

    public Transition Begin(TransactionId transactionId, CommitRequested request, DateTimeOffset now)
    {
        var state = TransactionEngine.Preparing(transactionId, Protocol, request, settings, now);
        if (state.TransactionDeadline <= now)
        {
            return TransactionEngine.Abort(state, TransactionEngine.DeadlinePassedAtStart, now);
        }

        // Early prepare: the initiator relays the Yes votes its participants gave with their work
        // (their branches are prepared, durably); only the others are asked to prepare.
        var preVoted = request.PreparedOrEmpty.Where(state.Participants.Contains).ToList();
        if (preVoted.Count > 0)
        {
            state = state with { Votes = preVoted.ToImmutableDictionary(p => p, _ => Vote.Yes) };
        }

        if (state.Participants.IsEmpty)
        {
            // No participant: nothing was done anywhere, nothing to force (unchanged; a lost end
            // row makes a later GetOutcome answer Aborted, which no data contradicts).
            return Commit(state with { DecidedAt = now }, now, reply: true);
        }

        if (!state.NotVoted.Any())
        {
            return AllVoted(state, now);
        }

        return new Transition(state, [.. state.NotVoted.Select(p => state.PrepareFor(p))]);
    }

    public Transition Recover(TransactionId transactionId, Recovered recovered, DateTimeOffset now)
    {
        var participants = recovered.Participants.Distinct().ToImmutableArray();
        var state = new TransactionState
        {
            TransactionId = transactionId,
            Protocol = Protocol,
            Phase = TransactionPhase.Committing,
            Participants = participants,
            Votes = participants.ToImmutableDictionary(p => p, _ => Vote.Yes),
            CommitAcknowledged = [.. recovered.Acknowledged.Where(participants.Contains)],
            CreatedAt = recovered.CreatedAt,
            VoteDeadline = recovered.DecidedAt,
            TransactionDeadline = recovered.DecidedAt,
            DecidedAt = recovered.DecidedAt,
            RetryInterval = settings.RedriveInitialInterval,
            RetryAt = now + settings.RedriveInitialInterval,
        };

        if (!state.UnacknowledgedYesVoters.Any())
        {
            return Commit(state, now);
        }

        return new Transition(state, [.. state.UnacknowledgedYesVoters.Select(p => new SendCommit(p))]);
    }

    public Transition Apply(TransactionState state, TransactionEvent @event, DateTimeOffset now) => state.Phase switch
    {
        TransactionPhase.Preparing => ApplyPreparing(state, @event, now),
        TransactionPhase.Deciding => ApplyDeciding(state, @event, now),
        TransactionPhase.Committing => ApplyCommitting(state, @event, now),
        TransactionPhase.Committed => ApplyCommitted(state, @event),
        TransactionPhase.Aborted => ApplyAborted(state, @event),
        TransactionPhase.Aborting => throw new InvalidOperationException($"Transaction {state.TransactionId}: aborting is handled by TransactionEngine."),
        _ => throw new InvalidOperationException($"Transaction {state.TransactionId}: unknown phase {state.Phase}."),
    };

    private Transition ApplyPreparing(TransactionState state, TransactionEvent @event, DateTimeOffset now)
    {
        switch (@event)
        {
            case RollbackRequested rollback:
                return TransactionEngine.Abort(state, TransactionEngine.RollbackReason(rollback.Reason), now);

            case VoteReceived vote when state.Participants.Contains(vote.Participant) && !state.Votes.ContainsKey(vote.Participant):
                if (vote.Vote == Vote.No)
                {
                    var reason = vote.Reason is null
                        ? $"participant {vote.Participant} voted No"
                        : $"participant {vote.Participant} voted No: {vote.Reason}";
                    return TransactionEngine.Abort(state, reason, now);
                }

                var voted = state with { Votes = state.Votes.Add(vote.Participant, vote.Vote) };
                return voted.NotVoted.Any() ? Transition.Unchanged(voted) : AllVoted(voted, now);

            case Tick when now >= state.TransactionDeadline:
                return TransactionEngine.Abort(state, $"transaction deadline passed; no vote from {string.Join(", ", state.NotVoted)}", now);

            case Tick when now >= state.VoteDeadline:
                return TransactionEngine.Abort(state, $"vote timeout; no vote from {string.Join(", ", state.NotVoted)}", now);

            default:
                // Duplicate commit requests (answered once decided), duplicate or stray votes,
                // acknowledgements and journal results that cannot belong to this phase.
                return Transition.Unchanged(state);
        }
    }

    private Transition ApplyDeciding(TransactionState state, TransactionEvent @event, DateTimeOffset now)
    {
        switch (@event)
        {
            case DecisionDurable when !state.YesVoters.Any():
                // All read-only: nobody to re-drive, only the initiator to tell. The decision was
                // forced all the same: the initiator told Committed may ask GetOutcome later, and
                // an unforced row lost in a crash of the journal's server would be presumed aborted.
                return Commit(state, now, reply: true);

            case DecisionDurable:
                var committing = state with
                {
                    Phase = TransactionPhase.Committing,
                    RetryInterval = settings.RedriveInitialInterval,
                    RetryAt = now + settings.RedriveInitialInterval,
                };
                // The decision is durable: the initiator may hear it before the participants do
                // (it waits for nothing else; they are re-driven until they acknowledge).
                var effects = ImmutableArray.CreateBuilder<TransactionEffect>();
                effects.Add(new ReplyToInitiator(TransactionOutcome.Committed, null));
                effects.AddRange(committing.YesVoters.Select(p => new SendCommit(p)));
                return new Transition(committing, effects.ToImmutable());

            case DecisionRefused refused:
                return TransactionEngine.Abort(state, AbortedInJournal(refused), now);

            case DecisionWriteFailed when state.RetryAt is null:
                // The write may have been durable all the same: never abort, retry the same
                // idempotent insert after a back-off.
                return Transition.Unchanged(state with
                {
                    RetryAt = now + state.RetryInterval,
                    RetryInterval = settings.NextInterval(state.RetryInterval),
                });

            case Tick when state.RetryAt is { } retryAt && now >= retryAt:
                return new Transition(
                    state with { RetryAt = null, DecisionWriteAttempts = state.DecisionWriteAttempts + 1 },
                    [new ForceCommitDecision()]);

            default:
                // A rollback now is too late to abort and too early to answer: whoever asked is
                // answered Committed once the decision is durable. Deadlines no longer apply:
                // the decision may already be durable.
                return Transition.Unchanged(state);
        }
    }

    private Transition ApplyCommitting(TransactionState state, TransactionEvent @event, DateTimeOffset now)
    {
        switch (@event)
        {
            case CommitRequested:
                return new Transition(state, [new ReplyToInitiator(TransactionOutcome.Committed, null)]);

            case RollbackRequested:
                return new Transition(state, [new ReplyToInitiator(TransactionOutcome.Committed, TransactionEngine.RollbackTooLate)]);

            case VoteReceived { Vote: Vote.Yes } vote when state.UnacknowledgedYesVoters.Contains(vote.Participant):
                // A prepared participant repeating its vote is waiting for the decision.
                return new Transition(state, [new SendCommit(vote.Participant)]);

            case CommitAcknowledged ack when state.UnacknowledgedYesVoters.Contains(ack.Participant):
                var acknowledged = state with { CommitAcknowledged = state.CommitAcknowledged.Add(ack.Participant) };
                return acknowledged.UnacknowledgedYesVoters.Any()
                    ? new Transition(acknowledged, [new RecordAck(ack.Participant)])
                    : Commit(acknowledged, now);

            case Tick when state.RetryAt is { } retryAt && now >= retryAt:
                var interval = settings.NextInterval(state.RetryInterval);
                var redriven = state with
                {
                    RetryInterval = interval,
                    RetryAt = now + interval,
                    Redrives = state.Redrives + 1,
                };
                return new Transition(redriven, [.. redriven.UnacknowledgedYesVoters.Select(p => new SendCommit(p))]);

            default:
                return Transition.Unchanged(state);
        }
    }

    private static Transition ApplyCommitted(TransactionState state, TransactionEvent @event) => @event switch
    {
        CommitRequested => new Transition(state, [new ReplyToInitiator(TransactionOutcome.Committed, null)]),
        RollbackRequested => new Transition(state, [new ReplyToInitiator(TransactionOutcome.Committed, TransactionEngine.RollbackTooLate)]),
        VoteReceived { Vote: Vote.Yes } vote when state.YesVoters.Contains(vote.Participant) =>
            new Transition(state, [new SendCommit(vote.Participant)]),
        _ => Transition.Unchanged(state),
    };

    private static Transition ApplyAborted(TransactionState state, TransactionEvent @event) => @event switch
    {
        CommitRequested or RollbackRequested => new Transition(state, [new ReplyToInitiator(TransactionOutcome.Aborted, state.Reason)]),
        VoteReceived { Vote: Vote.Yes } vote => new Transition(state, [new SendAbort(vote.Participant, state.Reason ?? "aborted")]),
        _ => Transition.Unchanged(state),
    };

    /// <summary>The reason of an abort whose commit decision the journal refused.</summary>
    internal static string AbortedInJournal(DecisionRefused refused) =>
        $"the journal already held the transaction as aborted when its commit decision was written ({refused.Error})";

    /// <summary>Every participant voted Yes or ReadOnly.</summary>
    private Transition AllVoted(TransactionState state, DateTimeOffset now)
    {
        var deciding = state with
        {
            Phase = TransactionPhase.Deciding,
            DecidedAt = now,
            RetryInterval = settings.RedriveInitialInterval,
            RetryAt = null,
            DecisionWriteAttempts = 1,
        };
        return new Transition(deciding, [new ForceCommitDecision()]);
    }

    private static Transition Commit(TransactionState state, DateTimeOffset now, bool reply = false)
    {
        var committed = state with { Phase = TransactionPhase.Committed, EndedAt = now, RetryAt = null };
        return reply
            ? new Transition(committed, [new ReplyToInitiator(TransactionOutcome.Committed, null), new RecordEnd()])
            : new Transition(committed, [new RecordEnd()]);
    }
}
