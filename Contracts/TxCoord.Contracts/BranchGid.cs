using System.Diagnostics.CodeAnalysis;

namespace TxCoord.Contracts;

/// <summary>
/// The PostgreSQL global transaction id of one branch: <c>txc:&lt;coordinator&gt;:&lt;transaction&gt;:&lt;participant&gt;</c>.
/// GIDs are generated, never taken from input, and every one is checked against the
/// allow-list <c>[A-Za-z0-9_.:-]</c> and a length limit before it reaches SQL, where it
/// cannot be a parameter. The coordinator id in it lets recovery touch only its own GIDs;
/// the participant id keeps GIDs unique when two participants share one PostgreSQL server.
/// </summary>
public readonly record struct BranchGid
{
    public const string Prefix = "txc";

    /// <summary>Far below PostgreSQL's limit of 200 bytes.</summary>
    public const int MaxLength = 120;

    /// <summary>Maximum length of a coordinator or participant id.</summary>
    public const int MaxNameLength = 40;

    private BranchGid(string value, CoordinatorId coordinator, TransactionId transaction, ParticipantId participant)
    {
        Value = value;
        Coordinator = coordinator;
        Transaction = transaction;
        Participant = participant;
    }

    public string Value { get; }
    public CoordinatorId Coordinator { get; }
    public TransactionId Transaction { get; }
    public ParticipantId Participant { get; }

    public override string ToString() => Value;

    public static BranchGid Create(CoordinatorId coordinator, TransactionId transaction, ParticipantId participant)
    {
        EnsureValidName(coordinator.Value, "coordinator id");
        EnsureValidName(participant.Value, "participant id");
        var value = $"{Prefix}:{coordinator.Value}:{transaction}:{participant.Value}";
        EnsureSafe(value);
        return new BranchGid(value, coordinator, transaction, participant);
    }

    /// <summary>Parses a GID read back from PostgreSQL. False for anything TxCoord did not make.</summary>
    public static bool TryParse(string? text, out BranchGid gid)
    {
        gid = default;
        if (text is null || !IsSafe(text))
        {
            return false;
        }

        var parts = text.Split(':');
        if (parts.Length != 4 || parts[0] != Prefix || !IsValidName(parts[1]) || !IsValidName(parts[3])
            || parts[2].Length != 32 || !Guid.TryParseExact(parts[2], "N", out var guid))
        {
            return false;
        }

        gid = new BranchGid(text, new CoordinatorId(parts[1]), new TransactionId(guid), new ParticipantId(parts[3]));
        return true;
    }

    /// <summary>True when <paramref name="text"/> is short enough and uses only <c>[A-Za-z0-9_.:-]</c>.</summary>
    public static bool IsSafe([NotNullWhen(true)] string? text)
    {
        if (string.IsNullOrEmpty(text) || text.Length > MaxLength)
        {
            return false;
        }

        foreach (var c in text)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or ':' or '-'))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Throws unless <paramref name="text"/> passes <see cref="IsSafe"/>. Call before any GID goes into SQL.</summary>
    public static string EnsureSafe(string? text)
    {
        if (!IsSafe(text))
        {
            throw new ArgumentException(
                $"Refused GID: a GID must be 1 to {MaxLength} characters of [A-Za-z0-9_.:-].", nameof(text));
        }

        return text;
    }

    /// <summary>True when <paramref name="name"/> is a valid coordinator or participant id: 1 to 40 characters of [A-Za-z0-9_.-].</summary>
    public static bool IsValidName([NotNullWhen(true)] string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > MaxNameLength)
        {
            return false;
        }

        foreach (var c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '-'))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Throws with a message that says what to fix unless <paramref name="name"/> is a valid id.</summary>
    public static void EnsureValidName(string? name, string what)
    {
        if (!IsValidName(name))
        {
            throw new ArgumentException(
                $"Invalid {what} '{name}': use 1 to {MaxNameLength} characters of letters, digits, '_', '.' or '-'.");
        }
    }
}
