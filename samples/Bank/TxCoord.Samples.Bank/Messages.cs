namespace TxCoord.Samples.Bank;

// Work messages of the bank participants. MassTransit names them on the wire by namespace and
// type name (urn:message:TxCoord.Samples.Bank:DebitAccount): never move or rename them.

/// <summary>Takes <see cref="Amount"/> out of an account, inside the transaction's branch. Refused when the balance is too low.</summary>
public sealed record DebitAccount
{
    /// <summary>The business id of the transfer; each transfer is applied at most once per account kind.</summary>
    public required Guid TransferId { get; init; }

    public required int AccountId { get; init; }

    /// <summary>Positive, in the smallest currency unit.</summary>
    public required long Amount { get; init; }
}

/// <summary>Puts <see cref="Amount"/> into an account, inside the transaction's branch.</summary>
public sealed record CreditAccount
{
    /// <summary>The business id of the transfer; each transfer is applied at most once per account kind.</summary>
    public required Guid TransferId { get; init; }

    public required int AccountId { get; init; }

    /// <summary>Positive, in the smallest currency unit.</summary>
    public required long Amount { get; init; }
}

/// <summary>A read-only readiness probe: succeeds once the participant is up and its bank schema exists.</summary>
public sealed record ProbeAccounts
{
}
