using TxCoord.Contracts;
using TxCoord.Contracts.Security;
using TxCoord.Coordinator.Security;

namespace TxCoord.Tests.Unit.Security;

/// <summary>The pure rules of sender authentication (docs/security.md), table by table.</summary>
public sealed class SenderRulesTests
{
    private static readonly TransactionId Tx = new(Guid.Parse("0193a0b4-0000-7000-8000-000000000001"));
    private static readonly CoordinatorId Coordinator = new("coord-1");
    private static readonly ParticipantId BankA = new("bank-a");
    private static readonly ParticipantId BankB = new("bank-b");
    private const string KeyA = "key-of-bank-a-0123456789abcdef0123";

    private static TxCoordSecurityOptions Options(SenderAuthentication mode = SenderAuthentication.BrokerUser)
    {
        var options = new TxCoordSecurityOptions { SenderAuthentication = mode };
        options.Coordinators["coord-1"] = "svc-coord";
        options.Participants["bank-a"] = "svc-bank-a";
        options.Participants["bank-b"] = "svc-bank-b";
        options.VoteProofKeys["bank-a"] = KeyA;
        return options;
    }

    [TestCase(true, "coord-1", "svc-coord", null)]
    [TestCase(true, "coord-1", "svc-bank-a", "wrong_user")]
    [TestCase(true, "coord-1", "mallory", "wrong_user")]
    [TestCase(true, "coord-1", null, "no_user_id")]
    [TestCase(true, "coord-2", "svc-coord", "unknown_sender")]
    [TestCase(true, "bank-a", "svc-bank-a", "unknown_sender")]
    [TestCase(false, "bank-a", "svc-bank-a", null)]
    [TestCase(false, "bank-a", "svc-bank-b", "wrong_user")]
    [TestCase(false, "sec-nobody", "svc-bank-a", "unknown_sender")]
    [TestCase(false, "", "svc-bank-a", "unknown_sender")]
    [TestCase(false, "bank-a", "", "no_user_id")]
    public void Check_WithBrokerUser(bool coordinator, string claimed, string? brokerUser, string? refusal) =>
        Assert.That(SenderRules.Check(Options(), Role(coordinator), claimed, brokerUser)?.Reason, Is.EqualTo(refusal));

    private static SenderRole Role(bool coordinator) => coordinator ? SenderRole.Coordinator : SenderRole.Participant;

    [TestCase(true, "coord-1", "mallory")]
    [TestCase(false, "sec-nobody", null)]
    public void Check_WithAuthenticationOff_AcceptsEverything(bool coordinator, string claimed, string? brokerUser) =>
        Assert.That(SenderRules.Check(Options(SenderAuthentication.Off), Role(coordinator), claimed, brokerUser), Is.Null);

    [TestCase("svc-coord", null)]
    [TestCase("svc-bank-a", "wrong_user")]
    [TestCase(null, "no_user_id")]
    public void CheckAnyCoordinator(string? brokerUser, string? refusal) =>
        Assert.That(SenderRules.CheckAnyCoordinator(Options(), brokerUser)?.Reason, Is.EqualTo(refusal));

    private static readonly ParticipantId[] Peers = [BankA, BankB];

    private static IEnumerable<TestCaseData> PeerCases()
    {
        // sender, round, state question?, recorded protocol, recorded peers, refusal
        yield return new TestCaseData("bank-b", 1, true, CommitProtocol.ThreePhase, Peers, null).SetName("3PC round 1 question from a peer");
        yield return new TestCaseData("bank-b", 2, false, CommitProtocol.ThreePhase, Peers, null).SetName("3PC decision from a peer");
        yield return new TestCaseData("sec-nobody", 1, false, CommitProtocol.ThreePhase, Peers, "not_a_peer").SetName("3PC decision from a non-peer");
        yield return new TestCaseData("sec-nobody", 1, true, CommitProtocol.ThreePhase, Peers, "not_a_peer").SetName("3PC question from a non-peer");
        yield return new TestCaseData("bank-b", 0, true, CommitProtocol.TwoPhase, Peers, null).SetName("2PC cooperative question from a peer");
        yield return new TestCaseData("bank-b", 1, true, CommitProtocol.TwoPhase, Peers, "not_3pc").SetName("2PC branch asked to join a round");
        yield return new TestCaseData("bank-b", 1, false, CommitProtocol.TwoPhase, Peers, "not_3pc").SetName("2PC branch told a termination decision");
        yield return new TestCaseData("bank-b", 1, true, null, null, null).SetName("no record: a question is answered (and fences)");
        yield return new TestCaseData("bank-b", 1, false, null, null, "not_3pc").SetName("no record: a decision is refused");
    }

    [TestCaseSource(nameof(PeerCases))]
    public void CheckPeer(string sender, int round, bool question, CommitProtocol? protocol, ParticipantId[]? peers, string? refusal) =>
        Assert.That(SenderRules.CheckPeer(sender, round, question, protocol, peers)?.Reason, Is.EqualTo(refusal));

