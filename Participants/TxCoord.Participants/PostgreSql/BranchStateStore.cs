using Dapper;
using Npgsql;
using TxCoord.Contracts;

namespace TxCoord.Participants.PostgreSql;

/// <summary>
/// What a prepared branch must remember outside its prepared transaction (whose own rows stay
/// invisible until it commits): the transaction's protocol and participants, so it can reach its
/// peers without the coordinator, and, in 3PC, its PreCommitted/PreAborted state and termination
/// rounds. Meaningful only while the branch is in <c>pg_prepared_xacts</c>; once it committed or
/// aborted, <see cref="BranchStore"/> answers for it.
/// </summary>
internal sealed record BranchRecord(
    BranchGid Gid,
    CommitProtocol Protocol,
    IReadOnlyList<ParticipantId> Participants,
    BranchState State,
    int LastElected,
    int? LastAttempt);

/// <summary>
/// The table <c>txcoord.branch_states</c>, one row per prepared branch.
/// <list type="bullet">
/// <item><c>state</c>: 'prepared', 'precommitted' or 'preaborted' (3PC).</item>
/// <item><c>last_elected</c>: the highest termination round the branch joined; 0 while it follows
/// the coordinator, whose PreCommit counts as round 0. A branch that joined a round refuses the
/// coordinator's PreCommit and the proposals of lower rounds.</item>
/// <item><c>last_attempt</c>: the round in which it took PreCommitted or PreAborted (0: the coordinator's PreCommit).</item>
/// </list>
/// Failure semantics: <see cref="RecordPreparingAsync"/> is written unforced just before
/// <c>PREPARE TRANSACTION</c>, whose own forced commit flushes the WAL up to and including it, so a
/// prepared branch always has its row; a failure there stops the prepare (the branch votes No).
/// Every other write is one forced statement that changes the row only under its guard (the round
/// rules): a failure leaves the row as it was, and its caller answers nothing, so the peer that
/// asked treats it as unreachable.
/// </summary>
internal sealed class BranchStateStore(NpgsqlDataSource dataSource)
{
    private const string CreateSchemaSql = """
        SELECT pg_advisory_xact_lock(7411003);
        -- Only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
        -- schema exists, and a least-privilege role owns only its schema (docs/least-privilege.md).
        DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'txcoord') THEN CREATE SCHEMA txcoord; END IF; END $$;
        CREATE TABLE IF NOT EXISTS txcoord.branch_states (
            gid            text PRIMARY KEY,
            transaction_id uuid NOT NULL,
            protocol       smallint NOT NULL,
            participants   text[] NOT NULL,
            state          text NOT NULL CHECK (state IN ('prepared', 'precommitted', 'preaborted')),
            last_elected   integer NOT NULL DEFAULT 0,
            last_attempt   integer,
            updated_at     timestamptz NOT NULL DEFAULT now()
        );
        """;

    // One round trip: BEGIN, the setting, the insert and COMMIT go out as one batch.
    private const string InsertPreparingSql = """
        BEGIN;
        SET LOCAL synchronous_commit TO off;
        INSERT INTO txcoord.branch_states (gid, transaction_id, protocol, participants, state)
        VALUES (@Gid, @TransactionId, @Protocol, @Participants, 'prepared')
        ON CONFLICT (gid) DO NOTHING;
        COMMIT;
        """;

    private const string Columns = "protocol AS Protocol, participants AS Participants, state AS State, last_elected AS LastElected, last_attempt AS LastAttempt";

    private const string FindSql = "SELECT " + Columns + " FROM txcoord.branch_states WHERE gid = @Gid";

    /// <summary>The coordinator's PreCommit is round 0: taken only by a branch that joined no termination round.</summary>
    private const string PreCommitSql = """
        UPDATE txcoord.branch_states SET state = 'precommitted', last_attempt = 0, updated_at = now()
        WHERE gid = @Gid AND last_elected = 0 AND state IN ('prepared', 'precommitted')
        RETURNING
        """ + " " + Columns;

    private const string JoinRoundSql = """
        UPDATE txcoord.branch_states SET last_elected = @Round, updated_at = now()
        WHERE gid = @Gid AND last_elected <= @Round
        RETURNING
        """ + " " + Columns;

    private const string AcceptProposalSql = """
        UPDATE txcoord.branch_states SET state = @State, last_attempt = @Round, last_elected = @Round, updated_at = now()
        WHERE gid = @Gid AND last_elected <= @Round
        RETURNING
        """ + " " + Columns;

