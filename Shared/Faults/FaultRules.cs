using System.Globalization;

namespace TxCoord.Faults;

/// <summary>
/// One fault rule: <c>action:target[:count[:milliseconds]]</c>. <paramref name="Count"/> is how
/// many times it applies (null: every time); <paramref name="Delay"/> is used by the actions that wait.
/// </summary>
internal sealed record FaultRule(string Action, string Target, int? Count, TimeSpan Delay)
{
    public override string ToString() =>
        $"{Action}:{Target}:{(Count is { } n ? n.ToString(CultureInfo.InvariantCulture) : "*")}:{(long)Delay.TotalMilliseconds}";
}

/// <summary>
/// The fault rules of one environment variable, e.g.
/// <c>TXCOORD_BUS_FAULTS=drop:CommitBranch:1,delay:PrepareBranch:1:4000</c>. Rules are tried in
/// order; each applies until its count is used up. Thread-safe.
/// </summary>
internal sealed class FaultRuleSet
{
    private readonly FaultRule[] _rules;
    private readonly int[] _used;

    private FaultRuleSet(FaultRule[] rules)
    {
        _rules = rules;
        _used = new int[rules.Length];
    }

    public IReadOnlyList<FaultRule> Rules => _rules;

    /// <summary>
    /// Parses <paramref name="text"/> (the value of <paramref name="variable"/>): rules separated by
    /// ',' or ';'. Null when it is unset or blank.
    /// </summary>
    /// <param name="actions">The actions this kind of fault knows.</param>
    /// <param name="targets">The valid targets, or null when any identifier is allowed.</param>
    /// <param name="delayedActions">Actions that need the milliseconds field.</param>
    /// <exception cref="InvalidOperationException">A malformed rule; the message names it and says what is expected.</exception>
    public static FaultRuleSet? Parse(
        string variable, string? text, IReadOnlyCollection<string> actions, IReadOnlyCollection<string>? targets, IReadOnlyCollection<string> delayedActions)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }

        var rules = new List<FaultRule>();
        foreach (var part in text.Split([',', ';'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var fields = part.Split(':');
            var expected = $"expected action:target[:count[:milliseconds]] with action one of {string.Join(", ", actions)}"
                + (targets is null ? "" : $" and target one of {string.Join(", ", targets)}");
            if (fields.Length is < 2 or > 4 || !actions.Contains(fields[0]) || !IsIdentifier(fields[1]) || (targets is not null && !targets.Contains(fields[1])))
            {
                throw new InvalidOperationException($"{variable}: invalid fault rule '{part}': {expected}.");
            }

            int? count = 1;
            if (fields.Length > 2 && fields[2] != "*")
            {
                if (!int.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < 1)
                {
                    throw new InvalidOperationException($"{variable}: invalid count in fault rule '{part}': a positive whole number or '*'.");
                }

                count = n;
            }
            else if (fields.Length > 2)
            {
                count = null;
            }

            var delay = TimeSpan.Zero;
            if (fields.Length > 3)
            {
                if (!int.TryParse(fields[3], NumberStyles.None, CultureInfo.InvariantCulture, out var ms))
                {
                    throw new InvalidOperationException($"{variable}: invalid milliseconds in fault rule '{part}': a whole number.");
                }

                delay = TimeSpan.FromMilliseconds(ms);
            }
            else if (delayedActions.Contains(fields[0]))
            {
                throw new InvalidOperationException($"{variable}: fault rule '{part}' needs the milliseconds field: {fields[0]}:{fields[1]}:count:milliseconds.");
            }

            rules.Add(new FaultRule(fields[0], fields[1], count, delay));
        }

        return rules.Count == 0 ? null : new FaultRuleSet([.. rules]);
    }

    /// <summary>
    /// The first rule for <paramref name="target"/> (and, when given, <paramref name="action"/>)
    /// that is not used up, counting this use; null when none applies.
    /// </summary>
    public FaultRule? Take(string target, string? action = null)
    {
        for (var i = 0; i < _rules.Length; i++)
        {
            var rule = _rules[i];
            if (!string.Equals(rule.Target, target, StringComparison.Ordinal) || (action is not null && !string.Equals(rule.Action, action, StringComparison.Ordinal)))
            {
                continue;
            }

            if (rule.Count is not { } count)
            {
                return rule;
            }

            if (Interlocked.Increment(ref _used[i]) <= count)
            {
                return rule;
            }
        }

        return null;
    }

    /// <summary>One line on standard error, so a test's process log shows which fault struck.</summary>
    public static void Report(string kind, FaultRule rule, string detail)
    {
        try
        {
            Console.Error.WriteLine($"TXCOORD-FAULT {kind} {rule.Action} {rule.Target}: {detail}");
        }
        catch (IOException)
        {
            // A fault seam must not add faults of its own.
        }
    }

    private static bool IsIdentifier(string text) =>
        text.Length is > 0 and <= 100 && text.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');
}
