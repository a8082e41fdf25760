using System.Text;
using Dapper;
using Npgsql;
using TxCoord.Contracts;

namespace TxCoord.Coordinator.Journal;

/// <summary>What to list from the journal. Null members do not filter.</summary>
/// <param name="Before">Keyset cursor: only transactions whose id sorts before this one (the next page).</param>
internal sealed record JournalFilter(
    JournalState? State = null,
    CommitProtocol? Protocol = null,
    ParticipantId? Participant = null,
    CoordinatorId? Coordinator = null,
    TransactionId? Before = null,
    int Limit = JournalQueries.DefaultPageSize);

/// <summary>One page of journal rows, newest first, and how many rows match in all (counted up to a cap).</summary>
/// <param name="Next">The cursor of the next page; null on the last one.</param>
/// <param name="Matching">Rows matching the filter, counted up to <see cref="JournalQueries.CountCap"/>.</param>
/// <param name="MatchingCapped">True when there are more than <see cref="JournalQueries.CountCap"/>.</param>
internal sealed record JournalPage(IReadOnlyList<JournalEntry> Entries, TransactionId? Next, long Matching, bool MatchingCapped);

/// <summary>One line of a transaction's history in <c>txcoord.transaction_events</c>.</summary>
internal sealed record JournalEvent(long Id, DateTimeOffset At, string Kind, string? Detail);

/// <summary>How many journal rows there are per protocol and state.</summary>
internal sealed record JournalCount(CommitProtocol Protocol, JournalState State, long Count);

/// <summary>
/// The read side of the journal, for the dashboard and tools: lists with filters and keyset
/// paging, counts, a transaction's history. Read-only; never takes a lock a writer waits for.
/// It has its own small connection pool (application name <c>txcoord-dashboard</c>) so that
/// however many people look at the dashboard, the coordinator's forced writes never wait for a
/// connection; statements time out after <see cref="CommandTimeoutSeconds"/>.
/// <para>Ordering: newest first by transaction id. TxCoord's ids are UUIDv7, time-ordered, and
/// the primary key serves the order, so no index is added to the write path for the dashboard.</para>
/// </summary>
internal sealed class JournalQueries : IAsyncDisposable
{
    public const int DefaultPageSize = 50;

    public const int MaxPageSize = 500;

    /// <summary>Matching rows are counted up to this many; past it the page says "more than".</summary>
    public const int CountCap = 10_000;

    public const int CommandTimeoutSeconds = 10;

    public const int MaxPoolSize = 4;

    internal const string ListOrderSql = " ORDER BY transaction_id DESC LIMIT @Limit";

    internal const string CountPrefixSql = "SELECT count(*) FROM (SELECT 1 FROM txcoord.transactions";

    internal const string CountSuffixSql = " LIMIT @CountLimit) AS matching";

    internal const string WhereStateSql = "state = @State";

    internal const string WhereProtocolSql = "protocol = @Protocol";

    internal const string WhereParticipantSql = "@Participant = ANY (participants)";

    internal const string WhereCoordinatorSql = "coordinator_id = @Coordinator";

    internal const string WhereBeforeSql = "transaction_id < @Before";

    internal const string CountsSql = """
        SELECT protocol AS Protocol, state AS State, count(*) AS Count
        FROM txcoord.transactions
        GROUP BY protocol, state
        """;

    internal const string EventsSql = """
        SELECT id AS Id, at AS At, kind AS Kind, detail AS Detail
        FROM txcoord.transaction_events
        WHERE transaction_id = @TransactionId
        ORDER BY id
        LIMIT @Limit
        """;

    /// <summary>At most this many history lines are returned for one transaction.</summary>
    public const int MaxEvents = 1000;

