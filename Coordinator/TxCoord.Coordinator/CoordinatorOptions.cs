using TxCoord.Contracts;

namespace TxCoord.Coordinator;

/// <summary>
/// Settings of one coordinator node. Validated when the host starts; an invalid value stops the
/// start with a message naming the setting.
/// </summary>
public sealed class CoordinatorOptions
{
    /// <summary>Default of <see cref="VoteTimeout"/>: 10 seconds.</summary>
    public static readonly TimeSpan DefaultVoteTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Default of <see cref="DefaultTransactionTimeout"/>: 60 seconds.</summary>
    public static readonly TimeSpan DefaultDefaultTransactionTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Default of <see cref="RedriveInitialInterval"/>: 1 second.</summary>
    public static readonly TimeSpan DefaultRedriveInitialInterval = TimeSpan.FromSeconds(1);

    /// <summary>Default of <see cref="RedriveMaxInterval"/>: 30 seconds.</summary>
    public static readonly TimeSpan DefaultRedriveMaxInterval = TimeSpan.FromSeconds(30);

    /// <summary>Default of <see cref="BatchWindow"/>: 10 milliseconds.</summary>
    public static readonly TimeSpan DefaultBatchWindow = TimeSpan.FromMilliseconds(10);

    /// <summary>The longest <see cref="BatchWindow"/> accepted: 1 second.</summary>
    public static readonly TimeSpan MaxBatchWindow = TimeSpan.FromSeconds(1);

    /// <summary>Default of <see cref="TickInterval"/>: 100 milliseconds.</summary>
    public static readonly TimeSpan DefaultTickInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// The node's name: part of its queue name (<c>txcoord-coordinator-&lt;id&gt;</c>), of every
    /// GID its participants prepare and of its journal rows. 1 to 40 characters of letters,
    /// digits, '_', '.' or '-'. Required, and must not change while transactions are unfinished.
    /// </summary>
    public string CoordinatorId { get; set; } = "";

    /// <summary>Npgsql connection string of the journal database. Required.</summary>
    public string JournalConnectionString { get; set; } = "";

    /// <summary>How long after the commit request every participant must have voted; past it the transaction aborts.</summary>
    public TimeSpan VoteTimeout { get; set; } = DefaultVoteTimeout;

    /// <summary>The transaction deadline when the commit request carries none.</summary>
    public TimeSpan DefaultTransactionTimeout { get; set; } = DefaultDefaultTransactionTimeout;

    /// <summary>
    /// First wait before phase 2 is re-driven to participants that have not acknowledged (and
    /// before a failed commit-decision write is retried); doubled at each attempt up to
    /// <see cref="RedriveMaxInterval"/>.
    /// </summary>
    public TimeSpan RedriveInitialInterval { get; set; } = DefaultRedriveInitialInterval;

    /// <summary>The longest wait between two re-drives (or decision-write retries).</summary>
    public TimeSpan RedriveMaxInterval { get; set; } = DefaultRedriveMaxInterval;

    /// <summary>How often deadlines and re-drives are checked.</summary>
    public TimeSpan TickInterval { get; set; } = DefaultTickInterval;

    /// <summary>
    /// Protocol-message batching: a participant gets about one PrepareBranch, one CommitBranch and
    /// (3PC) one PreCommitBranch message per window; those for it that come within the window after
    /// one was sent leave together at the window's end, as one PrepareBranches, CommitBranches or
    /// PreCommitBranches answered by one BranchesVoted, BranchesCommitted or BranchesPreCommitted.
    /// A message after a quiet window leaves at once, and a prepare or PreCommit waits only while an
    /// earlier transaction at that participant is undecided, so a client running one transaction
    /// after another never waits; at load a prepare may wait up to one window, and a prepared branch
    /// holds its locks up to one window longer before its commit. <see cref="TimeSpan.Zero"/> turns
    /// batching off. At most <see cref="MaxBatchWindow"/>.
    /// </summary>
    public TimeSpan BatchWindow { get; set; } = DefaultBatchWindow;

    /// <summary>
    /// Who may send protocol messages (docs/security.md): off by default; with
    /// <see cref="SenderAuthentication.BrokerUser"/>, votes and acknowledgements are accepted only
    /// from the broker user of the participant they name, and relayed early-prepare votes only with
    /// the participant's proof (<see cref="TxCoordSecurityOptions.VoteProofKeys"/>).
    /// </summary>
    public TxCoordSecurityOptions Security { get; } = new();
    /// The most participants one commit or rollback request may name (default
    /// <see cref="UntrustedText.DefaultMaxParticipants"/>). A request naming more is answered Aborted,
    /// with a reason that names this option, before any participant is contacted: one message must
    /// not make the coordinator address hundreds of queues (each send declares its queue).
    /// </summary>
    public int MaxParticipantsPerTransaction { get; set; } = UntrustedText.DefaultMaxParticipants;

    /// <summary>
    /// The most work messages a commit request may count for one participant (default
    /// <see cref="UntrustedText.DefaultMaxWorksPerParticipant"/>); above it the transaction aborts.
    /// </summary>
    public int MaxWorksPerParticipant { get; set; } = UntrustedText.DefaultMaxWorksPerParticipant;

    /// <summary>
    /// Reasons that come in messages (rollbacks, No votes) are cut to this many characters, with the
    /// marker <c>… (N chars cut)</c>, before they are stored, answered or logged; their control
    /// characters are escaped (default <see cref="UntrustedText.DefaultMaxReasonLength"/>, at least 100).
    /// </summary>
    public int MaxReasonLength { get; set; } = UntrustedText.DefaultMaxReasonLength;
}
