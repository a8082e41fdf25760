using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using TxCoord.Contracts;
using TxCoord.Coordinator;
using TxCoord.Coordinator.Journal;
using TxCoord.Coordinator.Runtime;

namespace TxCoord.Tests.Unit.Engine;

/// <summary>An in-memory journal that writes every step to a shared trace and can be told to fail.</summary>
internal sealed class FakeJournal(List<string> trace) : ITransactionJournal
{
    public ConcurrentDictionary<TransactionId, JournalEntry> Rows { get; } = new();

    /// <summary>How many of the next commit-decision writes throw (after, or before, reaching the disk).</summary>
    public int FailNextDecisionWrites { get; set; }

    /// <summary>When true a failing decision write has made it to disk all the same (its outcome was unknown to the caller).</summary>
    public bool FailedWritesAreDurable { get; set; }

    public Task EnsureSchemaAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task WriteCommitDecisionAsync(CommitDecision decision, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var failing = FailNextDecisionWrites > 0;
        if (!failing || FailedWritesAreDurable)
        {
            if (Rows.TryGetValue(decision.TransactionId, out var existing) && existing.State == JournalState.Aborted)
            {
                throw new JournalDecisionRefusedException("aborted row");
            }

            var committing = new JournalEntry(
                decision.TransactionId, decision.CoordinatorId, decision.Protocol, JournalState.Committing,
                decision.Participants, [], null, decision.CreatedAt, decision.DecidedAt, null);
            Rows.AddOrUpdate(decision.TransactionId, committing, (_, row) => row.State == JournalState.PreCommitting ? committing : row);
        }

        if (failing)
        {
            FailNextDecisionWrites--;
            Add("journal:decision-failed");
            throw new TimeoutException("journal write timed out");
        }

        Add("journal:commit-decided");
        return Task.CompletedTask;
    }

    /// <summary>How many of the next PreCommit writes throw (without reaching the disk).</summary>
    public int FailNextPreCommitWrites { get; set; }

    /// <summary>How many of the next abort-row writes fail (a timeout: the row is not written).</summary>
    public int FailNextAbortWrites { get; set; }

    public Task WritePreCommitAsync(CommitDecision decision, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (FailNextPreCommitWrites > 0)
        {
            FailNextPreCommitWrites--;
            Add("journal:precommit-failed");
            throw new TimeoutException("journal write timed out");
        }

        if (Rows.TryGetValue(decision.TransactionId, out var existing) && existing.State == JournalState.Aborted)
        {
            throw new JournalDecisionRefusedException("aborted row");
        }

        Rows.TryAdd(decision.TransactionId, new JournalEntry(
            decision.TransactionId, decision.CoordinatorId, decision.Protocol, JournalState.PreCommitting,
            decision.Participants, [], null, decision.CreatedAt, null, null));
        Add("journal:precommit");
        return Task.CompletedTask;
    }

    /// <summary>Runs once, at the start of the next abort-row write (e.g. a row landing just before it).</summary>
    public Action? BeforeNextAbortWrite { get; set; }

    public Task<bool> RecordAbortAsync(AbortRecord record, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (BeforeNextAbortWrite is { } before)
        {
            BeforeNextAbortWrite = null;
            before();
        }

        if (FailNextAbortWrites > 0)
        {
            FailNextAbortWrites--;
            Add("journal:abort-failed");
            throw new TimeoutException("journal write timed out");
        }

        var aborted = new JournalEntry(
            record.TransactionId, record.CoordinatorId, record.Protocol, JournalState.Aborted,
            record.Participants, [], record.Reason, record.CreatedAt, null, now);
        var wrote = false;
        Rows.AddOrUpdate(
            record.TransactionId,
            _ =>
            {
                wrote = true;
                return aborted;
            },
            (_, row) =>
            {
                wrote = record.AfterPreCommit && row.State == JournalState.PreCommitting;
                return wrote ? aborted : row;
            });
        Add(wrote ? "journal:aborted" : "journal:abort-kept-row");
        return Task.FromResult(wrote);
    }

    public Task RecordEndAsync(CommitDecision decision, DateTimeOffset now, CancellationToken cancellationToken)
    {
        Rows.AddOrUpdate(
            decision.TransactionId,
            _ => new JournalEntry(decision.TransactionId, decision.CoordinatorId, decision.Protocol, JournalState.Committed,
                decision.Participants, decision.Participants, null, decision.CreatedAt, decision.DecidedAt, now),
            (_, row) => row with { State = JournalState.Committed, Acknowledged = decision.Participants, EndedAt = now });
        Add("journal:ended");
        return Task.CompletedTask;
    }

    public Task RecordAckAsync(TransactionId transactionId, ParticipantId participant, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (Rows.TryGetValue(transactionId, out var row) && !row.Acknowledged.Contains(participant))
        {
            Rows[transactionId] = row with { Acknowledged = row.Acknowledged.Add(participant) };
        }

        Add($"journal:ack:{participant}");
        return Task.CompletedTask;
    }

    public Task<JournalEntry?> FindAsync(TransactionId transactionId, CancellationToken cancellationToken) =>
        Task.FromResult(Rows.TryGetValue(transactionId, out var row) ? row : null);

