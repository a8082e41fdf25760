using Microsoft.Extensions.Time.Testing;
using TxCoord.Contracts;
using TxCoord.Participants.Participant;

namespace TxCoord.Tests.Unit.Participants;

public sealed class CoordinatorBackoffTests
{
    private static readonly CoordinatorId Down = new("down");
    private static readonly CoordinatorId Up = new("up");

    [Test]
    public void CoordinatorThatDoesNotAnswer_IsAskedAgainAfterADoublingWaitUpToTheMaximum()
    {
        var time = new FakeTimeProvider();
        var backoff = new CoordinatorBackoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(5), time);
        Assert.That(backoff.MayAsk(Down), Is.True);

        var waits = Enumerable.Range(0, 5).Select(_ => backoff.Failed(Down)).ToArray();
        Assert.That(waits, Is.EqualTo(new[] { 1, 2, 4, 5, 5 }.Select(s => TimeSpan.FromSeconds(s))));
        Assert.That(backoff.MayAsk(Down), Is.False);
        Assert.That(backoff.MayAsk(Up), Is.True, "other coordinators are not held back");

        time.Advance(TimeSpan.FromSeconds(5));
        Assert.That(backoff.MayAsk(Down), Is.True);
    }

    [Test]
    public void CoordinatorThatAnswersAgain_IsAskedFreelyAndStartsAtTheFirstWaitNextTime()
    {
        var time = new FakeTimeProvider();
        var backoff = new CoordinatorBackoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30), time);
        backoff.Failed(Down);
        backoff.Failed(Down);
        backoff.Answered(Down);
        Assert.That(backoff.MayAsk(Down), Is.True);
        Assert.That(backoff.Failed(Down), Is.EqualTo(TimeSpan.FromSeconds(1)));
    }

    [Test]
    public void BranchBackoff_CountsTheFailingKeys_AndForgetsThoseNoLongerKept()
    {
        var time = new FakeTimeProvider();
        var backoff = new RetryBackoff<string>(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(5), time);
        backoff.Failed("a");
        backoff.Failed("b");
        Assert.That(backoff.Failing, Is.EqualTo(2));

        backoff.Answered("a");
        Assert.That(backoff.Failing, Is.EqualTo(1));
        backoff.Retain(new HashSet<string> { "a" });
        Assert.Multiple(() =>
        {
            Assert.That(backoff.Failing, Is.Zero, "b is no longer prepared: forgotten");
            Assert.That(backoff.MayAsk("b"), Is.True);
        });
    }
}
