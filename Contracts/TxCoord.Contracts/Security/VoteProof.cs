using System.Security.Cryptography;
using System.Text;

namespace TxCoord.Contracts.Security;

/// <summary>
/// The proof a participant attaches to an early-prepare Yes vote, which the initiator relays to
/// the coordinator: the broker can vouch only for the initiator, who relays it, not for the
/// participant. HMAC-SHA256, keyed per participant, over
/// <c>txcoord-prepared-v1|{transaction}|{participant}|{coordinator}|{workSequence}</c>, base64.
/// </summary>
internal static class VoteProof
{
    private const string Version = "txcoord-prepared-v1";

    public static string Compute(string key, TransactionId transaction, ParticipantId participant, CoordinatorId coordinator, int workSequence) =>
        Convert.ToBase64String(HMACSHA256.HashData(Encoding.UTF8.GetBytes(key), Canonical(transaction, participant, coordinator, workSequence)));

    /// <summary>True when <paramref name="proof"/> is the proof for exactly these values under <paramref name="key"/> (constant-time compare).</summary>
    public static bool Verify(string key, string? proof, TransactionId transaction, ParticipantId participant, CoordinatorId coordinator, int workSequence)
    {
        if (string.IsNullOrEmpty(proof) || proof.Length > 64)
        {
            return false;
        }

        var expected = HMACSHA256.HashData(Encoding.UTF8.GetBytes(key), Canonical(transaction, participant, coordinator, workSequence));
        var given = new byte[32];
        return Convert.TryFromBase64String(proof, given, out var written) && written == expected.Length
            && CryptographicOperations.FixedTimeEquals(expected, given);
    }

    private static byte[] Canonical(TransactionId transaction, ParticipantId participant, CoordinatorId coordinator, int workSequence) =>
        Encoding.UTF8.GetBytes($"{Version}|{transaction}|{participant.Value}|{coordinator.Value}|{workSequence.ToString(System.Globalization.CultureInfo.InvariantCulture)}");
}