    [Test]
    public void VoteProof_VerifiesOnlyTheExactVote()
    {
        var proof = VoteProof.Compute(KeyA, Tx, BankA, Coordinator, workSequence: 2);
        Assert.Multiple(() =>
        {
            Assert.That(VoteProof.Verify(KeyA, proof, Tx, BankA, Coordinator, 2), Is.True);
            Assert.That(VoteProof.Verify(KeyA, proof, TransactionId.New(), BankA, Coordinator, 2), Is.False, "another transaction");
            Assert.That(VoteProof.Verify(KeyA, proof, Tx, BankB, Coordinator, 2), Is.False, "another participant");
            Assert.That(VoteProof.Verify(KeyA, proof, Tx, BankA, new CoordinatorId("coord-2"), 2), Is.False, "another coordinator");
            Assert.That(VoteProof.Verify(KeyA, proof, Tx, BankA, Coordinator, 1), Is.False, "another work count");
            Assert.That(VoteProof.Verify(KeyA + "x", proof, Tx, BankA, Coordinator, 2), Is.False, "another key");
            Assert.That(VoteProof.Verify(KeyA, null, Tx, BankA, Coordinator, 2), Is.False);
            Assert.That(VoteProof.Verify(KeyA, "not base64!", Tx, BankA, Coordinator, 2), Is.False);
            Assert.That(VoteProof.Verify(KeyA, new string('A', 10_000), Tx, BankA, Coordinator, 2), Is.False);
        });
    }

    private static CommitTransaction Relayed(IReadOnlyList<ParticipantId> prepared, IReadOnlyList<string?> proofs) => new()
    {
        TransactionId = Tx, Participants = [BankA, BankB], Prepared = prepared, PreparedProofs = proofs, WorkCounts = [3, 1],
    };

    [Test]
    public void RelayedVotes_WithBrokerUser_OnlyThoseWithAValidProofAreTrusted()
    {
        var good = VoteProof.Compute(KeyA, Tx, BankA, Coordinator, 3);
        var cases = new (CommitTransaction Message, ParticipantId[] Trusted, string[] Why)[]
        {
            (Relayed([BankA], [good]), [BankA], []),
            (Relayed([BankA], []), [], ["no proof"]),
            (Relayed([BankA], [VoteProof.Compute(KeyA, Tx, BankA, Coordinator, 2)]), [], ["not valid"]),
            (Relayed([BankB], ["anything"]), [], ["no vote proof key"]),
            (Relayed([new ParticipantId("sec-ghost-7"), BankA], [null, good]), [BankA], ["not among"]),
            (Relayed([BankB, BankA], [good]), [], ["no vote proof key", "no proof"]),
        };
        foreach (var (message, trusted, why) in cases)
        {
            var (ok, untrusted) = CoordinatorSenderChecks.CheckRelayedVotes(Options(), Coordinator, message);
            Assert.Multiple(() =>
            {
                Assert.That(ok, Is.EqualTo(trusted), string.Join(", ", message.Prepared));
                Assert.That(untrusted.Select(u => u.Why), Has.Exactly(why.Length).Items);
                for (var i = 0; i < why.Length; i++)
                {
                    Assert.That(untrusted[i].Why, Does.Contain(why[i]));
                }
            });
        }
    }

    [Test]
    public void RelayedVotes_WithAuthenticationOff_TrustedWithoutProof_ButNeverForANonParticipant()
    {
        var (ok, untrusted) = CoordinatorSenderChecks.CheckRelayedVotes(
            Options(SenderAuthentication.Off), Coordinator, Relayed([BankA, new ParticipantId("sec-ghost-7")], []));
        Assert.Multiple(() =>
        {
            Assert.That(ok, Is.EqualTo(new[] { BankA }));
            Assert.That(untrusted.Single().Participant, Is.EqualTo(new ParticipantId("sec-ghost-7")));
        });
    }

    [Test]
    public void OptionsCheck_NamesEverySettingToFix()
    {
        var options = Options();
        options.Participants["bad id!"] = "u";
        options.Coordinators["coord-2"] = " ";
        options.VoteProofKey = "short";
        options.VoteProofKeys["bank-b"] = "short";
        var failures = SecurityOptionsCheck.Check(options, SenderRole.Participant, ["bank-c"]);
        Assert.That(failures, Has.Some.Contains("Security:Participants names an invalid id 'bad id!'")
            .And.Some.Contains("Security:Coordinators:coord-2 is empty")
            .And.Some.Contains("Security:VoteProofKey is 5 characters long")
            .And.Some.Contains("Security:VoteProofKeys:bank-b is 5 characters long")
            .And.Some.Contains("Security:Participants:bank-c is missing"));
        Assert.That(SecurityOptionsCheck.Check(Options(), SenderRole.Coordinator, ["coord-1"]), Is.Empty);
    }

    [Test]
    public void OptionsCheck_ParticipantsOfOneBus_MustShareTheirBrokerUser() =>
        Assert.That(SecurityOptionsCheck.Check(Options(), SenderRole.Participant, ["bank-a", "bank-b"]), Has.Some.Contains("one bus has one connection, so one user"));
}
