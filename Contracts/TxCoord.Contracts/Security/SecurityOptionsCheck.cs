namespace TxCoord.Contracts.Security;

/// <summary>Checks <see cref="TxCoordSecurityOptions"/>; each problem names the setting (<c>Security:...</c>) and says what to fix.</summary>
internal static class SecurityOptionsCheck
{
    /// <summary>
    /// Every problem with <paramref name="options"/> for a process that is <paramref name="ownRole"/>
    /// <paramref name="ownIds"/> (none for an initiator: it stamps no user of its own); empty when valid.
    /// </summary>
    public static List<string> Check(TxCoordSecurityOptions options, SenderRole? ownRole, IEnumerable<string> ownIds)
    {
        var failures = new List<string>();
        if (!Enum.IsDefined(options.SenderAuthentication))
        {
            failures.Add($"Security:SenderAuthentication '{options.SenderAuthentication}' is invalid: use Off or BrokerUser.");
        }

        CheckMap(failures, "Coordinators", options.Coordinators);
        CheckMap(failures, "Participants", options.Participants);
        if (options.VoteProofKey is { } key && key.Length < TxCoordSecurityOptions.MinVoteProofKeyLength)
        {
            failures.Add($"Security:VoteProofKey is {key.Length} characters long: use a random secret of at least {TxCoordSecurityOptions.MinVoteProofKeyLength}.");
        }

        foreach (var (participant, proofKey) in options.VoteProofKeys)
        {
            if (!BranchGid.IsValidName(participant))
            {
                failures.Add($"Security:VoteProofKeys names an invalid participant id '{participant}'.");
            }
            else if ((proofKey ?? "").Length < TxCoordSecurityOptions.MinVoteProofKeyLength)
            {
                failures.Add($"Security:VoteProofKeys:{participant} is {(proofKey ?? "").Length} characters long: use a random secret of at least {TxCoordSecurityOptions.MinVoteProofKeyLength}.");
            }
        }

        if (options.SenderAuthentication == SenderAuthentication.BrokerUser && ownRole is { } role)
        {
            var map = role == SenderRole.Coordinator ? options.Coordinators : options.Participants;
            var users = new HashSet<string>(StringComparer.Ordinal);
            foreach (var id in ownIds)
            {
                if (map.TryGetValue(id, out var user) && !string.IsNullOrEmpty(user))
                {
                    users.Add(user);
                }
                else
                {
                    failures.Add($"Security:{role}s:{id} is missing: with SenderAuthentication BrokerUser every {role.ToString().ToLowerInvariant()} needs the broker user it connects as.");
                }
            }

            if (users.Count > 1)
            {
                failures.Add($"Security:{role}s maps the {role.ToString().ToLowerInvariant()}s hosted on one bus to different broker users ({string.Join(", ", users)}): one bus has one connection, so one user.");
            }
        }

        return failures;
    }

    /// <summary>The broker user a process that is <paramref name="role"/> <paramref name="id"/> stamps on what it sends; null when authentication is off.</summary>
    public static string? OwnUser(TxCoordSecurityOptions options, SenderRole role, string id) =>
        options.SenderAuthentication != SenderAuthentication.BrokerUser ? null
            : (role == SenderRole.Coordinator ? options.Coordinators : options.Participants).TryGetValue(id, out var user) ? user : null;

    /// <summary>The key <paramref name="participant"/> signs its early-prepare votes with; null when none is configured.</summary>
    public static string? ProofKeyOf(TxCoordSecurityOptions options, string participant) =>
        options.VoteProofKeys.TryGetValue(participant, out var key) && !string.IsNullOrEmpty(key) ? key : options.VoteProofKey is { Length: > 0 } own ? own : null;

    /// <summary>Copies every setting of <paramref name="from"/> into <paramref name="to"/> (the options objects are built by their registrations).</summary>
    public static void Copy(TxCoordSecurityOptions from, TxCoordSecurityOptions to)
    {
        to.SenderAuthentication = from.SenderAuthentication;
        to.VoteProofKey = from.VoteProofKey;
        foreach (var (source, target) in new[] { (from.Coordinators, to.Coordinators), (from.Participants, to.Participants), (from.VoteProofKeys, to.VoteProofKeys) })
        {
            foreach (var (key, value) in source)
            {
                target[key] = value;
            }
        }
    }

    private static void CheckMap(List<string> failures, string name, IDictionary<string, string> map)
    {
        foreach (var (id, user) in map)
        {
            if (!BranchGid.IsValidName(id))
            {
                failures.Add($"Security:{name} names an invalid id '{id}': use 1 to {BranchGid.MaxNameLength} characters of letters, digits, '_', '.' or '-'.");
            }
            else if (string.IsNullOrWhiteSpace(user))
            {
                failures.Add($"Security:{name}:{id} is empty: give the RabbitMQ user that service connects as.");
            }
        }
    }
}
