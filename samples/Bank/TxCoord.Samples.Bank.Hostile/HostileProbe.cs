using System.Globalization;
using Dapper;
using MassTransit;
using Npgsql;
using TxCoord.Contracts;

namespace TxCoord.Samples.Bank.Hostile;

/// <summary>What one attack did: the outcome the coordinator told, and what the money did.</summary>
internal sealed record AttackResult(string Name, string Told, long BalanceChange, bool DebitCommitted)
{
    /// <summary>
    /// A transfer of which only the debit side exists (the credit side is a participant that never
    /// answers) must leave the money where it was, whatever the coordinator decided: a committed
    /// debit is money gone, and a "committed" answer is a commit nobody voted for.
    /// </summary>
    public bool BrokeAtomicity => BalanceChange != 0 || DebitCommitted || Told == nameof(TransactionOutcome.Committed);
}

/// <summary>
/// Replays the forged protocol messages of issue 16's "what was seen" against a running bank demo,
/// from a bus of any broker user (guest in the demo): each attack debits an account at bank A in a
/// transaction whose other participant is a ghost that never answers, so the coordinator waits for
/// a vote while bank A's branch is prepared, then forges the message that would finish it. Nothing
/// the probe sends comes from a party allowed to send it; with sender authentication on, every
/// attack must change nothing.
/// </summary>
internal sealed class HostileProbe(IBus bus, ProbeSettings settings, TextWriter output)
{
    /// <summary>What each attack debits from its account at bank A.</summary>
    public const long Amount = 500;

    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    private CoordinatorId Coordinator => new(settings.CoordinatorId);

    private Uri CoordinatorAddress => TxCoordQueues.CoordinatorAddress(Coordinator);

    private string DebitParticipant => settings.DebitParticipant;

    private Uri BankA => TxCoordQueues.ParticipantAddress(new ParticipantId(DebitParticipant));

    /// <summary>Runs every attack in turn; the results in order.</summary>
    public async Task<IReadOnlyList<AttackResult>> RunAsync(NpgsqlDataSource bankA, CancellationToken cancellationToken)
    {
        var attacks = Attacks();
        var results = new List<AttackResult>();
        for (var i = 0; i < attacks.Count; i++)
        {
            var (name, protocol, relayGhost, forge) = attacks[i];
            await Line($"[{i + 1}/{attacks.Count + 1}] {name} ...");
            results.Add(await RunAttackAsync(bankA, i + 1, name, protocol, relayGhost, forge, cancellationToken));
            var last = results[^1];
            await Line($"      told {last.Told}; account balance change {last.BalanceChange:+#;-#;0}; debit committed: {(last.DebitCommitted ? "yes" : "no")} -> {(last.BrokeAtomicity ? "BROKE ATOMICITY" : "changed nothing")}");
        }

        // The ghost-only commit: a relayed vote for a participant that does not exist, and nothing else.
        await Line($"[{attacks.Count + 1}/{attacks.Count + 1}] relayed vote for a ghost that is the only participant ...");
        var ghost = new ParticipantId("hostile-ghost-only");
        var ghostTx = TransactionId.New();
        var told = await CommitAsync(ghostTx, [ghost], CommitProtocol.TwoPhase, prepared: [ghost], cancellationToken);
        results.Add(new AttackResult("relayed vote for a ghost that is the only participant", told, 0, DebitCommitted: false));
        await Line($"      told {told} -> {(results[^1].BrokeAtomicity ? "BROKE ATOMICITY (a commit decided that no participant voted for)" : "changed nothing")}");
        return results;
    }

