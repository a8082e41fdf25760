using Dapper;
using Npgsql;
using TxCoord.Contracts;

namespace TxCoord.Coordinator.Recovery;

/// <summary>One integrity problem of the journal.</summary>
/// <param name="Check">The check that found it (a stable name scripts can match).</param>
internal sealed record JournalProblem(string Check, Guid TransactionId, string Problem);

/// <summary>What <see cref="JournalVerifier"/> found.</summary>
/// <param name="Truncated">More problems than listed were found.</param>
internal sealed record JournalVerification(long Transactions, long Events, IReadOnlyList<JournalProblem> Problems, bool Truncated)
{
    public bool IsConsistent => Problems.Count == 0;
}

/// <summary>
/// Checks the journal's integrity without changing anything. A transaction's row and its history
/// are always written in one SQL transaction, and PostgreSQL's write-ahead log discards a torn
/// tail after a crash, so the two agree after any crash; a disagreement means damage (a bad
/// restore, a manual edit, a bug), and recovery must not presume anything over it. The checks:
/// a commit decision row without its history, a history with a commit decision whose row is
/// missing or says aborted, a history without any row, acknowledgements from participants the
/// row does not name, missing timestamps, an end recorded in one and not the other, and ids that
/// are not valid coordinator or participant names.
/// </summary>
internal static class JournalVerifier
{
    /// <summary>At most this many problems are listed per check.</summary>
    public const int MaxProblemsPerCheck = 1000;

    private const string ValidName = "'^[A-Za-z0-9_.-]{1,40}$'";

    internal static readonly IReadOnlyList<(string Check, string Sql)> Checks =
    [
        ("decision-without-history", """
            SELECT t.transaction_id, 'the row says ' || t.state || ' but its history has no commit decision'
            FROM txcoord.transactions t
            WHERE t.state IN ('committing', 'committed') AND cardinality(t.participants) > 0
              AND NOT EXISTS (SELECT 1 FROM txcoord.transaction_events e WHERE e.transaction_id = t.transaction_id AND e.kind = 'commit-decided')
            """),
        ("decision-without-row", """
            SELECT DISTINCT e.transaction_id, 'its history has a commit decision but the row is missing: recovery will not presume abort'
            FROM txcoord.transaction_events e
            WHERE e.kind = 'commit-decided'
              AND NOT EXISTS (SELECT 1 FROM txcoord.transactions t WHERE t.transaction_id = e.transaction_id)
            """),
        ("aborted-after-decision", """
            SELECT t.transaction_id, 'the row says aborted but its history has a commit decision'
            FROM txcoord.transactions t
            WHERE t.state = 'aborted'
              AND EXISTS (SELECT 1 FROM txcoord.transaction_events e WHERE e.transaction_id = t.transaction_id AND e.kind = 'commit-decided')
            """),
        ("history-without-row", """
            SELECT e.transaction_id, 'history (' || string_agg(DISTINCT e.kind, ', ') || ') without a row'
            FROM txcoord.transaction_events e
            WHERE NOT EXISTS (SELECT 1 FROM txcoord.transactions t WHERE t.transaction_id = e.transaction_id)
            GROUP BY e.transaction_id
            HAVING NOT bool_or(e.kind = 'commit-decided')
            """),
        ("unknown-acknowledgement", """
            SELECT transaction_id, 'acknowledged by ' || array_to_string(acked, ', ') || ' but its participants are ' || array_to_string(participants, ', ')
            FROM txcoord.transactions
            WHERE NOT (acked <@ participants)
            """),
        ("missing-timestamp", """
            SELECT transaction_id,
                   CASE WHEN state = 'committing' THEN 'committing without decided_at' ELSE state || ' without ended_at' END
            FROM txcoord.transactions
            WHERE (state = 'committing' AND decided_at IS NULL) OR (state IN ('committed', 'aborted') AND ended_at IS NULL)
            """),
        ("end-mismatch", """
            SELECT t.transaction_id,
                   CASE WHEN t.state = 'committed' THEN 'the row says committed but its history never recorded the end'
                        ELSE 'its history recorded the end but the row is still committing' END
            FROM txcoord.transactions t
            WHERE (t.state = 'committed' AND NOT EXISTS (SELECT 1 FROM txcoord.transaction_events e WHERE e.transaction_id = t.transaction_id AND e.kind = 'committed'))
               OR (t.state = 'committing' AND EXISTS (SELECT 1 FROM txcoord.transaction_events e WHERE e.transaction_id = t.transaction_id AND e.kind = 'committed'))
            """),
        ("invalid-name", $"""
            SELECT transaction_id, 'invalid coordinator or participant id in the row: ' || coordinator_id || ' / ' || array_to_string(participants, ', ')
            FROM txcoord.transactions
            WHERE coordinator_id !~ {ValidName}
               OR EXISTS (SELECT 1 FROM unnest(participants) p WHERE p !~ {ValidName})
            """),
    ];

    internal const string CountsSql = "SELECT (SELECT count(*) FROM txcoord.transactions), (SELECT count(*) FROM txcoord.transaction_events)";

    /// <summary>Runs every check in one read-only transaction (one consistent snapshot).</summary>
    public static async Task<JournalVerification> VerifyAsync(RecoveryJournal journal, CancellationToken cancellationToken)
    {
        await using var connection = await journal.OpenAsync(cancellationToken);
        try
        {
            await using var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);
            await connection.ExecuteAsync(new CommandDefinition("SET TRANSACTION READ ONLY", transaction: transaction, cancellationToken: cancellationToken));
            var (transactions, events) = await connection.QuerySingleAsync<(long, long)>(new CommandDefinition(CountsSql, transaction: transaction, cancellationToken: cancellationToken));
            var problems = new List<JournalProblem>();
            var truncated = false;
            foreach (var (check, sql) in Checks)
            {
                var rows = (await connection.QueryAsync<(Guid TransactionId, string Problem)>(new CommandDefinition(
                    $"{sql} LIMIT {MaxProblemsPerCheck + 1}", transaction: transaction, cancellationToken: cancellationToken))).AsList();
                truncated |= rows.Count > MaxProblemsPerCheck;
                problems.AddRange(rows.Take(MaxProblemsPerCheck).Select(r => new JournalProblem(check, r.TransactionId, r.Problem)));
            }

            await transaction.RollbackAsync(cancellationToken);
            return new JournalVerification(transactions, events, problems, truncated);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            throw RecoveryException.From(e, "verifying the journal", journal.ConnectionString, RecoveryJournal.Setting);
        }
    }

    /// <summary>The transaction id as the journal shows it, for messages.</summary>
    public static string Show(Guid transactionId) => new TransactionId(transactionId).ToString();
}
