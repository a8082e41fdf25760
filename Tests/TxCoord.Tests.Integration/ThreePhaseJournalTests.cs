using System.Collections.Immutable;
using Dapper;
using Npgsql;
using TxCoord.Contracts;
using TxCoord.Coordinator.Journal;
using TxCoord.Tests.Integration.Infrastructure;

namespace TxCoord.Tests.Integration;

/// <summary>The journal's 3PC state against the real PostgreSQL: the additive schema change and the state moves.</summary>
[Parallelizable(ParallelScope.Self)]
public sealed class ThreePhaseJournalTests
{
    private static readonly CoordinatorId Coordinator = new("c-journal3");
    private static readonly ImmutableArray<ParticipantId> Participants = [new("p1"), new("p2"), new("p3")];

    [Test]
    public async Task JournalCreatedBeforeThreePhase_SchemaUpgrade_AcceptsPreCommitting_AndKeepsItsRows()
    {
        var connectionString = await TestServers.CreateDatabaseAsync($"it_{Guid.NewGuid():N}"[..20] + "_old");
        await using (var connection = new NpgsqlConnection(connectionString))
        {
            // The schema as the 2PC-only journal created it.
            await connection.ExecuteAsync("""
                CREATE SCHEMA txcoord;
                CREATE TABLE txcoord.transactions (
                    transaction_id uuid PRIMARY KEY, coordinator_id text NOT NULL, protocol smallint NOT NULL,
                    state text NOT NULL CHECK (state IN ('committing', 'committed', 'aborted')),
                    participants text[] NOT NULL, acked text[] NOT NULL DEFAULT '{}', reason text,
                    created_at timestamptz, decided_at timestamptz, ended_at timestamptz);
                INSERT INTO txcoord.transactions (transaction_id, coordinator_id, protocol, state, participants)
                VALUES (gen_random_uuid(), 'c-old', 0, 'committed', '{p1}');
                """);
        }

        await using var journal = new PostgresTransactionJournal(connectionString);
        await journal.EnsureSchemaAsync(CancellationToken.None);
        await journal.EnsureSchemaAsync(CancellationToken.None); // idempotent
        var id = TransactionId.New();
        await journal.WritePreCommitAsync(Decision(id), DateTimeOffset.UtcNow, CancellationToken.None);

        await using (var connection = new NpgsqlConnection(connectionString))
        {
            Assert.Multiple(async () =>
            {
                Assert.That(await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM txcoord.transactions WHERE state = 'committed'"), Is.EqualTo(1));
                Assert.That((await journal.FindAsync(id, CancellationToken.None))?.State, Is.EqualTo(JournalState.PreCommitting));
                Assert.That(
                    async () => await connection.ExecuteAsync("UPDATE txcoord.transactions SET state = 'bogus'"),
                    Throws.InstanceOf<PostgresException>().With.Property(nameof(PostgresException.SqlState)).EqualTo("23514"),
                    "the widened CHECK still refuses unknown states");
            });
        }
    }

    [Test]
    public async Task PreCommit_ThenCommitDecision_MovesTheRowToCommitting_AndRecoveryLoadsBoth()
    {
        await using var journal = await NewJournalAsync();
        var preCommitted = TransactionId.New();
        var committing = TransactionId.New();
        var now = DateTimeOffset.UtcNow;

        await journal.WritePreCommitAsync(Decision(preCommitted), now, CancellationToken.None);
        await journal.WritePreCommitAsync(Decision(preCommitted), now, CancellationToken.None); // a retry is a no-op
        await journal.WritePreCommitAsync(Decision(committing), now, CancellationToken.None);
        await journal.WriteCommitDecisionAsync(Decision(committing), now, CancellationToken.None);
        await journal.WriteCommitDecisionAsync(Decision(committing), now, CancellationToken.None);

        var unfinished = new List<JournalEntry>();
        await foreach (var row in journal.LoadUnfinishedAsync(Coordinator, CancellationToken.None))
        {
            unfinished.Add(row);
        }

        Assert.Multiple(() =>
        {
            Assert.That(unfinished.Single(r => r.TransactionId == preCommitted).State, Is.EqualTo(JournalState.PreCommitting));
            Assert.That(unfinished.Single(r => r.TransactionId == committing).State, Is.EqualTo(JournalState.Committing));
            Assert.That(unfinished.All(r => r.Protocol == CommitProtocol.ThreePhase && r.Participants.SequenceEqual(Participants)), Is.True);
        });
    }

    [Test]
    public async Task AbortAfterPreCommit_ReplacesThePreCommitRow_ButNeverACommitDecision()
    {
        await using var journal = await NewJournalAsync();
        var preCommitted = TransactionId.New();
        var committed = TransactionId.New();
        var now = DateTimeOffset.UtcNow;
        await journal.WritePreCommitAsync(Decision(preCommitted), now, CancellationToken.None);
        await journal.WritePreCommitAsync(Decision(committed), now, CancellationToken.None);
        await journal.WriteCommitDecisionAsync(Decision(committed), now, CancellationToken.None);

        await journal.RecordAbortAsync(Abort(preCommitted, afterPreCommit: false), now, CancellationToken.None);
        var plainAbortLeftIt = (await journal.FindAsync(preCommitted, CancellationToken.None))!.State;
        await journal.RecordAbortAsync(Abort(preCommitted, afterPreCommit: true), now, CancellationToken.None);
        await journal.RecordAbortAsync(Abort(committed, afterPreCommit: true), now, CancellationToken.None);

        Assert.Multiple(async () =>
        {
            Assert.That(plainAbortLeftIt, Is.EqualTo(JournalState.PreCommitting), "an ordinary abort record is insert-if-absent");
            Assert.That((await journal.FindAsync(preCommitted, CancellationToken.None))!.State, Is.EqualTo(JournalState.Aborted));
            Assert.That((await journal.FindAsync(committed, CancellationToken.None))!.State, Is.EqualTo(JournalState.Committing));
            Assert.That(
                async () => await journal.WritePreCommitAsync(Decision(preCommitted), now, CancellationToken.None),
                Throws.TypeOf<JournalDecisionRefusedException>().With.Message.Contains("refusing to record PreCommit"));
        });
    }

    private static async Task<PostgresTransactionJournal> NewJournalAsync()
    {
        var journal = new PostgresTransactionJournal(await TestServers.CreateDatabaseAsync($"it_{Guid.NewGuid():N}"[..20] + "_j3"));
        await journal.EnsureSchemaAsync(CancellationToken.None);
        return journal;
    }

    private static CommitDecision Decision(TransactionId id) =>
        new(id, Coordinator, CommitProtocol.ThreePhase, Participants, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow);

    private static AbortRecord Abort(TransactionId id, bool afterPreCommit) =>
        new(id, Coordinator, CommitProtocol.ThreePhase, Participants, "the participants' termination decided abort", DateTimeOffset.UtcNow, afterPreCommit);
}
