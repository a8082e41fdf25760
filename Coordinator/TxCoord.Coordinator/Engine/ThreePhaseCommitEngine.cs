using System.Collections.Immutable;
using TxCoord.Contracts;

namespace TxCoord.Coordinator.Engine;

/// <summary>
/// Three-phase commit (Skeen), with the quorum rules of E3PC (Keidar and Dolev) so that it stays
/// consistent when the participants terminate a transaction without the coordinator.
/// <list type="number">
/// <item>Preparing (CanCommit): as in 2PC, every participant prepares and votes. A No, a vote
/// timeout, the transaction deadline or a rollback aborts, with nothing forced: no participant can
/// be PreCommitted yet, so the participants' termination would abort too. A ReadOnly vote aborts:
/// in 3PC every participant must keep its state until the end, because its peers may ask for it.</item>
/// <item>ForcingPreCommit: all voted Yes; the PreCommit record is forced to the journal (retried,
/// never abandoned). Without it no PreCommit leaves the coordinator, which is why a coordinator that
/// finds no record may presume abort.</item>
/// <item>PreCommitting: PreCommitBranch to every participant, re-driven with back-off; once a
/// majority of all participants acknowledged (recorded PreCommitted), the commit decision is forced
/// and phase 3 (DoCommit = CommitBranch) runs exactly as 2PC's phase 2. The coordinator never
/// aborts on its own here: it commits, or adopts what the participants' termination decided.</item>
/// </list>
/// The participants' termination protocol may decide while the coordinator is away or slow; its
/// decision reaches the coordinator as <see cref="TerminationDecisionReceived"/> (or as a branch's
/// commit or abort acknowledgement while PreCommitting) and is adopted in every non-terminal phase:
/// Committed forces the commit decision and drives every participant to commit, Aborted aborts.
/// Both rules are safe because a participant that joined a termination round refuses the
/// coordinator's PreCommit from then on (see the SDK's termination), so the coordinator's majority
/// and any termination round's majority always share a participant that saw the other's step.
/// </summary>
internal sealed class ThreePhaseCommitEngine(EngineSettings settings) : ICommitProtocolEngine
{
    /// <summary>Why a ReadOnly vote aborts a 3PC transaction.</summary>
    public const string ReadOnlyRefused =
        "voted ReadOnly, which 3PC does not allow: every participant keeps its branch until the end so its peers can terminate without the coordinator";

    private readonly TwoPhaseCommitEngine _phase3 = new(settings);

    public CommitProtocol Protocol => CommitProtocol.ThreePhase;

    public Transition Begin(TransactionId transactionId, CommitRequested request, DateTimeOffset now)
    {
        var state = TransactionEngine.Preparing(transactionId, Protocol, request, settings, now);
        if (state.TransactionDeadline <= now)
        {
            return TransactionEngine.Abort(state, TransactionEngine.DeadlinePassedAtStart, now);
        }

        if (state.Participants.IsEmpty)
        {
            var committed = state with { Phase = TransactionPhase.Committed, DecidedAt = now, EndedAt = now };
            return new Transition(committed, [new ReplyToInitiator(TransactionOutcome.Committed, null), new RecordEnd()]);
        }

        return new Transition(state, [.. state.Participants.Select(p => state.PrepareFor(p))]);
    }

    public Transition Recover(TransactionId transactionId, Recovered recovered, DateTimeOffset now)
    {
        if (recovered.Phase != TransactionPhase.PreCommitting)
        {
            // A durable commit decision: phase 3 is 2PC's phase 2.
            var committing = _phase3.Recover(transactionId, recovered, now);
            return committing with { State = committing.State with { Protocol = Protocol } };
        }

        var participants = recovered.Participants.Distinct().ToImmutableArray();
        var state = new TransactionState
        {
            TransactionId = transactionId,
            Protocol = Protocol,
            Phase = TransactionPhase.PreCommitting,
            Participants = participants,
            Votes = participants.ToImmutableDictionary(p => p, _ => Vote.Yes),
            CreatedAt = recovered.CreatedAt,
            VoteDeadline = recovered.DecidedAt,
            TransactionDeadline = recovered.DecidedAt,
            PreCommitWriteAttempts = 1,
            RetryInterval = settings.RedriveInitialInterval,
            RetryAt = now + settings.RedriveInitialInterval,
        };

        // Acknowledgements are not journalled: ask everyone again. A participant that terminated
        // meanwhile answers with its outcome, which is adopted.
        return new Transition(state, [.. participants.Select(p => new SendPreCommit(p))]);
    }

