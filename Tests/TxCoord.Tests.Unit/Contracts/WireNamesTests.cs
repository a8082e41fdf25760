using System.Text.Json;
using MassTransit;
using MassTransit.Serialization;
using TxCoord.Contracts;

namespace TxCoord.Tests.Unit.Contracts;

/// <summary>
/// The contracts are the wire format: MassTransit names a message by namespace and type name.
/// Renaming or moving one breaks every running peer, so the names are pinned here.
/// </summary>
public sealed class WireNamesTests
{
    private static readonly (Type Type, string Urn)[] Pinned =
    [
        (typeof(CommitTransaction), "urn:message:TxCoord.Contracts:CommitTransaction"),
        (typeof(RollbackTransaction), "urn:message:TxCoord.Contracts:RollbackTransaction"),
        (typeof(TransactionCompleted), "urn:message:TxCoord.Contracts:TransactionCompleted"),
        (typeof(GetTransactionOutcome), "urn:message:TxCoord.Contracts:GetTransactionOutcome"),
        (typeof(TransactionOutcomeReported), "urn:message:TxCoord.Contracts:TransactionOutcomeReported"),
        (typeof(WorkCompleted), "urn:message:TxCoord.Contracts:WorkCompleted"),
        (typeof(PrepareBranch), "urn:message:TxCoord.Contracts:PrepareBranch"),
        (typeof(PrepareBranches), "urn:message:TxCoord.Contracts:PrepareBranches"),
        (typeof(CommitBranch), "urn:message:TxCoord.Contracts:CommitBranch"),
        (typeof(CommitBranches), "urn:message:TxCoord.Contracts:CommitBranches"),
        (typeof(AbortBranch), "urn:message:TxCoord.Contracts:AbortBranch"),
        (typeof(BranchVoted), "urn:message:TxCoord.Contracts:BranchVoted"),
        (typeof(BranchesVoted), "urn:message:TxCoord.Contracts:BranchesVoted"),
        (typeof(BranchCommitted), "urn:message:TxCoord.Contracts:BranchCommitted"),
        (typeof(BranchesCommitted), "urn:message:TxCoord.Contracts:BranchesCommitted"),
        (typeof(BranchAborted), "urn:message:TxCoord.Contracts:BranchAborted"),
        (typeof(PreCommitBranch), "urn:message:TxCoord.Contracts:PreCommitBranch"),
        (typeof(PreCommitBranches), "urn:message:TxCoord.Contracts:PreCommitBranches"),
        (typeof(BranchPreCommitted), "urn:message:TxCoord.Contracts:BranchPreCommitted"),
        (typeof(BranchesPreCommitted), "urn:message:TxCoord.Contracts:BranchesPreCommitted"),
        (typeof(GetBranchState), "urn:message:TxCoord.Contracts:GetBranchState"),
        (typeof(BranchStateReported), "urn:message:TxCoord.Contracts:BranchStateReported"),
        (typeof(ProposeTermination), "urn:message:TxCoord.Contracts:ProposeTermination"),
        (typeof(TerminationProposalAnswered), "urn:message:TxCoord.Contracts:TerminationProposalAnswered"),
        (typeof(TerminationDecided), "urn:message:TxCoord.Contracts:TerminationDecided"),
    ];

    [TestCaseSource(nameof(PinnedCases))]
    public void MessageType_KeepsItsWireName(Type type, string urn) =>
        Assert.That(MessageUrn.ForTypeString(type), Is.EqualTo(urn));

    [Test]
    public void EveryMessageTypeInContracts_IsPinned()
    {
        var messageTypes = typeof(CommitTransaction).Assembly.GetExportedTypes()
            .Where(t => t is { IsClass: true, IsSealed: true, IsAbstract: false } && t.Namespace == "TxCoord.Contracts"
                        && t.GetMethod("<Clone>$") is not null)
            .ToHashSet();
        Assert.That(messageTypes, Is.EquivalentTo(Pinned.Select(p => p.Type)), "a new message type needs its wire name pinned here");
    }

    [Test]
    public void WorkHeaders_KeepTheirWireNames()
    {
        Assert.Multiple(() =>
        {
            Assert.That(TxCoordHeaders.TransactionId, Is.EqualTo("TxCoord-TransactionId"));
            Assert.That(TxCoordHeaders.CoordinatorId, Is.EqualTo("TxCoord-CoordinatorId"));
            Assert.That(TxCoordHeaders.BranchTimeoutMs, Is.EqualTo("TxCoord-BranchTimeoutMs"));
            Assert.That(TxCoordHeaders.Prepare, Is.EqualTo("TxCoord-Prepare"));
            Assert.That(TxCoordHeaders.Protocol, Is.EqualTo("TxCoord-Protocol"));
            Assert.That(TxCoordHeaders.Participants, Is.EqualTo("TxCoord-Participants"));
        });
    }