    /// <summary>Rows of branches that finished (an outcome row exists, so the branch is no longer prepared) a while ago.</summary>
    private const string DeleteFinishedSql = """
        DELETE FROM txcoord.branch_states
        WHERE gid IN (
            SELECT s.gid FROM txcoord.branch_states s JOIN txcoord.branch_outcomes o ON o.gid = s.gid
            WHERE s.updated_at < now() - make_interval(secs => @MinimumAgeSeconds)
            LIMIT @Limit)
        """;

    private const string ForcedSql = "SET LOCAL synchronous_commit TO on";

    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(CreateSchemaSql, transaction: transaction, cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>
    /// Writes the branch's row before it prepares (unforced: the PREPARE that follows flushes it),
    /// in its own transaction, committed before this returns: a row written inside the branch would
    /// stay invisible while the branch is prepared, which is when termination needs it. An existing
    /// row is kept. One round trip; on a failure the rest of the batch is skipped and the
    /// connection's return to the pool rolls the transaction back.
    /// </summary>
    public async Task RecordPreparingAsync(BranchGid gid, CommitProtocol protocol, IReadOnlyList<ParticipantId> participants, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(
            InsertPreparingSql,
            new { Gid = gid.Value, TransactionId = gid.Transaction.Value, Protocol = (short)protocol, Participants = participants.Select(p => p.Value).ToArray() },
            cancellationToken: cancellationToken));
    }

    /// <summary>The branch's row, or null when it has none (a 2PC branch with no peers, or a branch that never prepared).</summary>
    public async Task<BranchRecord?> FindAsync(BranchGid gid, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleOrDefaultAsync<Row>(new CommandDefinition(FindSql, new { Gid = gid.Value }, cancellationToken: cancellationToken));
        return row?.ToRecord(gid);
    }

    /// <summary>
    /// 3PC: records PreCommitted for the coordinator's PreCommit (round 0), forced. Null when the
    /// branch refuses it: it joined a termination round, or has no row.
    /// </summary>
    public Task<BranchRecord?> TryPreCommitAsync(BranchGid gid, CancellationToken cancellationToken) =>
        ForcedUpdateAsync(gid, PreCommitSql, new { Gid = gid.Value }, cancellationToken);

    /// <summary>
    /// 3PC: joins termination round <paramref name="round"/>, forced. Null when the branch joined a higher round (or has no row).
    /// A peer joins when the round's leader asks it; the leader joins its own round this way before it asks anyone.
    /// </summary>
    public Task<BranchRecord?> JoinRoundAsync(BranchGid gid, int round, CancellationToken cancellationToken) =>
        ForcedUpdateAsync(gid, JoinRoundSql, new { Gid = gid.Value, Round = round }, cancellationToken);

    /// <summary>
    /// 3PC: takes PreCommitted (<paramref name="commit"/>) or PreAborted in round <paramref name="round"/>,
    /// forced. Null when the branch joined a higher round (or has no row).
    /// </summary>
    public Task<BranchRecord?> AcceptProposalAsync(BranchGid gid, int round, bool commit, CancellationToken cancellationToken) =>
        ForcedUpdateAsync(gid, AcceptProposalSql, new { Gid = gid.Value, Round = round, State = commit ? "precommitted" : "preaborted" }, cancellationToken);

    /// <summary>Deletes up to <paramref name="limit"/> rows of branches that finished more than <paramref name="minimumAge"/> ago.</summary>
    public async Task<int> DeleteFinishedAsync(TimeSpan minimumAge, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteAsync(new CommandDefinition(
            DeleteFinishedSql, new { MinimumAgeSeconds = minimumAge.TotalSeconds, Limit = limit }, cancellationToken: cancellationToken));
    }

    private async Task<BranchRecord?> ForcedUpdateAsync(BranchGid gid, string sql, object parameters, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(ForcedSql, null, transaction, cancellationToken: cancellationToken));
        var row = await connection.QuerySingleOrDefaultAsync<Row>(new CommandDefinition(sql, parameters, transaction, cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);
        return row?.ToRecord(gid);
    }

    private sealed class Row
    {
        public short Protocol { get; init; }
        public string[] Participants { get; init; } = [];
        public string State { get; init; } = "";
        public int LastElected { get; init; }
        public int? LastAttempt { get; init; }

        public BranchRecord ToRecord(BranchGid gid) => new(
            gid,
            (CommitProtocol)Protocol,
            [.. Participants.Select(p => new ParticipantId(p))],
            State switch
            {
                "precommitted" => BranchState.PreCommitted,
                "preaborted" => BranchState.PreAborted,
                _ => BranchState.Prepared,
            },
            LastElected,
            LastAttempt);
    }
}