    public Transition Apply(TransactionState state, TransactionEvent @event, DateTimeOffset now) => state.Phase switch
    {
        TransactionPhase.Preparing => ApplyPreparing(state, @event, now),
        TransactionPhase.ForcingPreCommit => ApplyForcingPreCommit(state, @event, now),
        TransactionPhase.PreCommitting => ApplyPreCommitting(state, @event, now),
        TransactionPhase.Deciding or TransactionPhase.Committing or TransactionPhase.Committed => ApplyCommitDecided(state, @event, now),
        TransactionPhase.Aborted => ApplyAborted(state, @event, now),
        TransactionPhase.Aborting => throw new InvalidOperationException($"Transaction {state.TransactionId}: aborting is handled by TransactionEngine."),
        _ => throw new InvalidOperationException($"Transaction {state.TransactionId}: unknown phase {state.Phase}."),
    };

    private Transition ApplyPreparing(TransactionState state, TransactionEvent @event, DateTimeOffset now)
    {
        switch (@event)
        {
            case VoteReceived { Vote: Vote.ReadOnly } vote when state.Participants.Contains(vote.Participant) && !state.Votes.ContainsKey(vote.Participant):
                return TransactionEngine.Abort(state, $"participant {vote.Participant} {ReadOnlyRefused}", now);

            case VoteReceived { Vote: Vote.Yes } vote when state.Participants.Contains(vote.Participant) && !state.Votes.ContainsKey(vote.Participant):
                var voted = state with { Votes = state.Votes.Add(vote.Participant, vote.Vote) };
                if (voted.NotVoted.Any())
                {
                    return Transition.Unchanged(voted);
                }

                var forcing = voted with
                {
                    Phase = TransactionPhase.ForcingPreCommit,
                    RetryInterval = settings.RedriveInitialInterval,
                    RetryAt = null,
                    PreCommitWriteAttempts = 1,
                };
                return new Transition(forcing, [new ForcePreCommit()]);

            case TerminationDecisionReceived { Outcome: TransactionOutcome.Committed }:
                // Impossible from real participants: a round decides commit only when one of them is
                // PreCommitted, and none is before this coordinator sent PreCommit. A forgery: ignored.
                return Transition.Unchanged(state);

            case TerminationDecisionReceived decided:
                return Adopt(state, decided, now);

            default:
                // No votes, rollbacks, deadlines: exactly 2PC's prepare phase.
                return _phase3.Apply(state, @event, now);
        }
    }

    private Transition ApplyForcingPreCommit(TransactionState state, TransactionEvent @event, DateTimeOffset now)
    {
        switch (@event)
        {
            case PreCommitDurable:
                var preCommitting = state with
                {
                    Phase = TransactionPhase.PreCommitting,
                    RetryInterval = settings.RedriveInitialInterval,
                    RetryAt = now + settings.RedriveInitialInterval,
                };
                return new Transition(preCommitting, [.. preCommitting.YesVoters.Select(p => new SendPreCommit(p))]);

            case DecisionRefused refused:
                return TransactionEngine.Abort(state, TwoPhaseCommitEngine.AbortedInJournal(refused), now);

            case PreCommitWriteFailed when state.RetryAt is null:
                // It may be durable all the same: retry the same idempotent insert, never abort.
                return Transition.Unchanged(state with
                {
                    RetryAt = now + state.RetryInterval,
                    RetryInterval = settings.NextInterval(state.RetryInterval),
                });

            case Tick when state.RetryAt is { } retryAt && now >= retryAt:
                return new Transition(
                    state with { RetryAt = null, PreCommitWriteAttempts = state.PreCommitWriteAttempts + 1 },
                    [new ForcePreCommit()]);

            case TerminationDecisionReceived decided:
                return Adopt(state, decided, now);

            default:
                // Rollbacks and deadlines come too late: the PreCommit may be durable. Whoever asked is
                // answered with the outcome.
                return Transition.Unchanged(state);
        }
    }

