namespace TxCoord.Coordinator.Engine;

/// <summary>The timing rules and input caps the engine applies. Validated by <see cref="CoordinatorOptions"/>.</summary>
internal sealed record EngineSettings(
    TimeSpan VoteTimeout,
    TimeSpan DefaultTransactionTimeout,
    TimeSpan RedriveInitialInterval,
    TimeSpan RedriveMaxInterval)
{
    /// <summary><see cref="CoordinatorOptions.MaxParticipantsPerTransaction"/>.</summary>
    public int MaxParticipants { get; init; } = Contracts.UntrustedText.DefaultMaxParticipants;

    /// <summary><see cref="CoordinatorOptions.MaxWorksPerParticipant"/>.</summary>
    public int MaxWorksPerParticipant { get; init; } = Contracts.UntrustedText.DefaultMaxWorksPerParticipant;

    public static EngineSettings From(CoordinatorOptions options) => new(
        options.VoteTimeout,
        options.DefaultTransactionTimeout,
        options.RedriveInitialInterval,
        options.RedriveMaxInterval)
    {
        MaxParticipants = options.MaxParticipantsPerTransaction,
        MaxWorksPerParticipant = options.MaxWorksPerParticipant,
    };

    /// <summary>The next back-off interval: doubled, never above <see cref="RedriveMaxInterval"/>.</summary>
    public TimeSpan NextInterval(TimeSpan current)
    {
        var doubled = current.Ticks > RedriveMaxInterval.Ticks / 2 ? RedriveMaxInterval : current * 2;
        return doubled > RedriveMaxInterval ? RedriveMaxInterval : doubled;
    }
}
