using System.Collections.Concurrent;
using TxCoord.Contracts;

namespace TxCoord.Coordinator.Runtime;

/// <summary>
/// Phase 2 in fewer messages. A <see cref="CommitBranch"/> to a participant that got no commit
/// message within the last <c>window</c> goes out at once, alone; the ones that follow it within
/// the window wait for the window's end and leave together as one <see cref="CommitBranches"/>
/// (at most <see cref="MaxBatchSize"/> a message; a full batch leaves at once). So nothing waits
/// at low load, and at load a participant gets about one commit message per window whatever the
/// rate, and answers each with one <see cref="BranchesCommitted"/>.
/// </summary>
/// <remarks>
/// Only phase 2 waits: the initiator is answered before any CommitBranch is sent, and a prepared
/// branch keeps its locks at most one window longer. Every other message passes straight through.
/// Each caller's task completes with the send of the message that carried its commit (failed
/// when that send failed), so the runtime logs and re-drives exactly as for a lone CommitBranch.
/// Not used while a fault seam is armed: injected faults and crash points name single messages.
/// </remarks>
internal sealed class CommitBatchingTransport(ICoordinatorTransport inner, TimeSpan window, TimeProvider time) : ICoordinatorTransport
{
    /// <summary>The most transactions in one <see cref="CommitBranches"/>.</summary>
    public const int MaxBatchSize = 100;

    private readonly ConcurrentDictionary<ParticipantId, Lane> _lanes = new();
    private readonly ICoordinatorTransport _inner = inner;
    private readonly TimeSpan _window = window;
    private readonly TimeProvider _time = time;

    public Task SendToParticipantAsync<T>(ParticipantId participant, T message, CancellationToken cancellationToken)
        where T : class =>
        message is CommitBranch commit
            ? _lanes.GetOrAdd(participant, p => new Lane(this, p)).SendAsync(commit, cancellationToken)
            : _inner.SendToParticipantAsync(participant, message, cancellationToken);

    public Task ReplyAsync(ReplyTarget target, TransactionCompleted message, CancellationToken cancellationToken) =>
        _inner.ReplyAsync(target, message, cancellationToken);

    /// <summary>The commits waiting for one participant.</summary>
    private sealed class Lane(CommitBatchingTransport owner, ParticipantId participant)
    {
        private readonly Lock _gate = new();
        private List<(CommitBranch Commit, TaskCompletionSource Sent)> _waiting = [];
        private long _lastSent = long.MinValue;
        private bool _flushScheduled;

        public Task SendAsync(CommitBranch commit, CancellationToken cancellationToken)
        {
            TaskCompletionSource? sent = null;
            List<(CommitBranch, TaskCompletionSource)>? full = null;
            lock (_gate)
            {
                var now = owner._time.GetTimestamp();
                var sinceLast = _lastSent == long.MinValue ? TimeSpan.MaxValue : owner._time.GetElapsedTime(_lastSent, now);
                if (_flushScheduled || sinceLast < owner._window)
                {
                    sent = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    _waiting.Add((commit, sent));
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
                return owner._inner.SendToParticipantAsync(participant, commit, cancellationToken);
            }

            if (full is not null)
            {
                _ = SendBatchAsync(full);
            }

            return sent.Task.WaitAsync(cancellationToken);
        }

        private List<(CommitBranch, TaskCompletionSource)> Take(long now)
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

            List<(CommitBranch, TaskCompletionSource)> batch;
            lock (_gate)
            {
                _flushScheduled = false;
                batch = Take(owner._time.GetTimestamp());
            }

            await SendBatchAsync(batch);
        }

        private async Task SendBatchAsync(List<(CommitBranch Commit, TaskCompletionSource Sent)> batch)
        {
            if (batch.Count == 0)
            {
                return;
            }

            try
            {
                if (batch.Count == 1)
                {
                    await owner._inner.SendToParticipantAsync(participant, batch[0].Commit, CancellationToken.None);
                }
                else
                {
                    await owner._inner.SendToParticipantAsync(participant, new CommitBranches
                    {
                        Coordinator = batch[0].Commit.Coordinator,
                        Participant = participant,
                        TransactionIds = [.. batch.Select(b => b.Commit.TransactionId).Distinct()],
                    }, CancellationToken.None);
                }

                foreach (var (_, sent) in batch)
                {
                    sent.TrySetResult();
                }
            }
            catch (Exception e)
            {
                foreach (var (_, sent) in batch)
                {
                    sent.TrySetException(e);
                }
            }
        }
    }
}