    private Transition ApplyPreCommitting(TransactionState state, TransactionEvent @event, DateTimeOffset now)
    {
        switch (@event)
        {
            case PreCommitAcknowledged ack when state.UnacknowledgedPreCommit.Contains(ack.Participant):
                var acknowledged = state with { PreCommitAcknowledged = state.PreCommitAcknowledged.Add(ack.Participant) };
                return acknowledged.PreCommitAcknowledged.Count >= acknowledged.PreCommitQuorum
                    ? DecideCommit(acknowledged, now, terminationRound: null)
                    : Transition.Unchanged(acknowledged);

            case VoteReceived { Vote: Vote.Yes } vote when state.UnacknowledgedPreCommit.Contains(vote.Participant):
                // A prepared participant repeating its vote is waiting: it missed the PreCommit.
                return new Transition(state, [new SendPreCommit(vote.Participant)]);

            case Tick when state.RetryAt is { } retryAt && now >= retryAt:
                var interval = settings.NextInterval(state.RetryInterval);
                var redriven = state with
                {
                    RetryInterval = interval,
                    RetryAt = now + interval,
                    Redrives = state.Redrives + 1,
                };
                return new Transition(redriven, [.. redriven.UnacknowledgedPreCommit.Select(p => new SendPreCommit(p))]);

            case CommitAcknowledged ack when state.Participants.Contains(ack.Participant):
                // No CommitBranch has left this coordinator: the participants' termination decided commit.
                return DecideCommit(state, now, state.TerminationRound);

            case AbortAcknowledged ack when state.Participants.Contains(ack.Participant):
                // A Yes voter's branch rolled back: only the participants' termination aborts it now.
                return TransactionEngine.Abort(
                    state, $"the participants' termination aborted the transaction (reported by {ack.Participant})", now, afterPreCommit: true);

            case TerminationDecisionReceived decided:
                return Adopt(state, decided, now);

            default:
                // Duplicate acks, rollbacks (too late), commit requests (answered with the outcome).
                return Transition.Unchanged(state);
        }
    }

    private Transition ApplyCommitDecided(TransactionState state, TransactionEvent @event, DateTimeOffset now) => @event switch
    {
        // A matching decision changes nothing; a contradicting one is the driver's to report.
        TerminationDecisionReceived => Transition.Unchanged(state),

        // Late acknowledgements of PreCommit: the commit is re-driven until acknowledged anyway.
        PreCommitAcknowledged => Transition.Unchanged(state),
        _ => _phase3.Apply(state, @event, now),
    };

    private Transition ApplyAborted(TransactionState state, TransactionEvent @event, DateTimeOffset now) => @event switch
    {
        PreCommitAcknowledged ack when state.Participants.Contains(ack.Participant) =>
            new Transition(state, [new SendAbort(ack.Participant, state.Reason ?? "aborted")]),
        TerminationDecisionReceived => Transition.Unchanged(state),
        _ => _phase3.Apply(state, @event, now),
    };

    /// <summary>Adopts the decision of the participants' termination protocol.</summary>
    private Transition Adopt(TransactionState state, TerminationDecisionReceived decided, DateTimeOffset now)
    {
        var adopted = state with { TerminationRound = decided.Round };
        return decided.Outcome switch
        {
            TransactionOutcome.Committed => DecideCommit(adopted, now, decided.Round),
            TransactionOutcome.Aborted => TransactionEngine.Abort(
                adopted,
                $"the participants' termination protocol decided abort (round {decided.Round}, leader {decided.Leader})",
                now,
                afterPreCommit: state.Phase is TransactionPhase.ForcingPreCommit or TransactionPhase.PreCommitting),
            _ => Transition.Unchanged(state),
        };
    }

    /// <summary>
    /// Forces the commit decision; once durable, 2PC's phase 2 commits every participant. When the
    /// decision comes from the participants, every participant voted Yes (a PreCommit existed).
    /// </summary>
    private Transition DecideCommit(TransactionState state, DateTimeOffset now, int? terminationRound)
    {
        var deciding = state with
        {
            Phase = TransactionPhase.Deciding,
            Votes = state.Participants.ToImmutableDictionary(p => p, _ => Vote.Yes),
            DecidedAt = now,
            RetryInterval = settings.RedriveInitialInterval,
            RetryAt = null,
            DecisionWriteAttempts = 1,
            TerminationRound = terminationRound,
        };
        return new Transition(deciding, [new ForceCommitDecision()]);
    }
}