    [Test]
    public void EarlyPrepareFields_RoundTripAndDefaultToNoneForOldSenders()
    {
        var commit = new CommitTransaction
        {
            TransactionId = TransactionId.New(),
            Participants = [new ParticipantId("bank-a"), new ParticipantId("bank-b")],
            Prepared = [new ParticipantId("bank-a")],
        };
        var back = JsonSerializer.Deserialize<CommitTransaction>(JsonSerializer.Serialize(commit, SystemTextJsonMessageSerializer.Options), SystemTextJsonMessageSerializer.Options)!;
        // An old sender's message has no "prepared" property at all.
        var oldJson = System.Text.Json.Nodes.JsonNode.Parse(JsonSerializer.Serialize(commit with { Prepared = [] }, SystemTextJsonMessageSerializer.Options))!.AsObject();
        Assert.That(oldJson.Remove("prepared"), Is.True, "the property's wire name is 'prepared'");
        var old = JsonSerializer.Deserialize<CommitTransaction>(oldJson.ToJsonString(), SystemTextJsonMessageSerializer.Options)!;
        var work = JsonSerializer.Deserialize<WorkCompleted>(
            JsonSerializer.Serialize(new WorkCompleted { TransactionId = commit.TransactionId, Participant = new ParticipantId("bank-a"), Succeeded = true, Prepared = true }, SystemTextJsonMessageSerializer.Options),
            SystemTextJsonMessageSerializer.Options)!;

        Assert.Multiple(() =>
        {
            Assert.That(back.Prepared, Is.EqualTo(commit.Prepared));
            Assert.That(old.Prepared, Is.Empty);
            Assert.That(work.Prepared, Is.True);
        });
    }

    [Test]
    public void Enums_KeepTheirWireValues()
    {
        Assert.Multiple(() =>
        {
            Assert.That((int)Vote.Yes, Is.Zero);
            Assert.That((int)Vote.No, Is.EqualTo(1));
            Assert.That((int)Vote.ReadOnly, Is.EqualTo(2));
            Assert.That((int)TransactionOutcome.Committed, Is.Zero);
            Assert.That((int)TransactionOutcome.Aborted, Is.EqualTo(1));
            Assert.That((int)TransactionOutcome.Pending, Is.EqualTo(2));
            Assert.That((int)CommitProtocol.TwoPhase, Is.Zero);
            Assert.That((int)CommitProtocol.ThreePhase, Is.EqualTo(1));
            Assert.That((int)BranchState.Prepared, Is.Zero);
            Assert.That((int)BranchState.PreCommitted, Is.EqualTo(1));
            Assert.That((int)BranchState.PreAborted, Is.EqualTo(2));
            Assert.That((int)BranchState.Committed, Is.EqualTo(3));
            Assert.That((int)BranchState.Aborted, Is.EqualTo(4));
        });
    }

    [Test]
    public void Messages_RoundTripThroughMassTransitsSerializer()
    {
        var message = new PrepareBranch
        {
            TransactionId = TransactionId.New(),
            Coordinator = new CoordinatorId("c1"),
            Participant = new ParticipantId("bank-a"),
            Protocol = CommitProtocol.ThreePhase,
            Participants = [new ParticipantId("bank-a"), new ParticipantId("bank-b")],
        };

        var json = JsonSerializer.Serialize(message, SystemTextJsonMessageSerializer.Options);
        var back = JsonSerializer.Deserialize<PrepareBranch>(json, SystemTextJsonMessageSerializer.Options)!;

        Assert.Multiple(() =>
        {
            Assert.That(back.TransactionId, Is.EqualTo(message.TransactionId));
            Assert.That(back.Coordinator, Is.EqualTo(message.Coordinator));
            Assert.That(back.Participant, Is.EqualTo(message.Participant));
            Assert.That(back.Protocol, Is.EqualTo(CommitProtocol.ThreePhase));
            Assert.That(back.Participants, Is.EqualTo(message.Participants));
        });
    }

    private static IEnumerable<TestCaseData> PinnedCases() =>
        Pinned.Select(p => new TestCaseData(p.Type, p.Urn).SetArgDisplayNames(p.Type.Name));
}
