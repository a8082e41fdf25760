namespace TxCoord.Contracts;

/// <summary>The global id of one distributed transaction.</summary>
public readonly record struct TransactionId(Guid Value)
{
    /// <summary>A new, time-ordered id.</summary>
    public static TransactionId New() => new(Guid.CreateVersion7());

    /// <summary>32 lower-case hex digits, no dashes: the form used inside GIDs.</summary>
    public override string ToString() => Value.ToString("N");

    public static bool TryParse(string? text, out TransactionId id)
    {
        if (Guid.TryParse(text, out var guid))
        {
            id = new TransactionId(guid);
            return true;
        }

        id = default;
        return false;
    }
}

/// <summary>
/// The name of one participant (a resource manager: one PostgreSQL database behind one service).
/// Letters, digits, '_', '.', '-'; 1 to 40 characters.
/// </summary>
public readonly record struct ParticipantId(string Value)
{
    public override string ToString() => Value;
}

/// <summary>
/// The name of one coordinator node. It is part of every GID, so recovery touches only the
/// prepared transactions of its own coordinator. Same alphabet and length as <see cref="ParticipantId"/>.
/// </summary>
public readonly record struct CoordinatorId(string Value)
{
    public override string ToString() => Value;
}
