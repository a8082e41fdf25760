using Microsoft.Extensions.Time.Testing;
using TxCoord.Contracts;
using TxCoord.Coordinator.Monitoring;
using TxCoord.Coordinator.Runtime;

namespace TxCoord.Tests.Unit.Engine;

public sealed class BatchingCoordinatorTransportTests
{
    private static readonly TimeSpan Window = TimeSpan.FromMilliseconds(10);
    private static readonly CoordinatorId Coordinator = new("coord-1");
    private static readonly ParticipantId A = new("bank-a");
    private static readonly ParticipantId B = new("bank-b");

    private FakeTimeProvider _time = null!;
    private RecordingTransport _inner = null!;
    private BatchingCoordinatorTransport _transport = null!;
    private CoordinatorMonitor _monitor = null!;

    [SetUp]
    public void SetUp()
    {
        _time = new FakeTimeProvider();
        _inner = new RecordingTransport();
        _monitor = new CoordinatorMonitor(_time);
        _transport = new BatchingCoordinatorTransport(_inner, Window, _time, _monitor);
    }

    [Test]
    public async Task LoneCommit_LeavesAtOnceAsACommitBranch()
    {
        var id = TransactionId.New();
        await _transport.SendToParticipantAsync(A, Commit(id, A), CancellationToken.None);

        Assert.That(_inner.Sent, Has.Count.EqualTo(1));
        Assert.That(_inner.Sent[0].Message, Is.EqualTo(Commit(id, A)));
    }

    [Test]
    public async Task CommitsWithinTheWindow_WaitForItsEnd_AndLeaveAsOneCommitBranches()
    {
        var first = TransactionId.New();
        var second = TransactionId.New();
        var third = TransactionId.New();
        await _transport.SendToParticipantAsync(A, Commit(first, A), CancellationToken.None);

        _time.Advance(TimeSpan.FromMilliseconds(3));
        var secondSent = _transport.SendToParticipantAsync(A, Commit(second, A), CancellationToken.None);
        var thirdSent = _transport.SendToParticipantAsync(A, Commit(third, A), CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(secondSent.IsCompleted, Is.False, "waits for the window's end");
            Assert.That(_inner.Sent, Has.Count.EqualTo(1));
        });

        _time.Advance(TimeSpan.FromMilliseconds(7));
        await Task.WhenAll(secondSent, thirdSent).WaitAsync(TimeSpan.FromSeconds(5));

