using TxCoord.Contracts;

namespace TxCoord.Tests.Unit.Contracts;

public sealed class BranchGidTests
{
    private static readonly CoordinatorId Coordinator = new("c1");
    private static readonly ParticipantId Participant = new("bank-a");

    [Test]
    public void Create_ThenParse_GivesBackEveryPart()
    {
        var transaction = TransactionId.New();
        var gid = BranchGid.Create(Coordinator, transaction, Participant);

        Assert.That(BranchGid.TryParse(gid.Value, out var parsed), Is.True);
        Assert.Multiple(() =>
        {
            Assert.That(gid.Value, Is.EqualTo($"txc:c1:{transaction}:bank-a"));
            Assert.That(parsed.Coordinator, Is.EqualTo(Coordinator));
            Assert.That(parsed.Transaction, Is.EqualTo(transaction));
            Assert.That(parsed.Participant, Is.EqualTo(Participant));
            Assert.That(BranchGid.IsSafe(gid.Value), Is.True);
        });
    }

    [Test]
    public void LongestPossibleGid_StaysFarBelowPostgresLimit()
    {
        var name = new string('x', BranchGid.MaxNameLength);
        var gid = BranchGid.Create(new CoordinatorId(name), TransactionId.New(), new ParticipantId(name));
        Assert.That(System.Text.Encoding.UTF8.GetByteCount(gid.Value), Is.LessThan(200));
    }

    [TestCase("txc:c1:'; DROP TABLE accounts; --")]
    [TestCase("txc:c1:abc'def")]
    [TestCase("txc:c1:a\\b")]
    [TestCase("txc:c1:a\0b")]
    [TestCase("txc:c1:dépôt")]
    [TestCase("txc:c1:a b")]
    [TestCase("")]
    public void UnsafeText_IsRefusedBeforeSql(string text)
    {
        Assert.Multiple(() =>
        {
            Assert.That(BranchGid.IsSafe(text), Is.False);
            Assert.That(() => BranchGid.EnsureSafe(text), Throws.ArgumentException);
            Assert.That(BranchGid.TryParse(text, out _), Is.False);
        });
    }

    [TestCase(199)]
    [TestCase(200)]
    [TestCase(201)]
    public void TextOverTheLengthLimit_IsRefused(int length)
    {
        var text = "txc:" + new string('a', length - 4);
        Assert.That(BranchGid.IsSafe(text), Is.False, "the limit is far below PostgreSQL's 200 bytes");
    }

    [TestCase("bank a")]
    [TestCase("bank:a")]
    [TestCase("bank'a")]
    [TestCase("")]
    [TestCase("ünicode")]
    public void InvalidParticipantId_IsRefusedWithAMessageThatSaysWhatToFix(string name)
    {
        Assert.That(
            () => BranchGid.Create(Coordinator, TransactionId.New(), new ParticipantId(name)),
            Throws.ArgumentException.With.Message.Contains("letters, digits"));
    }

    [TestCase("txc:c1:not-a-guid:bank-a")]
    [TestCase("xa:c1:0123456789abcdef0123456789abcdef:bank-a")]
    [TestCase("txc:c1:0123456789abcdef0123456789abcdef")]
    [TestCase("00000000-0000-0000-0000-000000000000/1234")]
    public void ForeignGids_AreNotParsed(string text) =>
        Assert.That(BranchGid.TryParse(text, out _), Is.False);
}
