using MassTransit;
using TxCoord.Contracts;

namespace TxCoord.Participants.Initiator;

/// <summary>
/// One transaction on the initiator's side. Not thread-safe for concurrent commit and rollback,
/// but work may be sent to several participants at once.
/// </summary>
internal sealed class GlobalTransaction(
    TransactionInitiator initiator,
    TransactionId id,
    CommitProtocol protocol,
    DateTimeOffset deadline,
    TimeSpan timeout,
    IReadOnlyList<ParticipantId>? declaredParticipants = null)
    : IGlobalTransaction
{
    private readonly Lock _gate = new();
    private readonly List<ParticipantId> _participants = [];

    /// <summary>Early prepare: the participants whose answer said their branch is prepared (their Yes votes).</summary>
    private readonly List<ParticipantId> _prepared = [];

    /// <summary>Early prepare: the proof each of <see cref="_prepared"/> gave with its vote (null: none), relayed with it.</summary>
    private readonly List<string?> _preparedProofs = [];

    /// <summary>How many works were sent to each participant: the last one's <see cref="TxCoordHeaders.WorkSequence"/>.</summary>
    private readonly Dictionary<ParticipantId, int> _workCounts = [];
    private bool _earlyPrepareAsked;
    private string? _failure;
    private CommitResult? _result;
    private bool _commitRequested;

    public TransactionId Id => id;

    public CommitProtocol Protocol => protocol;

    public IReadOnlyList<ParticipantId> Participants
    {
        get
        {
            lock (_gate)
            {
                return [.. _participants];
            }
        }
    }

    public Task<WorkResult> SendAsync<TMessage>(string participant, TMessage message, CancellationToken cancellationToken = default)
        where TMessage : class =>
        SendAsync(participant, message, prepare: false, cancellationToken);

    public async Task<WorkResult> SendAsync<TMessage>(string participant, TMessage message, bool prepare, CancellationToken cancellationToken = default)
        where TMessage : class
    {
        ArgumentNullException.ThrowIfNull(message);
        BranchGid.EnsureValidName(participant, "participant name");
        var participantId = new ParticipantId(participant);
        if (prepare && protocol != CommitProtocol.TwoPhase)
        {
            throw new InvalidOperationException($"Transaction {id}: early prepare (SendAsync with prepare: true) is for 2PC only; this transaction runs {protocol}.");
        }

        if (prepare && declaredParticipants is null)
        {
            throw new InvalidOperationException(
                $"Transaction {id}: early prepare needs every participant declared at Begin (TransactionOptions.Participants): a prepared branch must know its peers.");
        }

        int sequence;
        lock (_gate)
        {
            if (_result is not null || _commitRequested)
            {
                throw new InvalidOperationException($"Transaction {id} is already {(_result?.Outcome.ToString() ?? "committing")}: no more work can be sent.");
            }

            if (declaredParticipants is not null && !declaredParticipants.Contains(participantId))
            {
                throw new InvalidOperationException(
                    $"Transaction {id}: participant {participant} is not among the participants declared at Begin ({string.Join(", ", declaredParticipants)}).");
            }

            if (_prepared.Contains(participantId))
            {
                throw new InvalidOperationException($"Transaction {id}: participant {participant} prepared its branch early: it takes no more work.");
            }

            var caps = initiator.Options;
            if (!_participants.Contains(participantId) && _participants.Count >= caps.MaxParticipantsPerTransaction)
            {
                throw new InvalidOperationException(
                    $"Transaction {id}: participant {participant} would be participant {_participants.Count + 1}, more than this initiator's cap of {caps.MaxParticipantsPerTransaction} (option MaxParticipantsPerTransaction; the coordinator would abort the commit).");
            }

            if (_workCounts.GetValueOrDefault(participantId) >= caps.MaxWorksPerParticipant)
            {
                throw new InvalidOperationException(
                    $"Transaction {id}: participant {participant} already has {caps.MaxWorksPerParticipant} works in this transaction, this initiator's cap (option MaxWorksPerParticipant).");
            }

            // Set before the message leaves: a branch may be prepared with the declared peers even
            // if its answer never arrives, so the commit must then name exactly those peers.
            _earlyPrepareAsked |= prepare;

            // Enlist before sending: a participant that never answers may still have done the work.
            if (!_participants.Contains(participantId))
            {
                _participants.Add(participantId);
            }

            sequence = _workCounts[participantId] = _workCounts.GetValueOrDefault(participantId) + 1;
        }

        WorkResult result;
        string? proof = null;
        try
        {
            var response = await initiator.RequestWork<TMessage>(participantId).GetResponse<WorkCompleted>(
                message,
                x => x.UseExecute(context =>
                {
                    context.Headers.Set(TxCoordHeaders.TransactionId, id.Value.ToString());
                    context.Headers.Set(TxCoordHeaders.CoordinatorId, initiator.Coordinator.Value);
                    context.Headers.Set(TxCoordHeaders.BranchTimeoutMs, (long)timeout.TotalMilliseconds);
                    context.Headers.Set(TxCoordHeaders.WorkSequence, sequence);
                    if (prepare)
                    {
                        context.Headers.Set(TxCoordHeaders.Prepare, true);
                        context.Headers.Set(TxCoordHeaders.Protocol, protocol.ToString());
                        context.Headers.Set(TxCoordHeaders.Participants, string.Join(',', declaredParticipants!.Select(p => p.Value)));
                    }
                }),
                cancellationToken);
            result = new WorkResult(response.Message.Succeeded, response.Message.Reason)
            {
                // A participant that does not know early prepare answers without Prepared: it is asked to prepare as usual.
                Prepared = prepare && response.Message.Succeeded && response.Message.Prepared,
            };
            proof = response.Message.PreparedProof;
        }
        catch (RequestTimeoutException)
        {
            result = WorkResult.Refuse($"participant {participant} did not answer within {initiator.Options.WorkTimeout}");
        }

        if (!result.Succeeded)
        {
            Log.InitiatorWorkFailed(initiator.Logger, id, participant, result.Reason ?? "");
            lock (_gate)
            {
                _failure ??= $"work at {participant} failed: {result.Reason}";
            }
        }
        else if (result.Prepared)
        {
            lock (_gate)
            {
                _prepared.Add(participantId);
                _preparedProofs.Add(proof);
            }
        }

        return result;
    }

    public async Task<CommitResult> CommitAsync(CancellationToken cancellationToken = default)
    {
        if (_result is not null)
        {
            return _result;
        }

        string? failure;
        lock (_gate)
        {
            failure = _failure;
        }

        if (failure is not null)
        {
            // A refused branch has rolled back already: the transaction cannot commit.
            return await RollbackAsync(failure, cancellationToken);
        }

        var participants = Participants;
        IReadOnlyList<ParticipantId> prepared;
        IReadOnlyList<string?> proofs;
        bool earlyPrepareAsked;
        Dictionary<ParticipantId, int> workCounts;
        lock (_gate)
        {
            prepared = [.. _prepared];
            proofs = [.. _preparedProofs];
            earlyPrepareAsked = _earlyPrepareAsked;
            workCounts = new Dictionary<ParticipantId, int>(_workCounts);
        }

        if (earlyPrepareAsked)
        {
            // The early-prepared branches recorded the declared participants as their peers: the
            // coordinator must run the transaction over exactly those, each with its branch.
            var idle = declaredParticipants!.Where(p => !participants.Contains(p)).ToList();
            if (idle.Count > 0)
            {
                return await RollbackAsync(
                    $"early prepare: participants declared at Begin were sent no work: {string.Join(", ", idle)}", cancellationToken);
            }

            participants = declaredParticipants!;
        }

        if (participants.Count == 0)
        {
            return Complete(new CommitResult(id, CommitOutcome.Committed, "no participant did any work"));
        }

        _commitRequested = true;
        var timeout = initiator.Options.CommitTimeout;
        try
        {
            var response = await initiator.Request<CommitTransaction>(timeout).GetResponse<TransactionCompleted>(
                new CommitTransaction
                {
                    TransactionId = id, Participants = participants, Protocol = protocol, Deadline = deadline, Prepared = prepared,
                    PreparedProofs = proofs.Any(p => p is not null) ? proofs : [],
                    WorkCounts = [.. participants.Select(p => workCounts.GetValueOrDefault(p))],
                },
                cancellationToken);
            return Complete(ToResult(response.Message));
        }
        catch (RequestTimeoutException)
        {
            Log.InitiatorInDoubt(initiator.Logger, id, initiator.Coordinator.Value, timeout);
            return new CommitResult(id, CommitOutcome.InDoubt, $"coordinator {initiator.Coordinator} did not answer within {timeout}");
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            // The coordinator faulted (its journal down, say) or the send failed (the broker
            // unreachable): the request may have left and a commit may be decided, so this is not
            // Aborted. A cancellation by the caller is not caught: it throws, and the transaction
            // may still commit (GetOutcomeAsync(tx.Id) tells).
            var reason = TransactionInitiator.DescribeFault(initiator.Coordinator, e);
            Log.InitiatorFaultInDoubt(initiator.Logger, e, id, reason);
            return new CommitResult(id, CommitOutcome.InDoubt, reason);
        }
    }

    public async Task<CommitResult> RollbackAsync(string? reason = null, CancellationToken cancellationToken = default)
    {
        if (_result is not null)
        {
            return _result;
        }

        reason ??= "rolled back by the initiator";
        var participants = Participants;
        if (participants.Count == 0)
        {
            return Complete(new CommitResult(id, CommitOutcome.Aborted, reason));
        }

        var timeout = initiator.Options.CommitTimeout;
        try
        {
            var response = await initiator.Request<RollbackTransaction>(timeout).GetResponse<TransactionCompleted>(
                new RollbackTransaction { TransactionId = id, Participants = participants, Reason = reason, Protocol = protocol }, cancellationToken);
            return Complete(ToResult(response.Message));
        }
        catch (RequestTimeoutException) when (!_commitRequested)
        {
            // Commit was never asked for, so the coordinator cannot have decided commit: the
            // branches roll back on their own timeout at the latest.
            return Complete(new CommitResult(id, CommitOutcome.Aborted, $"{reason} (coordinator unreachable; branches roll back after their timeout)"));
        }
        catch (RequestTimeoutException)
        {
            return new CommitResult(id, CommitOutcome.InDoubt, $"coordinator {initiator.Coordinator} did not answer within {timeout}");
        }
        catch (Exception e) when (!_commitRequested && (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested))
        {
            // As for the timeout above: never asked to commit, the coordinator cannot decide commit.
            var fault = TransactionInitiator.DescribeFault(initiator.Coordinator, e);
            Log.InitiatorFaultInDoubt(initiator.Logger, e, id, fault);
            return Complete(new CommitResult(id, CommitOutcome.Aborted, $"{reason} ({fault}; branches roll back after their timeout)"));
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            var fault = TransactionInitiator.DescribeFault(initiator.Coordinator, e);
            Log.InitiatorFaultInDoubt(initiator.Logger, e, id, fault);
            return new CommitResult(id, CommitOutcome.InDoubt, fault);
        }
    }

    /// <summary>
    /// Disposing a transaction that was neither committed nor rolled back sends the rollback
    /// without waiting for the answer: disposal never blocks on an unreachable coordinator, and
    /// the branches roll back on their own timeout at the latest.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (_result is not null || _commitRequested)
        {
            return;
        }

        var participants = Participants;
        _result = new CommitResult(id, CommitOutcome.Aborted, "disposed without commit");
        if (participants.Count > 0)
        {
            await initiator.SendToCoordinatorAsync(new RollbackTransaction { TransactionId = id, Participants = participants, Reason = "disposed without commit", Protocol = protocol });
        }
    }

    private CommitResult ToResult(TransactionCompleted message) => message.Outcome switch
    {
        TransactionOutcome.Committed => new CommitResult(id, CommitOutcome.Committed),
        TransactionOutcome.Aborted => new CommitResult(id, CommitOutcome.Aborted, message.Reason),
        _ => new CommitResult(id, CommitOutcome.InDoubt, message.Reason ?? "not decided yet"),
    };

    private CommitResult Complete(CommitResult result)
    {
        if (result.Outcome != CommitOutcome.InDoubt)
        {
            _result = result;
        }

        Log.InitiatorCompleted(initiator.Logger, id, result.Outcome, result.Reason ?? "");
        return result;
    }
}