        Assert.That(_inner.Sent, Has.Count.EqualTo(2));
        var batch = (CommitBranches)_inner.Sent[1].Message;
        Assert.Multiple(() =>
        {
            Assert.That(_monitor.Read().Messages.Single().MessageType, Is.EqualTo(nameof(CommitBranches)), "the dashboard counts batch messages");
            Assert.That(_inner.Sent[1].Participant, Is.EqualTo(A));
            Assert.That(batch.Participant, Is.EqualTo(A));
            Assert.That(batch.Coordinator, Is.EqualTo(Coordinator));
            Assert.That(batch.TransactionIds, Is.EqualTo(new[] { second, third }));
        });
    }

    [Test]
    public async Task OneCommitWaiting_LeavesAsAPlainCommitBranch_AndAfterAQuietWindowTheNextLeavesAtOnce()
    {
        await _transport.SendToParticipantAsync(A, Commit(TransactionId.New(), A), CancellationToken.None);
        var late = TransactionId.New();
        var lateSent = _transport.SendToParticipantAsync(A, Commit(late, A), CancellationToken.None);
        _time.Advance(Window);
        await lateSent.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.That(_inner.Sent[1].Message, Is.EqualTo(Commit(late, A)));

        _time.Advance(Window);
        var quiet = TransactionId.New();
        var quietSent = _transport.SendToParticipantAsync(A, Commit(quiet, A), CancellationToken.None);
        Assert.That(quietSent.IsCompleted, Is.True, "a window passed since the last commit message");
        Assert.That(_inner.Sent[2].Message, Is.EqualTo(Commit(quiet, A)));
    }

    [Test]
    public async Task Participants_AreBatchedApart()
    {
        await _transport.SendToParticipantAsync(A, Commit(TransactionId.New(), A), CancellationToken.None);
        var toB = _transport.SendToParticipantAsync(B, Commit(TransactionId.New(), B), CancellationToken.None);
        Assert.That(toB.IsCompleted, Is.True, "B had no commit in the window: it does not wait for A's");
        Assert.That(_inner.Sent.Select(s => s.Participant), Is.EqualTo(new[] { A, B }));
    }

    [Test]
    public async Task FullBatch_LeavesAtOnce()
    {
        await _transport.SendToParticipantAsync(A, Commit(TransactionId.New(), A), CancellationToken.None);
        var waiting = Enumerable.Range(0, BatchingCoordinatorTransport.MaxBatchSize)
            .Select(_ => _transport.SendToParticipantAsync(A, Commit(TransactionId.New(), A), CancellationToken.None))
            .ToArray();

        await Task.WhenAll(waiting).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.That(((CommitBranches)_inner.Sent[1].Message).TransactionIds, Has.Count.EqualTo(BatchingCoordinatorTransport.MaxBatchSize));
    }

    [Test]
    public async Task FailedBatchSend_FailsEveryCommitItCarried()
    {
        await _transport.SendToParticipantAsync(A, Commit(TransactionId.New(), A), CancellationToken.None);
        _inner.Failure = new InvalidOperationException("broker gone");
        var one = _transport.SendToParticipantAsync(A, Commit(TransactionId.New(), A), CancellationToken.None);
        var two = _transport.SendToParticipantAsync(A, Commit(TransactionId.New(), A), CancellationToken.None);
        _time.Advance(Window);

        Assert.Multiple(() =>
        {
            Assert.That(async () => await one.WaitAsync(TimeSpan.FromSeconds(5)), Throws.InvalidOperationException);
            Assert.That(async () => await two.WaitAsync(TimeSpan.FromSeconds(5)), Throws.InvalidOperationException);
        });
    }

    [Test]
    public async Task PreparesWithinTheWindow_LeaveAsOnePrepareBranches_ApartFromCommits()
    {
        var first = Prepare(TransactionId.New(), A);
        var second = Prepare(TransactionId.New(), A) with { Protocol = CommitProtocol.ThreePhase, Participants = [A, B] };
        var third = Prepare(TransactionId.New(), A);
        await _transport.SendToParticipantAsync(A, first, CancellationToken.None);
        await _transport.SendToParticipantAsync(A, Commit(TransactionId.New(), A), CancellationToken.None);
        var waiting = new[]
        {
            _transport.SendToParticipantAsync(A, second, CancellationToken.None),
            _transport.SendToParticipantAsync(A, third, CancellationToken.None),
        };
        Assert.That(_inner.Sent.Select(s => s.Message.GetType()), Is.EqualTo(new[] { typeof(PrepareBranch), typeof(CommitBranch) }),
            "the first prepare and the first commit each leave at once");

        _time.Advance(Window);
        await Task.WhenAll(waiting).WaitAsync(TimeSpan.FromSeconds(5));
        var batch = (PrepareBranches)_inner.Sent[2].Message;
        Assert.Multiple(() =>
        {
            Assert.That(batch.Participant, Is.EqualTo(A));
            Assert.That(batch.Coordinator, Is.EqualTo(Coordinator));
            Assert.That(batch.Branches, Is.EqualTo(new[] { second, third }), "each prepare whole, protocol and peers included");
        });
    }

    [Test]
    public async Task Prepare_AfterThePreviousTransactionWasDecidedThere_LeavesAtOnceWithinTheWindow()
    {
        // A client running one transaction after another, each faster than the window.
        var first = TransactionId.New();
        await _transport.SendToParticipantAsync(A, Prepare(first, A), CancellationToken.None);
        await _transport.SendToParticipantAsync(A, Commit(first, A), CancellationToken.None);
        _time.Advance(TimeSpan.FromMilliseconds(2));
        var second = TransactionId.New();
        var afterCommit = _transport.SendToParticipantAsync(A, Prepare(second, A), CancellationToken.None);
        await _transport.SendToParticipantAsync(A, new AbortBranch { TransactionId = second, Coordinator = Coordinator, Participant = A }, CancellationToken.None);
        var afterAbort = _transport.SendToParticipantAsync(A, Prepare(TransactionId.New(), A), CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(afterCommit.IsCompleted, Is.True, "its predecessor was committed: no overlap, no wait");
            Assert.That(afterAbort.IsCompleted, Is.True, "its predecessor was aborted: no overlap, no wait");
            Assert.That(_inner.Sent.Count(s => s.Message is PrepareBranch), Is.EqualTo(3));
        });
    }

    [Test]
    public async Task PreCommitsWithinTheWindowBehindAnUndecidedOne_LeaveAsOnePreCommitBranches()
    {
        var (first, second, third) = (TransactionId.New(), TransactionId.New(), TransactionId.New());
        await _transport.SendToParticipantAsync(A, PreCommit(first), CancellationToken.None);
        var waiting = new[]
        {
            _transport.SendToParticipantAsync(A, PreCommit(second), CancellationToken.None),
            _transport.SendToParticipantAsync(A, PreCommit(third), CancellationToken.None),
        };
        _time.Advance(Window);
        await Task.WhenAll(waiting).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.That(((PreCommitBranches)_inner.Sent[1].Message).TransactionIds, Is.EqualTo(new[] { second, third }));

        await _transport.SendToParticipantAsync(A, Commit(third, A), CancellationToken.None);
        var afterDecided = _transport.SendToParticipantAsync(A, PreCommit(TransactionId.New()), CancellationToken.None);
        Assert.That(afterDecided.IsCompleted, Is.True, "the last PreCommit's transaction was decided: no overlap, no wait");
    }

    private static PreCommitBranch PreCommit(TransactionId id) => new() { TransactionId = id, Coordinator = Coordinator, Participant = A };

    [Test]
    public async Task OtherMessages_PassStraightThrough()
    {
        await _transport.SendToParticipantAsync(A, Commit(TransactionId.New(), A), CancellationToken.None);
        var abort = new AbortBranch { TransactionId = TransactionId.New(), Coordinator = Coordinator, Participant = A };
        await _transport.SendToParticipantAsync(A, abort, CancellationToken.None);
        Assert.That(_inner.Sent[1].Message, Is.SameAs(abort));
    }

    private static PrepareBranch Prepare(TransactionId id, ParticipantId participant) =>
        new() { TransactionId = id, Coordinator = Coordinator, Participant = participant };

    private static CommitBranch Commit(TransactionId id, ParticipantId participant) =>
        new() { TransactionId = id, Coordinator = Coordinator, Participant = participant };

    private sealed class RecordingTransport : ICoordinatorTransport
    {
        public List<(ParticipantId Participant, object Message)> Sent { get; } = [];

        public Exception? Failure { get; set; }

        public Task SendToParticipantAsync<T>(ParticipantId participant, T message, CancellationToken cancellationToken)
            where T : class
        {
            if (Failure is { } failure)
            {
                return Task.FromException(failure);
            }

            // MassTransit names a message by its static type: a batch sent as object cannot go out.
            Assert.That(typeof(T), Is.EqualTo(message.GetType()), "sent with its own static type");

            lock (Sent)
            {
                Sent.Add((participant, message));
            }

            return Task.CompletedTask;
        }

        public Task ReplyAsync(ReplyTarget target, TransactionCompleted message, CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
