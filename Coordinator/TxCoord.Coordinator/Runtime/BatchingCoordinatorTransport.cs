using System.Collections.Concurrent;
using TxCoord.Contracts;
using TxCoord.Coordinator.Monitoring;

namespace TxCoord.Coordinator.Runtime;

/// <summary>
/// The protocol in fewer messages at load. A <see cref="PrepareBranch"/>, <see cref="CommitBranch"/>
/// or (3PC) <see cref="PreCommitBranch"/> to a participant that got no message of its kind within
/// the last <c>window</c> goes out at once, alone; those that follow it within the window wait for
/// the window's end and leave together as one <see cref="PrepareBranches"/>,
/// <see cref="CommitBranches"/> or <see cref="PreCommitBranches"/> (at most
/// <see cref="MaxBatchSize"/> a message; a full batch leaves at once). At load a participant gets
/// about one message of each kind per window whatever the rate, and answers each with one
/// <see cref="BranchesVoted"/>, <see cref="BranchesCommitted"/> or <see cref="BranchesPreCommitted"/>.
/// A prepare or a PreCommit waits only behind an undecided transaction (see the lane's rule), so a
/// client that runs one transaction after another never waits.
/// </summary>
/// <remarks>
/// A commit waits off the initiator's path (it is answered before phase 2) and a prepared branch
/// keeps its locks at most one window longer. A prepare or PreCommit that waits delays its
/// transaction by at most the window, and only when another one went to the same participant less
/// than a window before and that transaction is still undecided: under a load where the queueing in
/// the services already costs more. (Measured without that rule: a sequential client on the
/// in-memory bus, 5 ms a transaction, waited for the window at every prepare and ran at half speed.)
/// Every other message passes straight through. Each caller's task completes with the send of the
/// message that carried it (failed when that send failed), so the runtime logs and recovers exactly
/// as for a lone message (a lost Prepare ends in a vote timeout, a lost Commit or PreCommit is
/// re-driven). Not used while a fault seam is armed: injected faults and crash points name single
/// messages.
/// </remarks>
internal sealed class BatchingCoordinatorTransport(ICoordinatorTransport inner, TimeSpan window, TimeProvider time, CoordinatorMonitor? monitor = null)
    : ICoordinatorTransport
{
    /// <summary>The most transactions in one batch message.</summary>
    public const int MaxBatchSize = 100;

    private readonly ConcurrentDictionary<ParticipantId, Lane<PrepareBranch, PrepareBranches>> _prepares = new();
    private readonly ConcurrentDictionary<ParticipantId, Lane<PreCommitBranch, PreCommitBranches>> _preCommits = new();
    private readonly ConcurrentDictionary<ParticipantId, Lane<CommitBranch, CommitBranches>> _commits = new();
    private readonly ICoordinatorTransport _inner = inner;
    private readonly TimeSpan _window = window;
    private readonly TimeProvider _time = time;
    private readonly CoordinatorMonitor? _monitor = monitor;

    public Task SendToParticipantAsync<T>(ParticipantId participant, T message, CancellationToken cancellationToken)
        where T : class
    {
        switch (message)
        {
            case PrepareBranch prepare:
                return _prepares.GetOrAdd(participant, p => new Lane<PrepareBranch, PrepareBranches>(this, p, PrepareBatch, waitsOnlyBehindUndecided: true))
                    .SendAsync(prepare, prepare.TransactionId, cancellationToken);
            case PreCommitBranch preCommit:
                return _preCommits.GetOrAdd(participant, p => new Lane<PreCommitBranch, PreCommitBranches>(this, p, PreCommitBatch, waitsOnlyBehindUndecided: true))
                    .SendAsync(preCommit, preCommit.TransactionId, cancellationToken);
            case CommitBranch commit:
                Decided(participant, commit.TransactionId);
                return _commits.GetOrAdd(participant, p => new Lane<CommitBranch, CommitBranches>(this, p, CommitBatch, waitsOnlyBehindUndecided: false))
                    .SendAsync(commit, commit.TransactionId, cancellationToken);
            case AbortBranch abort:
                Decided(participant, abort.TransactionId);
                return _inner.SendToParticipantAsync(participant, message, cancellationToken);
            default:
                return _inner.SendToParticipantAsync(participant, message, cancellationToken);
        }
    }

    /// <summary>Tells the participant's prepare and PreCommit lanes that this transaction is decided there.</summary>
    private void Decided(ParticipantId participant, TransactionId id)
    {
        if (_prepares.TryGetValue(participant, out var prepares))
        {
            prepares.Decided(id);
        }

        if (_preCommits.TryGetValue(participant, out var preCommits))
        {
            preCommits.Decided(id);
        }
    }

    public Task ReplyAsync(ReplyTarget target, TransactionCompleted message, CancellationToken cancellationToken) =>
        _inner.ReplyAsync(target, message, cancellationToken);

    private static PrepareBranches PrepareBatch(ParticipantId participant, List<PrepareBranch> prepares) => new()
    {
        Coordinator = prepares[0].Coordinator,
        Participant = participant,
        Branches = [.. prepares.DistinctBy(p => p.TransactionId)],
    };

    private static PreCommitBranches PreCommitBatch(ParticipantId participant, List<PreCommitBranch> preCommits) => new()
    {
        Coordinator = preCommits[0].Coordinator,
        Participant = participant,
        TransactionIds = [.. preCommits.Select(c => c.TransactionId).Distinct()],
    };

    private static CommitBranches CommitBatch(ParticipantId participant, List<CommitBranch> commits) => new()
    {
        Coordinator = commits[0].Coordinator,
        Participant = participant,
        TransactionIds = [.. commits.Select(c => c.TransactionId).Distinct()],
    };

    /// <summary>The messages of one kind waiting for one participant.</summary>
    /// <param name="waitsOnlyBehindUndecided">
    /// Prepares: a message waits only while the transaction of the previous one to this participant
    /// is undecided, that is while transactions overlap. A client running one transaction after
    /// another (the next prepare comes after the previous commit) never waits, however fast it goes;
    /// commits wait off the initiator's path and need no such rule.
    /// </param>
    private sealed class Lane<TMessage, TBatch>(
        BatchingCoordinatorTransport owner, ParticipantId participant, Func<ParticipantId, List<TMessage>, TBatch> batchOf, bool waitsOnlyBehindUndecided)
        where TMessage : class
        where TBatch : class
    {
        private readonly Lock _gate = new();
        private List<(TMessage Message, TaskCompletionSource Sent)> _waiting = [];
        private long _lastSent = long.MinValue;
        private bool _flushScheduled;
        private TransactionId _lastTransaction;
        private bool _lastDecided = true;

        public void Decided(TransactionId id)
        {
            lock (_gate)
            {
                if (id == _lastTransaction)
                {
                    _lastDecided = true;
                }
            }
        }

        public Task SendAsync(TMessage message, TransactionId id, CancellationToken cancellationToken)
        {
            TaskCompletionSource? sent = null;
            List<(TMessage, TaskCompletionSource)>? full = null;
            lock (_gate)
            {
                var now = owner._time.GetTimestamp();
                var sinceLast = _lastSent == long.MinValue ? TimeSpan.MaxValue : owner._time.GetElapsedTime(_lastSent, now);
                var overlapping = !waitsOnlyBehindUndecided || (!_lastDecided && _lastTransaction != id);
                _lastTransaction = id;
                _lastDecided = false;
                if ((_flushScheduled || sinceLast < owner._window) && overlapping)
                {
                    sent = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    _waiting.Add((message, sent));
                    if (_waiting.Count >= MaxBatchSize)
                    {
                        full = Take(now);
                    }
                    else if (!_flushScheduled)
                    {
                        _flushScheduled = true;
                        _ = FlushLaterAsync(owner._window - sinceLast);
                    }
                }
                else
                {
                    _lastSent = now;
                }
            }

            if (sent is null)
            {
                return owner._inner.SendToParticipantAsync(participant, message, cancellationToken);
            }

            if (full is not null)
            {
                _ = SendBatchAsync(full);
            }

            return sent.Task.WaitAsync(cancellationToken);
        }

        private List<(TMessage, TaskCompletionSource)> Take(long now)
        {
            var batch = _waiting;
            _waiting = [];
            _lastSent = now;
            return batch;
        }

        private async Task FlushLaterAsync(TimeSpan delay)
        {
            if (delay > TimeSpan.Zero)
            {
                await Task.Delay(delay, owner._time);
            }

            List<(TMessage, TaskCompletionSource)> batch;
            lock (_gate)
            {
                _flushScheduled = false;
                batch = Take(owner._time.GetTimestamp());
            }

            await SendBatchAsync(batch);
        }

        private async Task SendBatchAsync(List<(TMessage Message, TaskCompletionSource Sent)> batch)
        {
            if (batch.Count == 0)
            {
                return;
            }

            var alone = batch.Count == 1;
            try
            {
                // Each send with its own static type: MassTransit names a message by it.
                if (alone)
                {
                    await owner._inner.SendToParticipantAsync(participant, batch[0].Message, CancellationToken.None);
                }
                else
                {
                    await owner._inner.SendToParticipantAsync(participant, batchOf(participant, [.. batch.Select(b => b.Message)]), CancellationToken.None);
                    owner._monitor?.MessageSent(typeof(TBatch).Name, succeeded: true);
                }

                foreach (var (_, sent) in batch)
                {
                    sent.TrySetResult();
                }
            }
            catch (Exception e)
            {
                if (!alone)
                {
                    owner._monitor?.MessageSent(typeof(TBatch).Name, succeeded: false);
                }

                foreach (var (_, sent) in batch)
                {
                    sent.TrySetException(e);
                }
            }
        }
    }
}
