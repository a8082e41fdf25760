using Npgsql;
using TxCoord.Participants.Participant;
using TxCoord.Contracts;

namespace TxCoord.Participants;

/// <summary>
/// What a work handler gets: the branch's own connection and transaction. Write through them
/// (with Dapper, pass <see cref="Transaction"/>); never commit or roll back yourself: the
/// coordinator decides.
/// </summary>
public interface IBranchContext
{
    TransactionId TransactionId { get; }

    ParticipantId Participant { get; }

    NpgsqlConnection Connection { get; }

    NpgsqlTransaction Transaction { get; }

    /// <summary>The service provider of the participant's host, for the handler's own dependencies.</summary>
    IServiceProvider Services { get; }
}

/// <summary>Handles one kind of work message inside a branch.</summary>
public delegate Task<WorkResult> WorkHandler<in TMessage>(IBranchContext branch, TMessage message, CancellationToken cancellationToken)
    where TMessage : class;

/// <summary>Participant settings. Defaults are the documented constants.</summary>
public sealed class TxCoordParticipantOptions
{
    public static readonly TimeSpan DefaultBranchTimeout = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan DefaultDecisionTimeout = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan DefaultResolveInterval = TimeSpan.FromSeconds(2);
    public static readonly TimeSpan DefaultOutcomeQueryTimeout = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan DefaultTerminationTimeout = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan DefaultCoordinatorRetryMaxInterval = TimeSpan.FromSeconds(30);
    public const int DefaultConcurrentMessageLimit = 64;

    /// <summary>This participant's name: its queue is <c>txcoord-participant-&lt;id&gt;</c>. Required.</summary>
    public string ParticipantId { get; set; } = "";

    /// <summary>Npgsql connection string of the participant's database. Required.</summary>
    public string ConnectionString { get; set; } = "";

    /// <summary>A branch not prepared within this time after its first work (unless the work message says otherwise) rolls back.</summary>
    public TimeSpan BranchTimeout { get; set; } = DefaultBranchTimeout;

    /// <summary>A prepared branch that heard no decision for this long asks the coordinator.</summary>
    public TimeSpan DecisionTimeout { get; set; } = DefaultDecisionTimeout;

    /// <summary>How often prepared branches and branch timeouts are checked.</summary>
    public TimeSpan ResolveInterval { get; set; } = DefaultResolveInterval;

    /// <summary>How long to wait for the coordinator's answer when asking for an outcome.</summary>
    public TimeSpan OutcomeQueryTimeout { get; set; } = DefaultOutcomeQueryTimeout;

    /// <summary>
    /// Termination without the coordinator: how long to wait for peers' answers (each step of a 3PC
    /// termination round, or a 2PC question to the peers), and how long the next participant in line
    /// waits for a 3PC round leader before leading the next round itself.
    /// </summary>
    public TimeSpan TerminationTimeout { get; set; } = DefaultTerminationTimeout;

    /// <summary>
    /// While a coordinator does not answer outcome questions, it is asked again after
    /// <see cref="ResolveInterval"/>, then after twice that, and so on up to this interval; its
    /// branches stay prepared and are reported blocked meanwhile. It also bounds the wait before a
    /// prepared branch whose resolution failed (the coordinator faulted on the question, the
    /// database refused the commit) is tried again: from <see cref="ResolveInterval"/>, doubling.
    /// </summary>
    public TimeSpan CoordinatorRetryMaxInterval { get; set; } = DefaultCoordinatorRetryMaxInterval;

    /// <summary>
    /// The coordinator ids this participant serves. Empty (the default): every coordinator it learns
    /// of from a work message or finds in a branch of its database; a Prepare, PreCommit, Commit or
    /// Abort naming any other is refused (logged, nothing changed, no answer), so a message naming an
    /// invented coordinator never makes this participant create that coordinator's queue. Otherwise
    /// work and those messages from any other coordinator are refused, and prepared branches whose GID names another
    /// coordinator are left alone (never asked about, committed or rolled back): they belong to a
    /// coordinator this participant is not configured for, and its own recovery or an operator must
    /// finish them.
    /// </summary>
    public IList<string> Coordinators { get; } = new List<string>();

    /// <summary>True when this participant serves <paramref name="coordinator"/> (see <see cref="Coordinators"/>).</summary>
    internal bool Serves(CoordinatorId coordinator) => Coordinators.Count == 0 || Coordinators.Contains(coordinator.Value);

    /// <summary>
    /// The most participants a Prepare (or an early-prepare work) may name as the transaction's
    /// peers (default <see cref="UntrustedText.DefaultMaxParticipants"/>): one naming more is refused.
    /// </summary>
    public int MaxParticipantsPerTransaction { get; set; } = UntrustedText.DefaultMaxParticipants;

