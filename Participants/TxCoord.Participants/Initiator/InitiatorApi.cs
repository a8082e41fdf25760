using TxCoord.Contracts;

namespace TxCoord.Participants;

/// <summary>Begins global transactions. Registered by <c>AddTxCoordInitiator</c>.</summary>
public interface ITransactionInitiator
{
    /// <summary>Begins a transaction. Nothing travels yet: the first work message enlists its participant.</summary>
    IGlobalTransaction Begin(TransactionOptions? options = null);

    /// <summary>
    /// Asks the coordinator what became of a transaction, e.g. after <see cref="CommitOutcome.InDoubt"/>.
    /// No answer in time, a coordinator fault or a failed send give InDoubt with the reason, never an exception.
    /// </summary>
    Task<CommitResult> GetOutcomeAsync(TransactionId transactionId, CancellationToken cancellationToken = default);
}

/// <summary>One global transaction, seen from the service that started it.</summary>
public interface IGlobalTransaction : IAsyncDisposable
{
    TransactionId Id { get; }

    CommitProtocol Protocol { get; }

    /// <summary>Every participant that was sent work, in order of first contact.</summary>
    IReadOnlyList<ParticipantId> Participants { get; }

    /// <summary>
    /// Sends one work message to a participant and waits for its answer. The participant runs
    /// its handler inside its branch; a refusal or a failure rolls that branch back, after which
    /// the transaction can only abort. A participant that does not answer in time gives a failed
    /// result (it is still enlisted, so commit or rollback reaches it).
    /// </summary>
    Task<WorkResult> SendAsync<TMessage>(string participant, TMessage message, CancellationToken cancellationToken = default)
        where TMessage : class;

    /// <summary>
    /// Sends one work message; with <paramref name="prepare"/> true the participant also prepares
    /// its branch right after the work (early prepare, 2PC only) and its answer is its Yes vote
    /// (<see cref="WorkResult.Prepared"/>), which <see cref="CommitAsync"/> hands to the coordinator
    /// instead of a Prepare round trip. Send it as the last work to that participant: a prepared
    /// branch takes no more work (sending more throws), and it holds its locks from the work until
    /// the decision, as any prepared branch does. Needs the transaction's participants declared at
    /// Begin (<see cref="TransactionOptions.Participants"/>): a prepared branch must know its peers.
    /// A participant that prepared but whose commit does not come within its decision timeout asks
    /// the coordinator, which then records the transaction aborted.
    /// </summary>
    /// <exception cref="InvalidOperationException">
    /// Early prepare asked for a 3PC transaction, or without the participants declared at Begin.
    /// </exception>
    Task<WorkResult> SendAsync<TMessage>(string participant, TMessage message, bool prepare, CancellationToken cancellationToken = default)
        where TMessage : class;

    /// <summary>
    /// Asks the coordinator to commit. Committed means durable in the coordinator's journal and
    /// certain to reach every participant; Aborted is definite; InDoubt means the answer did not
    /// arrive in time, the coordinator faulted (its journal down) or the request could not be sent
    /// for sure (the broker unreachable): <see cref="CommitResult.Reason"/> says which; ask again
    /// with <see cref="ITransactionInitiator.GetOutcomeAsync"/>. None of these throws. A cancellation
    /// of <paramref name="cancellationToken"/> throws <see cref="OperationCanceledException"/>, and
    /// once the request has left the transaction may still commit: <see cref="Id"/> stays valid for
    /// <see cref="ITransactionInitiator.GetOutcomeAsync"/>, and calling this again asks again.
    /// </summary>
    Task<CommitResult> CommitAsync(CancellationToken cancellationToken = default);

    /// <summary>Aborts the transaction. Before a commit was asked for, the result is always Aborted.</summary>
    Task<CommitResult> RollbackAsync(string? reason = null, CancellationToken cancellationToken = default);
}

/// <summary>Options for one transaction.</summary>
public sealed record TransactionOptions
{
    /// <summary>2PC (default) or 3PC.</summary>
    public CommitProtocol Protocol { get; init; } = CommitProtocol.TwoPhase;

