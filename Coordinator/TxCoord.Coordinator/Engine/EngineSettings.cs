namespace TxCoord.Coordinator.Engine;

/// <summary>The timing rules the engine applies. Validated by <see cref="CoordinatorOptions"/>.</summary>
internal sealed record EngineSettings(
    TimeSpan VoteTimeout,
    TimeSpan DefaultTransactionTimeout,
    TimeSpan RedriveInitialInterval,
    TimeSpan RedriveMaxInterval)
{
    public static EngineSettings From(CoordinatorOptions options) => new(
        options.VoteTimeout,
        options.DefaultTransactionTimeout,
        options.RedriveInitialInterval,
        options.RedriveMaxInterval);

    /// <summary>The next back-off interval: doubled, never above <see cref="RedriveMaxInterval"/>.</summary>
    public TimeSpan NextInterval(TimeSpan current)
    {
        var doubled = current.Ticks > RedriveMaxInterval.Ticks / 2 ? RedriveMaxInterval : current * 2;
        return doubled > RedriveMaxInterval ? RedriveMaxInterval : doubled;
    }
}
