using System.Collections.Immutable;
using System.Globalization;

namespace TxCoord.Bench;

/// <summary>A bad command-line argument; the message names it and says what is expected.</summary>
internal sealed class BenchArgumentException(string message) : Exception(message);

/// <summary>The benchmark's command line.</summary>
internal sealed record BenchArguments
{
    public const string Usage = """
        usage: ./run.sh bench [--quick] [--duration D] [--warmup D] [--concurrency 1,16,64]
                              [--variants B1,B1',B2,B2ts,B3,B3p,B3e,B3ep,B4] [--accounts N] [--out FILE]

          --quick            short cells (0.5 s warm-up, 2 s measured each): the whole run takes under two minutes
          --duration D       measured time of each cell (variant x concurrency); default 15s, e.g. 30s, 2m, 10m
          --warmup D         unmeasured run before each cell; default 3s (--quick: 0.5s)
          --concurrency L    comma-separated transfers in flight at once; default 1,16,64
          --variants L       comma-separated variants (default all but B3p and B3ep, early prepare; B1' may be written B1p)
          --accounts N       accounts per database, uniformly random (default 10000)
          --out FILE         where the JSON goes (default bench/results/bench-<UTC time>.json)

        A long memory run of the coordinator: ./run.sh bench --variants B3 --concurrency 64 --duration 10m
        environment: TXCOORD_PG, TXCOORD_RABBITMQ, TXCOORD_RUN_DIR (exported by ./run.sh bench)
        exit codes: 0 every check passed, 1 a check failed, 2 bad arguments or settings
        """;

    public static readonly ImmutableArray<string> AllVariants = ["B1", "B1'", "B2", "B2ts", "B3", "B3p", "B3e", "B3ep", "B4"];

    public bool Quick { get; init; }

    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(15);

    public TimeSpan Warmup { get; init; } = TimeSpan.FromSeconds(3);

    public ImmutableArray<int> Concurrency { get; init; } = [1, 16, 64];

    /// <summary>What runs without --variants: the variants of PERFORMANCE.md (B3p and B3ep, early prepare, only when asked for).</summary>
    public static readonly ImmutableArray<string> DefaultVariants = ["B1", "B1'", "B2", "B2ts", "B3", "B3e", "B4"];

    public ImmutableArray<string> Variants { get; init; } = DefaultVariants;

    public int Accounts { get; init; } = 10_000;

    public string? Out { get; init; }

    public bool Help { get; init; }

    /// <summary>Parses the arguments; throws <see cref="BenchArgumentException"/> naming the wrong one.</summary>
    public static BenchArguments Parse(IReadOnlyList<string> args)
    {
        var result = new BenchArguments();
        bool durationGiven = false, warmupGiven = false;
        for (var i = 0; i < args.Count; i++)
        {
            var name = args[i];
            string? inline = null;
            var equals = name.IndexOf('=', StringComparison.Ordinal);
            if (name.StartsWith("--", StringComparison.Ordinal) && equals > 0)
            {
                inline = name[(equals + 1)..];
                name = name[..equals];
            }

            string Value()
            {
                if (inline is not null)
                {
                    return inline;
                }

                if (i + 1 >= args.Count)
                {
                    throw new BenchArgumentException($"{name} needs a value");
                }

                return args[++i];
            }

            switch (name)
            {
                case "--help" or "-h" or "-?":
                    result = result with { Help = true };
                    break;
                case "--quick":
                    result = result with { Quick = true };
                    break;
                case "--duration":
                    result = result with { Duration = Time(name, Value(), TimeSpan.FromSeconds(1)) };
                    durationGiven = true;
                    break;
                case "--warmup":
                    result = result with { Warmup = Time(name, Value(), TimeSpan.Zero) };
                    warmupGiven = true;
                    break;
                case "--concurrency":
                    result = result with { Concurrency = Levels(name, Value()) };
                    break;
                case "--variants":
                    result = result with { Variants = VariantList(name, Value()) };
                    break;
                case "--accounts":
                    result = result with { Accounts = Int(name, Value(), 2, 10_000_000) };
                    break;
                case "--out":
                    result = result with { Out = Value() };
                    break;
                default:
                    throw new BenchArgumentException($"unknown argument '{args[i]}'");
            }
        }

        if (result.Quick)
        {
            result = result with
            {
                Duration = durationGiven ? result.Duration : TimeSpan.FromSeconds(2),
                Warmup = warmupGiven ? result.Warmup : TimeSpan.FromSeconds(0.5),
            };
        }

        return result;
    }

    /// <summary>"10m", "30s", "1.5s", "500ms" or a number of seconds.</summary>
    internal static TimeSpan Time(string name, string text, TimeSpan minimum)
    {
        var t = text.Trim().ToLowerInvariant();
        (string Number, double Scale) parts = t switch
        {
            _ when t.EndsWith("ms", StringComparison.Ordinal) => (t[..^2], 0.001),
            _ when t.EndsWith('s') => (t[..^1], 1),
            _ when t.EndsWith('m') => (t[..^1], 60),
            _ when t.EndsWith('h') => (t[..^1], 3600),
            _ => (t, 1),
        };
        if (!double.TryParse(parts.Number, NumberStyles.Float, CultureInfo.InvariantCulture, out var value)
            || double.IsNaN(value) || value * parts.Scale < minimum.TotalSeconds || value * parts.Scale > 24 * 3600)
        {
            throw new BenchArgumentException($"{name} '{text}' is not a time of at least {minimum.TotalSeconds:0.###} s such as 30s, 2m or 500ms");
        }

        return TimeSpan.FromSeconds(value * parts.Scale);
    }

    private static int Int(string name, string text, int minimum, int maximum) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= minimum && value <= maximum
            ? value
            : throw new BenchArgumentException($"{name} '{text}' must be a whole number from {minimum} to {maximum}");

    private static ImmutableArray<int> Levels(string name, string text)
    {
        var levels = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(level => Int(name, level, 1, 512))
            .Distinct()
            .ToImmutableArray();
        return levels.IsEmpty ? throw new BenchArgumentException($"{name} needs at least one level, e.g. 1,16,64") : levels;
    }

    private static ImmutableArray<string> VariantList(string name, string text)
    {
        var wanted = new HashSet<string>(StringComparer.Ordinal);
        foreach (var item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var id = item.Equals("B1p", StringComparison.OrdinalIgnoreCase) ? "B1'" : item;
            var known = AllVariants.FirstOrDefault(v => v.Equals(id, StringComparison.OrdinalIgnoreCase))
                ?? throw new BenchArgumentException($"{name}: unknown variant '{item}'; known: {string.Join(", ", AllVariants)}");
            wanted.Add(known);
        }

        return wanted.Count == 0
            ? throw new BenchArgumentException($"{name} needs at least one variant")
            : [.. AllVariants.Where(wanted.Contains)];
    }
}