    private List<(string Name, CommitProtocol Protocol, bool RelayGhost, Func<TransactionId, ParticipantId, Task>? Forge)> Attacks() =>
    [
        ("forged CommitBranch to the debit bank while the coordinator waits for votes (2PC)", CommitProtocol.TwoPhase, false,
            (tx, _) => SendAsync(BankA, new CommitBranch { TransactionId = tx, Coordinator = Coordinator, Participant = new ParticipantId(DebitParticipant) })),
        ("forged Yes vote in the ghost's name to the coordinator (2PC)", CommitProtocol.TwoPhase, false,
            (tx, ghost) => SendAsync(CoordinatorAddress, new BranchVoted { TransactionId = tx, Participant = ghost, Vote = Vote.Yes })),
        ("relayed early-prepare vote for the ghost in the commit request, without proof (2PC)", CommitProtocol.TwoPhase, true, null),
        ("forged TerminationDecided(Committed) to the debit bank from the ghost, a recorded peer (3PC)", CommitProtocol.ThreePhase, false,
            (tx, ghost) => SendAsync(BankA, new TerminationDecided { TransactionId = tx, Coordinator = Coordinator, Leader = ghost, Round = 1, Outcome = TransactionOutcome.Committed })),
        ("forged TerminationDecided(Committed) to the debit bank from a leader that is no peer (3PC)", CommitProtocol.ThreePhase, false,
            (tx, _) => SendAsync(BankA, new TerminationDecided { TransactionId = tx, Coordinator = Coordinator, Leader = new ParticipantId("hostile-nobody"), Round = 1, Outcome = TransactionOutcome.Committed })),
        ("forged TerminationDecided(Committed) to the coordinator while it prepares (3PC)", CommitProtocol.ThreePhase, false,
            (tx, _) => SendAsync(CoordinatorAddress, new TerminationDecided { TransactionId = tx, Coordinator = Coordinator, Leader = new ParticipantId(DebitParticipant), Round = 1, Outcome = TransactionOutcome.Committed })),
    ];

    private async Task<AttackResult> RunAttackAsync(
        NpgsqlDataSource bankA, int number, string name, CommitProtocol protocol, bool relayGhost, Func<TransactionId, ParticipantId, Task>? forge, CancellationToken cancellationToken)
    {
        var tx = TransactionId.New();
        var ghost = new ParticipantId($"hostile-ghost-{number}");
        var account = await AccountWithAtLeastAsync(bankA, Amount, cancellationToken);
        var before = await BalanceAsync(bankA, account, cancellationToken);
        var transferId = Guid.NewGuid();

        // The debit, as any initiator may send it (initiators are not authenticated: docs/security.md).
        var work = await bus.CreateRequestClient<DebitAccount>(BankA, RequestTimeout.After(s: (int)settings.Timeout.TotalSeconds))
            .GetResponse<WorkCompleted>(
                new DebitAccount { TransferId = transferId, AccountId = account, Amount = Amount },
                x => x.UseExecute(context =>
                {
                    context.Headers.Set(TxCoordHeaders.TransactionId, tx.Value.ToString());
                    context.Headers.Set(TxCoordHeaders.CoordinatorId, settings.CoordinatorId);
                    context.Headers.Set(TxCoordHeaders.BranchTimeoutMs, (long)TimeSpan.FromMinutes(2).TotalMilliseconds);
                    context.Headers.Set(TxCoordHeaders.WorkSequence, 1);
                }),
                cancellationToken);
        if (!work.Message.Succeeded)
        {
            throw new InvalidOperationException($"{DebitParticipant} refused the attack's debit of {Amount} from account {account}: {work.Message.Reason}");
        }

        // The commit request names the ghost as the credit side: the coordinator asks both to prepare and waits for the ghost's vote.
        var commit = CommitAsync(tx, [new ParticipantId(DebitParticipant), ghost], protocol, relayGhost ? [ghost] : [], cancellationToken);
        var gid = BranchGid.Create(Coordinator, tx, new ParticipantId(DebitParticipant)).Value;
        if (!await WaitAsync(() => IsPreparedAsync(bankA, gid, cancellationToken), settings.Timeout, cancellationToken) && !commit.IsCompleted)
        {
            throw new TimeoutException($"{DebitParticipant}'s branch {gid} did not prepare within {settings.Timeout.TotalSeconds:0} s");
        }

        if (forge is not null)
        {
            await forge(tx, ghost);
        }

        await Line($"      sent; waiting for the coordinator's answer (its vote timeout) ...");
        var told = await commit;

        // Let phase 2 (or the forged finish) settle: bank-a's branch must end either way.
        if (!await WaitAsync(async () => !await IsPreparedAsync(bankA, gid, cancellationToken), settings.Timeout, cancellationToken))
        {
            throw new TimeoutException($"{DebitParticipant}'s branch {gid} is still prepared {settings.Timeout.TotalSeconds:0} s after the coordinator answered {told}");
        }

        var after = await BalanceAsync(bankA, account, cancellationToken);
        var debitCommitted = await IsAppliedAsync(bankA, transferId, cancellationToken);
        return new AttackResult(name, told, after - before, debitCommitted);
    }

