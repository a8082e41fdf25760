namespace TxCoord.Contracts.Security;

/// <summary>Which kind of party a protocol message claims to come from.</summary>
internal enum SenderRole
{
    Coordinator,
    Participant,
}

/// <summary>
/// The pure rules of sender authentication: whether a message claiming to come from one party may
/// be accepted, given the broker user RabbitMQ validated for it. No I/O; the bus filters call them.
/// </summary>
internal static class SenderRules
{
    /// <summary>
    /// Null when a message claiming to come from <paramref name="role"/> <paramref name="claimedId"/>
    /// and carrying the validated broker user <paramref name="brokerUser"/> (null: the message had no
    /// <c>user_id</c>) may be accepted; otherwise why not, for the log and the metric's reason label.
    /// With authentication off everything is accepted.
    /// </summary>
    public static SenderRefusal? Check(TxCoordSecurityOptions options, SenderRole role, string? claimedId, string? brokerUser)
    {
        if (options.SenderAuthentication == SenderAuthentication.Off)
        {
            return null;
        }

        if (string.IsNullOrEmpty(brokerUser))
        {
            return new SenderRefusal("no_user_id", "the message carries no user_id (sent by a bus without sender authentication, or forged)");
        }

        var map = role == SenderRole.Coordinator ? options.Coordinators : options.Participants;
        if (string.IsNullOrEmpty(claimedId) || !map.TryGetValue(claimedId, out var expected))
        {
            return new SenderRefusal("unknown_sender", $"no broker user is configured for {Describe(role)} '{claimedId}' (Security:{role}s)");
        }

        return string.Equals(expected, brokerUser, StringComparison.Ordinal)
            ? null
            : new SenderRefusal("wrong_user", $"{Describe(role)} '{claimedId}' is broker user '{expected}', not '{brokerUser}'");
    }

    /// <summary>
    /// Null when the message may come from any configured coordinator: used for answers that do not
    /// name their coordinator (<see cref="TransactionOutcomeReported"/>, <see cref="TransactionCompleted"/>).
    /// </summary>
    public static SenderRefusal? CheckAnyCoordinator(TxCoordSecurityOptions options, string? brokerUser)
    {
        if (options.SenderAuthentication == SenderAuthentication.Off)
        {
            return null;
        }

        if (string.IsNullOrEmpty(brokerUser))
        {
            return new SenderRefusal("no_user_id", "the message carries no user_id (sent by a bus without sender authentication, or forged)");
        }

        return options.Coordinators.Values.Contains(brokerUser, StringComparer.Ordinal)
            ? null
            : new SenderRefusal("wrong_user", $"broker user '{brokerUser}' is no configured coordinator's (Security:Coordinators)");
    }

    /// <summary>
    /// The rule for peers' termination messages, after the sender is authenticated: from round 1 on
    /// (3PC termination) only for a branch recorded as 3PC; and only from a participant the branch
    /// recorded at prepare. A branch with no record (still working, or unknown) may be asked only
    /// round 0 or a state question (it is then fenced), never told a decision or proposal.
    /// </summary>
    /// <param name="recordedProtocol">The protocol the branch recorded at prepare; null when there is no record.</param>
    /// <param name="recordedParticipants">The participants the branch recorded at prepare; null when there is no record.</param>
    /// <param name="isStateQuestion">True for <see cref="GetBranchState"/>, false for a proposal or a decision.</param>
    public static SenderRefusal? CheckPeer(
        string sender, int round, bool isStateQuestion, CommitProtocol? recordedProtocol, IReadOnlyCollection<ParticipantId>? recordedParticipants)
    {
        if (recordedParticipants is null)
        {
            return isStateQuestion
                ? null
                : new SenderRefusal("not_3pc", "the branch has no 3PC record here (not prepared under 3PC, or unknown): no termination round can decide it");
        }

        if (!recordedParticipants.Contains(new ParticipantId(sender)))
        {
            return new SenderRefusal("not_a_peer", $"'{sender}' is not among the participants the branch recorded at prepare");
        }

        if ((round > 0 || !isStateQuestion) && recordedProtocol != CommitProtocol.ThreePhase)
        {
            return new SenderRefusal("not_3pc", $"round {round} termination messages are for 3PC branches; this one is {recordedProtocol}");
        }

        return null;
    }

    private static string Describe(SenderRole role) => role == SenderRole.Coordinator ? "coordinator" : "participant";
}

/// <summary>Why a message was refused: <see cref="Reason"/> is the metric label, <see cref="Detail"/> the log text.</summary>
internal sealed record SenderRefusal(string Reason, string Detail);
