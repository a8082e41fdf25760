using TxCoord.Contracts;

namespace TxCoord.Tests.Unit.Contracts;

public sealed class UntrustedTextTests
{
    [TestCase("plain text, 'quoted', é ✓ \\ ok", "plain text, 'quoted', é ✓ \\ ok")]
    [TestCase("x\n[12:00:00.000 FTL] fake", @"x\n[12:00:00.000 FTL] fake")]
    [TestCase("a\r\nb\tc", @"a\r\nb\tc")]
    [TestCase("nul\0 esc\u001b del\u007f c1\u0085", @"nul\u0000 esc\u001b del\u007f c1\u0085")]
    [TestCase("ls\u2028ps\u2029", @"ls\u2028ps\u2029")]
    [TestCase("\u202eevil\u202c \u2066iso\u2069 \u200fmark\ufeff", @"\u202eevil\u202c \u2066iso\u2069 \u200fmark\ufeff")]
    public void Escape_EscapesControlAndBidiCharacters_AndLeavesTheRest(string text, string expected)
    {
        Assert.That(UntrustedText.Escape(text), Is.EqualTo(expected));
    }

    [Test]
    public void Escape_IsIdempotent_AndKeepsNull()
    {
        var once = UntrustedText.Escape("a\nb\u2028c");

        Assert.Multiple(() =>
        {
            Assert.That(UntrustedText.Escape(once), Is.EqualTo(once));
            Assert.That(UntrustedText.Escape(null), Is.Null);
        });
    }

    [Test]
    public void Bound_CutsAfterTheLimit_WithAMarkerCountingTheOriginalCharactersCut()
    {
        var text = new string('r', 20_000_000);

        var bounded = UntrustedText.Bound(text, 2_000);

        Assert.Multiple(() =>
        {
            Assert.That(bounded, Does.StartWith(new string('r', 2_000)));
            Assert.That(bounded, Does.EndWith("… (19998000 chars cut)"));
            Assert.That(bounded!, Has.Length.EqualTo(2_000 + "… (19998000 chars cut)".Length));
        });
    }

    [Test]
    public void Bound_ShortTextIsReturnedAsItIs()
    {
        const string text = "short";

        Assert.That(UntrustedText.Bound(text, 10), Is.SameAs(text));
    }

    [Test]
    public void Bound_CountsEscapesAgainstTheLimit_AndNeverSplitsAnEscapeOrASurrogatePair()
    {
        Assert.Multiple(() =>
        {
            Assert.That(UntrustedText.Bound("ab\ncd", 3), Is.EqualTo("ab… (3 chars cut)"));
            Assert.That(UntrustedText.Bound("ab😀cd", 3), Is.EqualTo("ab… (4 chars cut)"));
        });
    }

    [Test]
    public void Id_KeepsAValidId_AndCutsAnInvalidOneSoThatItStaysInvalid()
    {
        var huge = new string('h', 200_000);

        var echoed = UntrustedText.Id(huge);

        Assert.Multiple(() =>
        {
            Assert.That(UntrustedText.Id("bank-a"), Is.EqualTo("bank-a"));
            Assert.That(echoed, Is.EqualTo(new string('h', BranchGid.MaxNameLength) + "… (199960 chars cut)"));
            Assert.That(BranchGid.IsValidName(echoed), Is.False);
            Assert.That(UntrustedText.Id("bad\nid"), Is.EqualTo(@"bad\nid"));
        });
    }
}