    /// <summary>How long the whole transaction may take, work included; null takes the initiator's default.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>
    /// Every participant the transaction will send work to, declared up front; null (the default):
    /// participants enlist as work is sent. Needed for early prepare
    /// (<see cref="IGlobalTransaction.SendAsync{TMessage}(string, TMessage, bool, CancellationToken)"/>):
    /// a prepared branch must know its peers. When declared, work to any other participant is
    /// refused, and once a participant was asked to prepare early, committing with a declared
    /// participant that got no work rolls back.
    /// </summary>
    public IReadOnlyList<string>? Participants { get; init; }
}

/// <summary>A participant's answer to one work message.</summary>
public sealed record WorkResult(bool Succeeded, string? Reason = null)
{
    /// <summary>Early prepare: the participant prepared its branch right after the work (its Yes vote).</summary>
    public bool Prepared { get; init; }

    public static WorkResult Success { get; } = new(true);

    /// <summary>
    /// The work succeeded and wrote nothing (only reads). When every work of a branch says so, the
    /// branch votes ReadOnly at a 2PC prepare: PostgreSQL confirms that the transaction wrote nothing
    /// (no transaction id assigned), the branch records a durable read-only marker, commits and
    /// releases its connection, and gets no phase 2. A branch that did write despite the claim
    /// prepares as usual (and the participant logs a warning). 3PC and early prepare always prepare.
    /// </summary>
    public static WorkResult SuccessReadOnly { get; } = new(true) { ReadOnly = true };

    /// <summary>The work wrote nothing; see <see cref="SuccessReadOnly"/>.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>The work is refused (a business rule, e.g. insufficient funds): the branch rolls back.</summary>
    public static WorkResult Refuse(string reason) => new(false, reason);
}

/// <summary>The three answers a commit can have. "Definitely aborted" and "unknown" are different.</summary>
public enum CommitOutcome
{
    Committed = 0,
    Aborted = 1,
    InDoubt = 2,
}

/// <summary>The outcome of a commit or rollback.</summary>
public sealed record CommitResult(TransactionId TransactionId, CommitOutcome Outcome, string? Reason = null);

/// <summary>Initiator settings. Defaults are the documented constants.</summary>
public sealed class TxCoordInitiatorOptions
{
    public static readonly TimeSpan DefaultTransactionTimeout = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan DefaultWorkTimeout = TimeSpan.FromSeconds(15);
    public static readonly TimeSpan DefaultCommitTimeout = TimeSpan.FromSeconds(30);

    /// <summary>The coordinator node that decides this initiator's transactions. Required.</summary>
    public string CoordinatorId { get; set; } = "";

    /// <summary>How long a transaction may take, work included, before its branches roll back.</summary>
    public TimeSpan TransactionTimeout { get; set; } = DefaultTransactionTimeout;

    /// <summary>How long to wait for a participant's answer to one work message.</summary>
    public TimeSpan WorkTimeout { get; set; } = DefaultWorkTimeout;

    /// <summary>How long to wait for the coordinator's decision before reporting InDoubt.</summary>
    public TimeSpan CommitTimeout { get; set; } = DefaultCommitTimeout;

    /// <summary>
    /// Who may answer (docs/security.md): with <see cref="SenderAuthentication.BrokerUser"/>, a
    /// commit or outcome answer is accepted only from a configured coordinator's broker user
    /// (<see cref="TxCoordSecurityOptions.Coordinators"/>), and a work answer only from the broker user of the participant it names.
    /// </summary>
    public TxCoordSecurityOptions Security { get; } = new();
    /// The most participants one transaction may have (default <see cref="UntrustedText.DefaultMaxParticipants"/>,
    /// the coordinator's default too): declaring more at Begin, or sending work to one more, throws.
    /// Keep it at most the coordinator's <c>MaxParticipantsPerTransaction</c>, which aborts a commit naming more.
    /// </summary>
    public int MaxParticipantsPerTransaction { get; set; } = UntrustedText.DefaultMaxParticipants;

    /// <summary>
    /// The most work messages one transaction may send one participant (default
    /// <see cref="UntrustedText.DefaultMaxWorksPerParticipant"/>): one more throws. Keep it at most
    /// the coordinator's <c>MaxWorksPerParticipant</c> and the participants' <c>MaxWorksPerTransaction</c>.
    /// </summary>
    public int MaxWorksPerParticipant { get; set; } = UntrustedText.DefaultMaxWorksPerParticipant;
}
