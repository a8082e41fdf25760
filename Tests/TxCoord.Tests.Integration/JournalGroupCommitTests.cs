using System.Collections.Immutable;
using Dapper;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Coordinator.Journal;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>
/// The journal's group commit against a real PostgreSQL: concurrent writes share SQL transactions,
/// yet each caller gets the outcome of its own write, as it would without batching.
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class JournalGroupCommitTests
{
    private static readonly CoordinatorId Coordinator = new("c-group");
    private static readonly ImmutableArray<ParticipantId> Participants = [new("p1"), new("p2")];

    private string _connectionString = "";
    private PostgresTransactionJournal _journal = null!;

    [SetUp]
    public async Task StartAsync()
    {
        _connectionString = await TestServers.CreateDatabaseAsync($"it_{Guid.NewGuid().ToString("N")[..10]}_group");
        _journal = new PostgresTransactionJournal(_connectionString);
        await _journal.EnsureSchemaAsync(CancellationToken.None);
    }

    [TearDown]
    public async Task StopAsync() => await _journal.DisposeAsync();

    [Test]
    public async Task ConcurrentCommitDecisions_AreAllCommitting_InFewerSqlTransactionsThanWrites()
    {
        var ids = Enumerable.Range(0, 200).Select(_ => TransactionId.New()).ToArray();
        var batchesBefore = _journal.Writes.Batches;

        await Task.WhenAll(ids.Select(id => _journal.WriteCommitDecisionAsync(Decision(id), DateTimeOffset.UtcNow, CancellationToken.None)));

        Assert.That(await CountAsync(ids, "committing"), Is.EqualTo(ids.Length));
        Assert.That(_journal.Writes.Batches - batchesBefore, Is.LessThan(ids.Length), "concurrent decisions share SQL transactions");
    }

    [Test]
    public async Task CommitDecisionForAnAbortedTransaction_IsRefused_WhileTheDecisionsBatchedWithItCommit()
    {
        var aborted = TransactionId.New();
        await _journal.RecordAbortAsync(new AbortRecord(aborted, Coordinator, CommitProtocol.TwoPhase, Participants, "test", DateTimeOffset.UtcNow), DateTimeOffset.UtcNow, CancellationToken.None);
        var others = Enumerable.Range(0, 30).Select(_ => TransactionId.New()).ToArray();

        var refused = _journal.WriteCommitDecisionAsync(Decision(aborted), DateTimeOffset.UtcNow, CancellationToken.None);
        var accepted = others.Select(id => _journal.WriteCommitDecisionAsync(Decision(id), DateTimeOffset.UtcNow, CancellationToken.None)).ToArray();

        Assert.ThrowsAsync<JournalDecisionRefusedException>(async () => await refused);
        await Task.WhenAll(accepted);
        Assert.That(await CountAsync(others, "committing"), Is.EqualTo(others.Length));
        Assert.That((await _journal.FindAsync(aborted, CancellationToken.None))?.State, Is.EqualTo(JournalState.Aborted));
    }

    [Test]
    public async Task AWriteThatFailsInSql_FailsAlone_AndTheWritesBatchedWithItCommit()
    {
        var ids = Enumerable.Range(0, 30).Select(_ => TransactionId.New()).ToArray();

        // PostgreSQL rejects NUL in text: this statement fails, whatever batch it is in.
        var failing = _journal.RecordAckAsync(TransactionId.New(), new ParticipantId("bad\0name"), DateTimeOffset.UtcNow, CancellationToken.None);
        var decisions = ids.Select(id => _journal.WriteCommitDecisionAsync(Decision(id), DateTimeOffset.UtcNow, CancellationToken.None)).ToArray();

        Assert.That(async () => await failing, Throws.InstanceOf<NpgsqlException>().Or.InstanceOf<ArgumentException>());
        await Task.WhenAll(decisions);
        Assert.That(await CountAsync(ids, "committing"), Is.EqualTo(ids.Length));
    }

    [Test]
    public async Task RepeatedDecisionAckAndEnd_AreIdempotent_AndEachIsVisibleOnceItReturns()
    {
        var id = TransactionId.New();
        var decision = Decision(id);

        await _journal.WriteCommitDecisionAsync(decision, DateTimeOffset.UtcNow, CancellationToken.None);
        await _journal.WriteCommitDecisionAsync(decision, DateTimeOffset.UtcNow, CancellationToken.None);
        await Task.WhenAll(
            _journal.RecordAckAsync(id, Participants[0], DateTimeOffset.UtcNow, CancellationToken.None),
            _journal.RecordAckAsync(id, Participants[0], DateTimeOffset.UtcNow, CancellationToken.None));
        var acked = await _journal.FindAsync(id, CancellationToken.None);
        await _journal.RecordEndAsync(decision, DateTimeOffset.UtcNow, CancellationToken.None);
        var ended = await _journal.FindAsync(id, CancellationToken.None);

        Assert.That(acked?.State, Is.EqualTo(JournalState.Committing));
        Assert.That(acked?.Acknowledged, Is.EqualTo(new[] { Participants[0] }));
        Assert.That(ended?.State, Is.EqualTo(JournalState.Committed));
    }

    [Test]
    public async Task CancelledDecisionWrite_LeavesItsOutcomeUnknown_AndARetryOfTheSameDecisionCommits()
    {
        var id = TransactionId.New();
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        Assert.That(async () => await _journal.WriteCommitDecisionAsync(Decision(id), DateTimeOffset.UtcNow, cancelled.Token), Throws.InstanceOf<OperationCanceledException>());
        await _journal.WriteCommitDecisionAsync(Decision(id), DateTimeOffset.UtcNow, CancellationToken.None);

        Assert.That(await CountAsync([id], "committing"), Is.EqualTo(1));
    }

    private static CommitDecision Decision(TransactionId id) =>
        new(id, Coordinator, CommitProtocol.TwoPhase, Participants, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow);

    private async Task<long> CountAsync(IEnumerable<TransactionId> ids, string state)
    {
        await using var connection = new NpgsqlConnection(_connectionString);
        return await connection.ExecuteScalarAsync<long>(
            "SELECT count(*) FROM txcoord.transactions WHERE transaction_id = ANY(@Ids) AND state = @State",
            new { Ids = ids.Select(i => i.Value).ToArray(), State = state });
    }
}
