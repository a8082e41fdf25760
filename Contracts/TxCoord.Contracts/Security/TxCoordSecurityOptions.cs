namespace TxCoord.Contracts;

/// <summary>How a TxCoord role decides who sent a protocol message.</summary>
public enum SenderAuthentication
{
    /// <summary>
    /// Nothing is checked (the default, and the behaviour before sender authentication existed):
    /// anything that can publish on the broker's virtual host can forge protocol messages. A
    /// warning says so at start.
    /// </summary>
    Off,

    /// <summary>
    /// Every TxCoord bus stamps the AMQP <c>user_id</c> property with its own broker user, which
    /// RabbitMQ checks against the connection's user, and every protocol message is accepted only
    /// when that user is the one mapped to the coordinator or participant the message claims to
    /// come from. Needs RabbitMQ: refused with the in-memory transport.
    /// </summary>
    BrokerUser,
}

/// <summary>
/// Who may send TxCoord's protocol messages (see docs/security.md). The same settings on every
/// role of a deployment (coordinator, participants, initiators); each process needs only the
/// entries of the parties it talks to, and a participant only its own vote proof key.
/// Configuration keys: <c>Security:SenderAuthentication</c>, <c>Security:Coordinators:&lt;id&gt;</c>,
/// <c>Security:Participants:&lt;id&gt;</c>, <c>Security:VoteProofKey</c>, <c>Security:VoteProofKeys:&lt;id&gt;</c>.
/// </summary>
public sealed class TxCoordSecurityOptions
{
    /// <summary>The shortest vote proof key accepted, in characters.</summary>
    public const int MinVoteProofKeyLength = 32;

    /// <summary>Off (the default) or BrokerUser.</summary>
    public SenderAuthentication SenderAuthentication { get; set; } = SenderAuthentication.Off;

    /// <summary>Coordinator id to the RabbitMQ user its service connects as.</summary>
    public IDictionary<string, string> Coordinators { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>Participant id to the RabbitMQ user its service connects as.</summary>
    public IDictionary<string, string> Participants { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>
    /// On a participant: the secret it signs its early-prepare votes with (at least
    /// <see cref="MinVoteProofKeyLength"/> characters), so that the coordinator can trust a vote the
    /// initiator relays. For a process hosting several participants, use <see cref="VoteProofKeys"/>.
    /// </summary>
    public string? VoteProofKey { get; set; }

    /// <summary>
    /// Participant id to its vote proof key. On the coordinator: the keys of every participant whose
    /// relayed early-prepare votes it may trust; a relayed vote without a valid proof is asked again
    /// with a PrepareBranch. On a participant: its own key (wins over <see cref="VoteProofKey"/>).
    /// </summary>
    public IDictionary<string, string> VoteProofKeys { get; } = new Dictionary<string, string>(StringComparer.Ordinal);
}
