namespace TxCoord.Tests.Dashboard.Infrastructure;

/// <summary>Waits for a condition with a deadline: tests wait on what they expect, never on a fixed sleep.</summary>
internal static class Eventually
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(100);

    public static async Task<T> WaitForAsync<T>(Func<Task<T>> probe, Func<T, bool> until, TimeSpan timeout, string what)
    {
        var deadline = DateTimeOffset.UtcNow + timeout;
        while (true)
        {
            var last = await probe();
            if (until(last))
            {
                return last;
            }

            if (DateTimeOffset.UtcNow > deadline)
            {
                Assert.Fail($"Timed out after {timeout} waiting for {what}; last value: {last}");
            }

            await Task.Delay(PollInterval);
        }
    }
}