    /// <summary>
    /// The most work messages one branch takes (default <see cref="UntrustedText.DefaultMaxWorksPerParticipant"/>):
    /// a work numbered above it is refused.
    /// </summary>
    public int MaxWorksPerTransaction { get; set; } = UntrustedText.DefaultMaxWorksPerParticipant;

    /// <summary>
    /// Reasons that come in messages (an abort's) are cut to this many characters, with the marker
    /// <c>… (N chars cut)</c>, and their control characters escaped, before they are logged or stored
    /// (default <see cref="UntrustedText.DefaultMaxReasonLength"/>, at least 100).
    /// </summary>
    public int MaxReasonLength { get; set; } = UntrustedText.DefaultMaxReasonLength;

    /// <summary>How many messages the participant's endpoint handles at once.</summary>
    public int ConcurrentMessageLimit { get; set; } = DefaultConcurrentMessageLimit;

    /// <summary>
    /// Who may send protocol messages (docs/security.md): off by default; with
    /// <see cref="SenderAuthentication.BrokerUser"/>, the coordinator's messages are accepted only
    /// from the broker user mapped to the coordinator they name, and peers' termination messages only
    /// from a recorded peer's user. <see cref="TxCoordSecurityOptions.VoteProofKey"/> signs early-prepare votes.
    /// </summary>
    public TxCoordSecurityOptions Security { get; } = new();

    internal List<WorkHandlerRegistration> Handlers { get; } = [];

    /// <summary>Registers the handler of one work message type.</summary>
    public TxCoordParticipantOptions Handle<TMessage>(WorkHandler<TMessage> handler)
        where TMessage : class
    {
        ArgumentNullException.ThrowIfNull(handler);
        if (Handlers.Exists(h => h.MessageType == typeof(TMessage)))
        {
            throw new InvalidOperationException($"A handler for {typeof(TMessage).Name} is already registered for participant '{ParticipantId}'.");
        }

        Handlers.Add(new WorkHandlerRegistration<TMessage>(handler));
        return this;
    }

    internal void Validate()
    {
        BranchGid.EnsureValidName(ParticipantId, "participant id (TxCoord participant option ParticipantId)");
        if (string.IsNullOrWhiteSpace(ConnectionString))
        {
            throw new InvalidOperationException($"Participant '{ParticipantId}': ConnectionString is required (the Npgsql connection string of its database).");
        }

        try
        {
            _ = new NpgsqlConnectionStringBuilder(ConnectionString);
        }
        catch (ArgumentException e)
        {
            throw new InvalidOperationException($"Participant '{ParticipantId}': ConnectionString is not a valid Npgsql connection string: {e.Message}", e);
        }

        if (Handlers.Count == 0)
        {
            throw new InvalidOperationException($"Participant '{ParticipantId}' has no work handler: register one with options.Handle<TMessage>(...).");
        }

        foreach (var (name, value) in new[] { ("BranchTimeout", BranchTimeout), ("DecisionTimeout", DecisionTimeout), ("ResolveInterval", ResolveInterval), ("OutcomeQueryTimeout", OutcomeQueryTimeout), ("TerminationTimeout", TerminationTimeout) })
        {
            if (value <= TimeSpan.Zero)
            {
                throw new InvalidOperationException($"Participant '{ParticipantId}': {name} must be positive (was {value}).");
            }
        }

        if (CoordinatorRetryMaxInterval <= TimeSpan.Zero)
        {
            throw new InvalidOperationException($"Participant '{ParticipantId}': CoordinatorRetryMaxInterval must be positive (was {CoordinatorRetryMaxInterval}).");
        }

        foreach (var coordinator in Coordinators)
        {
            BranchGid.EnsureValidName(coordinator, $"coordinator id in participant '{ParticipantId}' option Coordinators");
        }

        foreach (var (name, value, minimum) in new[] { ("MaxParticipantsPerTransaction", MaxParticipantsPerTransaction, 1), ("MaxWorksPerTransaction", MaxWorksPerTransaction, 1), ("MaxReasonLength", MaxReasonLength, 100) })
        {
            if (value < minimum)
            {
                throw new InvalidOperationException($"Participant '{ParticipantId}': {name} must be at least {minimum} (was {value}).");
            }
        }

        if (ConcurrentMessageLimit < 1)
        {
            throw new InvalidOperationException($"Participant '{ParticipantId}': ConcurrentMessageLimit must be at least 1.");
        }

        if (Contracts.Security.SecurityOptionsCheck.Check(Security, Contracts.Security.SenderRole.Participant, [ParticipantId]) is { Count: > 0 } security)
        {
            throw new InvalidOperationException($"Participant '{ParticipantId}': {string.Join(" ", security)}");
        }
    }
}
