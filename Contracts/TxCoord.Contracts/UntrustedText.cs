using System.Text;

namespace TxCoord.Contracts;

/// <summary>
/// The limits every TxCoord party applies to what comes off the wire, and the one function that
/// makes untrusted text (reasons, ids, an operator's reason) safe to log, store and echo. Anything
/// that can publish on the broker can send a message, so a reason may be 20 MB long or carry a
/// newline followed by a fake log line; bounded and escaped at the boundary where it enters, it
/// can neither forge a log line nor fill the journal and the dashboard.
/// </summary>
public static class UntrustedText
{
    /// <summary>Default cap on the participants of one transaction (coordinator, initiator and participant options).</summary>
    public const int DefaultMaxParticipants = 32;

    /// <summary>Default cap on the work messages one participant gets in one transaction.</summary>
    public const int DefaultMaxWorksPerParticipant = 1_000;

    /// <summary>Default length, in characters, past which a reason is cut (not refused) where it is stored, echoed or logged.</summary>
    public const int DefaultMaxReasonLength = 2_000;

    /// <summary>How much of an invalid id is echoed into a reason or a log line: as much as a valid id can hold.</summary>
    public const int MaxEchoedIdLength = BranchGid.MaxNameLength;

    /// <summary>
    /// <paramref name="text"/> with control characters escaped and cut after <paramref name="maxLength"/>
    /// characters, followed then by the marker <c>… (N chars cut)</c> (N counts the original text).
    /// Escaped: C0 and C1 controls and DEL (<c>\n</c>, <c>\r</c>, <c>\t</c>, otherwise <c>\uXXXX</c>),
    /// the Unicode line and paragraph separators and the bidirectional controls that can make a
    /// line read differently from what it holds. Null stays null.
    /// </summary>
    public static string? Bound(string? text, int maxLength = DefaultMaxReasonLength)
    {
        if (text is null)
        {
            return null;
        }

        if (text.Length <= maxLength && !NeedsEscape(text))
        {
            return text;
        }

        var builder = new StringBuilder(Math.Min(text.Length, maxLength) + 32);
        var taken = 0;
        for (; taken < text.Length; taken++)
        {
            var c = text[taken];
            var escaped = Escape(c);
            var length = escaped?.Length ?? 1;
            if (builder.Length + length > maxLength)
            {
                break;
            }

            if (escaped is null)
            {
                builder.Append(c);
            }
            else
            {
                builder.Append(escaped);
            }
        }

        if (taken < text.Length)
        {
            if (taken > 0 && char.IsHighSurrogate(text[taken - 1]))
            {
                // Never half a character: the cut goes before the pair.
                taken--;
                builder.Length--;
            }

            builder.Append("… (").Append(text.Length - taken).Append(" chars cut)");
        }

        return builder.ToString();
    }

    /// <summary>
    /// <paramref name="text"/> with control characters escaped as <see cref="Bound"/> does, never cut.
    /// Idempotent (an escaped text has nothing left to escape), so it is safe to apply twice: at the
    /// boundary and again where a host writes its log.
    /// </summary>
    public static string? Escape(string? text) => text is null || !NeedsEscape(text) ? text : Bound(text, int.MaxValue);

    /// <summary>
    /// A coordinator or participant id as it may be echoed: a valid id unchanged, an invalid one
    /// escaped and cut after <see cref="MaxEchoedIdLength"/> characters (so it stays invalid).
    /// </summary>
    public static string Id(string? id) => Bound(id ?? "", MaxEchoedIdLength)!;

    /// <summary>True when <paramref name="text"/> holds a character that <see cref="Bound"/> escapes.</summary>
    public static bool NeedsEscape(string text)
    {
        foreach (var c in text)
        {
            if (Escape(c) is not null)
            {
                return true;
            }
        }

        return false;
    }

    private static string? Escape(char c) => c switch
    {
        '\n' => "\\n",
        '\r' => "\\r",
        '\t' => "\\t",
        // C0, DEL, C1; line/paragraph separators; bidi marks, embeddings, overrides and isolates; BOM.
        < ' ' or (>= '\u007f' and <= '\u009f') or '\u2028' or '\u2029' or '\u061c' or '\u200e' or '\u200f'
            or (>= '\u202a' and <= '\u202e') or (>= '\u2066' and <= '\u2069') or '\ufeff' => $"\\u{(int)c:x4}",
        _ => null,
    };
}