    public async IAsyncEnumerable<JournalEntry> LoadUnfinishedAsync(CoordinatorId coordinatorId, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        foreach (var row in Rows.Values.Where(r => r.State is JournalState.Committing or JournalState.PreCommitting && r.CoordinatorId == coordinatorId).ToList())
        {
            await Task.Yield();
            yield return row;
        }
    }

    public Task PingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private void Add(string line)
    {
        lock (trace)
        {
            trace.Add(line);
        }
    }
}

/// <summary>Records what the coordinator sends, in the shared trace and as messages.</summary>
internal sealed class FakeTransport(List<string> trace) : ICoordinatorTransport
{
    public List<(ParticipantId Participant, object Message)> Sent { get; } = [];

    public List<(ReplyTarget Target, TransactionCompleted Message)> Replies { get; } = [];

    private readonly List<(Func<bool> Condition, TaskCompletionSource Done)> _waiters = [];

    public IEnumerable<T> SentOf<T>()
    {
        lock (trace)
        {
            return [.. Sent.Select(s => s.Message).OfType<T>()];
        }
    }

    /// <summary>Completes once <paramref name="condition"/> holds after a send (for code running in the background).</summary>
    public Task WhenAsync(Func<bool> condition)
    {
        lock (trace)
        {
            if (condition())
            {
                return Task.CompletedTask;
            }

            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((condition, done));
            return done.Task;
        }
    }

    public Task SendToParticipantAsync<T>(ParticipantId participant, T message, CancellationToken cancellationToken)
        where T : class
    {
        lock (trace)
        {
            Sent.Add((participant, message));
            trace.Add($"send:{typeof(T).Name}:{participant}");
            foreach (var waiter in _waiters.Where(w => w.Condition()).ToList())
            {
                _waiters.Remove(waiter);
                waiter.Done.SetResult();
            }
        }

        return Task.CompletedTask;
    }

    public Task ReplyAsync(ReplyTarget target, TransactionCompleted message, CancellationToken cancellationToken)
    {
        lock (trace)
        {
            Replies.Add((target, message));
            trace.Add($"reply:{message.Outcome}");
        }

        return Task.CompletedTask;
    }
}

/// <summary>A runtime over fakes, with fake time.</summary>
internal sealed class RuntimeRig
{
    public static readonly CoordinatorId Coordinator = new("coord-1");

    public RuntimeRig()
    {
        Journal = new FakeJournal(Trace);
        Transport = new FakeTransport(Trace);
        Options = new CoordinatorOptions
        {
            CoordinatorId = Coordinator.Value,
            JournalConnectionString = "Host=127.0.0.1",
            VoteTimeout = TimeSpan.FromSeconds(10),
            DefaultTransactionTimeout = TimeSpan.FromSeconds(60),
            RedriveInitialInterval = TimeSpan.FromSeconds(1),
            RedriveMaxInterval = TimeSpan.FromSeconds(8),
        };
        Runtime = new CoordinatorRuntime(
            Microsoft.Extensions.Options.Options.Create(Options), Journal, Transport, Time, NullLogger<CoordinatorRuntime>.Instance);
    }

    public List<string> Trace { get; } = [];

    public FakeTimeProvider Time { get; } = new(EngineKit.T0);

    public FakeJournal Journal { get; }

    public FakeTransport Transport { get; }

    public CoordinatorOptions Options { get; }

    public CoordinatorRuntime Runtime { get; }

    public static ReplyTarget Initiator(int n = 1) => new(new Uri($"rabbitmq://localhost/initiator-{n}"), Guid.NewGuid());

    public Task CommitAsync(TransactionId id, ReplyTarget? replyTo, params ParticipantId[] participants) =>
        Runtime.CommitAsync(new CommitTransaction { TransactionId = id, Participants = participants }, replyTo, CancellationToken.None);

    public Task VoteAsync(TransactionId id, ParticipantId participant, Vote vote) =>
        Runtime.VoteAsync(new BranchVoted { TransactionId = id, Participant = participant, Vote = vote }, CancellationToken.None);

    public Task AckAsync(TransactionId id, ParticipantId participant) =>
        Runtime.CommitAcknowledgedAsync(new BranchCommitted { TransactionId = id, Participant = participant }, CancellationToken.None);

    public Task<TransactionOutcome> OutcomeAsync(TransactionId id, ParticipantId? asker = null) =>
        Runtime.GetOutcomeAsync(new GetTransactionOutcome { TransactionId = id, Participant = asker }, CancellationToken.None);

    public async Task AdvanceAndTickAsync(TimeSpan by)
    {
        Time.Advance(by);
        await Runtime.TickAsync(CancellationToken.None);
    }

    public void AddCommittingRow(TransactionId id, ImmutableArray<ParticipantId> participants, ImmutableArray<ParticipantId> acknowledged) =>
        Journal.Rows[id] = new JournalEntry(id, Coordinator, CommitProtocol.TwoPhase, JournalState.Committing, participants, acknowledged, null,
            EngineKit.T0.AddMinutes(-1), EngineKit.T0.AddMinutes(-1), null);
}
