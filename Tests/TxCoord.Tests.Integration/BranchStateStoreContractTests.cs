using TxCoord.Contracts;
using TxCoord.Participants.PostgreSql;
using TxCoord.Participants.Protocol;
using TxCoord.Tests.Integration.Infrastructure;
using Npgsql;

namespace TxCoord.Tests.Integration;

/// <summary>
/// <see cref="BranchStateStore"/>'s guarded writes (SQL against a real PostgreSQL) and
/// <see cref="TerminationRules"/>' peer rules (pure, what the simulator runs) give the same answer
/// to every sequence of PreCommits, round joins and proposals: accepted or refused alike, and the
/// same row after each. Seeded random sequences, each on a fresh branch row.
/// </summary>
[Parallelizable(ParallelScope.Self)]
public sealed class BranchStateStoreContractTests
{
    private const int Sequences = 40;
    private const int Steps = 10;

    private static readonly CoordinatorId Coordinator = new("bssc");
    private static readonly ParticipantId Participant = new("bssc-p");

    private NpgsqlDataSource _dataSource = null!;
    private BranchStateStore _store = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _dataSource = NpgsqlDataSource.Create(await TestServers.CreateDatabaseAsync($"bssc_{Guid.NewGuid():N}"[..20]));
        _store = new BranchStateStore(_dataSource);
        await _store.InitializeAsync(CancellationToken.None);
    }

    [OneTimeTearDown]
    public async Task StopAsync() => await _dataSource.DisposeAsync();

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    public async Task EverySequenceOfRoundWrites_TheStoreAndTheRulesAgree(int seed)
    {
        var random = new Random(seed);
        for (var sequence = 0; sequence < Sequences; sequence++)
        {
            var gid = BranchGid.Create(Coordinator, TransactionId.New(), Participant);
            await _store.RecordPreparingAsync(gid, CommitProtocol.ThreePhase, [Participant, new ParticipantId("bssc-q"), new ParticipantId("bssc-r")], CancellationToken.None);
            var model = RoundState.Prepared;
            var trace = new List<string>();
            for (var step = 0; step < Steps; step++)
            {
                var round = random.Next(0, 5);
                var (name, expected, stored) = random.Next(3) switch
                {
                    0 => ("PreCommit", TerminationRules.TakePreCommit(model), await _store.TryPreCommitAsync(gid, CancellationToken.None)),
                    1 => ($"Join({Math.Max(round, 1)})", TerminationRules.JoinRound(model, Math.Max(round, 1)), await _store.JoinRoundAsync(gid, Math.Max(round, 1), CancellationToken.None)),
                    _ when random.Next(2) == 0 => ($"Accept({Math.Max(round, 1)}, commit)", TerminationRules.AcceptProposal(model, Math.Max(round, 1), commit: true),
                        await _store.AcceptProposalAsync(gid, Math.Max(round, 1), commit: true, CancellationToken.None)),
                    _ => ($"Accept({Math.Max(round, 1)}, abort)", TerminationRules.AcceptProposal(model, Math.Max(round, 1), commit: false),
                        await _store.AcceptProposalAsync(gid, Math.Max(round, 1), commit: false, CancellationToken.None)),
                };
                trace.Add($"{name} -> {(expected is { } e ? e.ToString() : "refused")}");
                model = expected ?? model;
                var row = await _store.FindAsync(gid, CancellationToken.None);
                Assert.Multiple(() =>
                {
                    Assert.That(stored is not null, Is.EqualTo(expected is not null), $"accepted or refused alike; seed {seed}, sequence {sequence}: {string.Join("; ", trace)}");
                    Assert.That(row is null ? (RoundState?)null : new RoundState(row.State, row.LastElected, row.LastAttempt), Is.EqualTo(model),
                        $"the stored row is the rules' state; seed {seed}, sequence {sequence}: {string.Join("; ", trace)}");
                });
            }
        }
    }
}