    public JournalQueries(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString)
        {
            ApplicationName = "txcoord-dashboard",
            MaxPoolSize = MaxPoolSize,
            CommandTimeout = CommandTimeoutSeconds,
        };
        DataSource = NpgsqlDataSource.Create(builder.ConnectionString);
    }

    /// <summary>The read side's own pool, also used by the audit log (same database).</summary>
    internal NpgsqlDataSource DataSource { get; }

    /// <summary>A page of rows matching <paramref name="filter"/>, newest first.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The page size is not 1..<see cref="MaxPageSize"/>.</exception>
    public async Task<JournalPage> ListAsync(JournalFilter filter, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(filter.Limit, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(filter.Limit, MaxPageSize);

        var parameters = new DynamicParameters();
        var conditions = new List<string>();
        if (filter.State is { } state)
        {
            conditions.Add(WhereStateSql);
            parameters.Add("State", StateText(state));
        }

        if (filter.Protocol is { } protocol)
        {
            conditions.Add(WhereProtocolSql);
            parameters.Add("Protocol", (short)protocol);
        }

        if (filter.Participant is { } participant)
        {
            conditions.Add(WhereParticipantSql);
            parameters.Add("Participant", participant.Value);
        }

        if (filter.Coordinator is { } coordinator)
        {
            conditions.Add(WhereCoordinatorSql);
            parameters.Add("Coordinator", coordinator.Value);
        }

        var where = new StringBuilder();
        for (var i = 0; i < conditions.Count; i++)
        {
            where.Append(i == 0 ? " WHERE " : " AND ").Append(conditions[i]);
        }

        // The count ignores the cursor: it is the size of the whole filtered list.
        var countSql = CountPrefixSql + where + CountSuffixSql;
        if (filter.Before is { } before)
        {
            where.Append(conditions.Count == 0 ? " WHERE " : " AND ").Append(WhereBeforeSql);
            parameters.Add("Before", before.Value);
        }

        parameters.Add("Limit", filter.Limit + 1);
        parameters.Add("CountLimit", CountCap + 1);
        var listSql = PostgresTransactionJournal.SelectColumns + where + ListOrderSql;

        await using var connection = await DataSource.OpenConnectionAsync(cancellationToken);
        var rows = (await connection.QueryAsync<PostgresTransactionJournal.Row>(new CommandDefinition(
            listSql, parameters, cancellationToken: cancellationToken))).AsList();
        var matching = await connection.ExecuteScalarAsync<long>(new CommandDefinition(countSql, parameters, cancellationToken: cancellationToken));

        var hasMore = rows.Count > filter.Limit;
        var entries = rows.Take(filter.Limit).Select(r => r.ToEntry()).ToList();
        return new JournalPage(
            entries,
            hasMore ? entries[^1].TransactionId : null,
            Math.Min(matching, CountCap),
            matching > CountCap);
    }

    /// <summary>Rows per protocol and state, over the whole journal (every coordinator sharing it).</summary>
    public async Task<IReadOnlyList<JournalCount>> CountAsync(CancellationToken cancellationToken)
    {
        await using var connection = await DataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<CountRow>(new CommandDefinition(CountsSql, cancellationToken: cancellationToken));
        return [.. rows.Select(r => new JournalCount((CommitProtocol)r.Protocol, ParseState(r.State), r.Count))];
    }

    /// <summary>A transaction's history, oldest first (at most <see cref="MaxEvents"/> lines); empty when the journal never heard of it.</summary>
    public async Task<IReadOnlyList<JournalEvent>> EventsAsync(TransactionId transactionId, CancellationToken cancellationToken)
    {
        await using var connection = await DataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<EventRow>(new CommandDefinition(
            EventsSql, new { TransactionId = transactionId.Value, Limit = MaxEvents }, cancellationToken: cancellationToken));
        return [.. rows.Select(r => new JournalEvent(r.Id, new DateTimeOffset(DateTime.SpecifyKind(r.At, DateTimeKind.Utc)), r.Kind, r.Detail))];
    }

    /// <summary>The text of a state in the journal's <c>state</c> column.</summary>
    public static string StateText(JournalState state) => state.ToString().ToLowerInvariant();

    /// <summary>Parses a state as written in the <c>state</c> column (or by a user: case-insensitive).</summary>
    public static bool TryParseState(string? text, out JournalState state)
    {
        foreach (var candidate in Enum.GetValues<JournalState>())
        {
            if (string.Equals(StateText(candidate), text, StringComparison.OrdinalIgnoreCase))
            {
                state = candidate;
                return true;
            }
        }

        state = default;
        return false;
    }

    public ValueTask DisposeAsync() => DataSource.DisposeAsync();

    private static JournalState ParseState(string text) =>
        TryParseState(text, out var state) ? state : throw new InvalidOperationException($"Unknown journal state '{text}'.");

    private sealed class CountRow
    {
        public short Protocol { get; init; }
        public string State { get; init; } = "";
        public long Count { get; init; }
    }

    private sealed class EventRow
    {
        public long Id { get; init; }
        public DateTime At { get; init; }
        public string Kind { get; init; } = "";
        public string? Detail { get; init; }
    }
}