    /// <summary>Asks the coordinator to commit; the outcome it told (Committed, Aborted), or InDoubt when it did not answer.</summary>
    private async Task<string> CommitAsync(
        TransactionId tx, IReadOnlyList<ParticipantId> participants, CommitProtocol protocol, IReadOnlyList<ParticipantId> prepared, CancellationToken cancellationToken)
    {
        try
        {
            var answer = await bus.CreateRequestClient<CommitTransaction>(CoordinatorAddress, RequestTimeout.After(s: (int)settings.Timeout.TotalSeconds))
                .GetResponse<TransactionCompleted>(
                    new CommitTransaction
                    {
                        TransactionId = tx, Participants = participants, Protocol = protocol, Prepared = prepared,
                        Deadline = DateTimeOffset.UtcNow + settings.Timeout,
                        WorkCounts = [.. participants.Select(_ => 1)],
                    },
                    cancellationToken);
            return answer.Message.Outcome.ToString();
        }
        catch (RequestTimeoutException)
        {
            return "InDoubt (no answer)";
        }
    }

    private async Task SendAsync<T>(Uri address, T message)
        where T : class
    {
        var endpoint = await bus.GetSendEndpoint(address);
        await endpoint.Send(message);
    }

    private static async Task<int> AccountWithAtLeastAsync(NpgsqlDataSource bank, long amount, CancellationToken cancellationToken)
    {
        await using var connection = await bank.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<int?>(new CommandDefinition(
                "SELECT id FROM accounts WHERE balance >= @Amount ORDER BY balance DESC, id LIMIT 1", new { Amount = amount }, cancellationToken: cancellationToken))
            ?? throw new InvalidOperationException($"no account at the debit bank holds {amount}: seed it again (run the demo)");
    }

    private static async Task<long> BalanceAsync(NpgsqlDataSource bank, int account, CancellationToken cancellationToken)
    {
        await using var connection = await bank.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<long>(new CommandDefinition(
            "SELECT balance FROM accounts WHERE id = @Account", new { Account = account }, cancellationToken: cancellationToken));
    }

    private static async Task<bool> IsPreparedAsync(NpgsqlDataSource bank, string gid, CancellationToken cancellationToken)
    {
        await using var connection = await bank.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<bool>(new CommandDefinition(
            "SELECT EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE gid = @Gid)", new { Gid = gid }, cancellationToken: cancellationToken));
    }

    private static async Task<bool> IsAppliedAsync(NpgsqlDataSource bank, Guid transferId, CancellationToken cancellationToken)
    {
        await using var connection = await bank.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<bool>(new CommandDefinition(
            "SELECT EXISTS (SELECT 1 FROM applied_transfers WHERE transfer_id = @TransferId)", new { TransferId = transferId }, cancellationToken: cancellationToken));
    }

    private static async Task<bool> WaitAsync(Func<Task<bool>> condition, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var until = DateTime.UtcNow + timeout;
        while (!await condition())
        {
            if (DateTime.UtcNow >= until)
            {
                return false;
            }

            await Task.Delay(TimeSpan.FromMilliseconds(100), cancellationToken);
        }

        return true;
    }

    private Task Line(FormattableString text) => output.WriteLineAsync(text.ToString(Invariant));
}
