using System.Globalization;
using TxCoord.Contracts;

namespace TxCoord.Samples.Bank.Transfers;

/// <summary>The driver's command line.</summary>
internal sealed record DemoArguments
{
    public const string Usage = """
        usage: TxCoord.Samples.Bank.Transfers [--transfers N] [--concurrency C] [--accounts N] [--refused-share S]
                                              [--protocol 2pc|3pc] [--early-prepare] [--seed N] [--timeout SECONDS]

          --transfers N        transfers to run (default 300)
          --concurrency C      transfers running at once (default 32)
          --accounts N         accounts seeded in each bank, 1,000 each (default 1000)
          --refused-share S    share of transfers larger than any balance, refused by bank A (default 0.15)
          --protocol P         commit protocol: 2pc (default) or 3pc
          --early-prepare      2PC: each bank prepares right after its work (no Prepare round at commit)
          --seed N             random seed of the accounts and amounts (default: a new one each run)
          --timeout SECONDS    how long to wait for the services to answer and for phase 2 to finish (default 60)

        settings (environment): ConnectionStrings__BankA, ConnectionStrings__BankB, ConnectionStrings__RabbitMq,
                                TxCoord__CoordinatorId
        exit codes: 0 every check passed, 1 a check failed or the run failed, 2 bad arguments or settings
        """;

    public int Transfers { get; init; } = TransferRunOptions.DefaultTransfers;

    public int Concurrency { get; init; } = TransferRunOptions.DefaultConcurrency;

    public int Accounts { get; init; } = TransferRunOptions.DefaultAccounts;

    public double RefusedShare { get; init; } = TransferRunOptions.DefaultRefusedShare;

    public CommitProtocol Protocol { get; init; } = CommitProtocol.TwoPhase;

    public bool EarlyPrepare { get; init; }

    public int? Seed { get; init; }

    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(60);

    public bool Help { get; init; }

    /// <summary>Parses the arguments; throws <see cref="SettingsException"/> saying which one is wrong.</summary>
    public static DemoArguments Parse(IReadOnlyList<string> args)
    {
        var result = new DemoArguments();
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

            if (name is "--help" or "-h" or "-?")
            {
                result = result with { Help = true };
                continue;
            }

            if (name == "--early-prepare" && inline is null)
            {
                result = result with { EarlyPrepare = true };
                continue;
            }

            string Value()
            {
                if (inline is not null)
                {
                    return inline;
                }

                if (i + 1 >= args.Count)
                {
                    throw new SettingsException($"{name} needs a value");
                }

                return args[++i];
            }

            result = name switch
            {
                "--transfers" => result with { Transfers = Int(name, Value(), 0) },
                "--concurrency" => result with { Concurrency = Int(name, Value(), 1) },
                "--accounts" => result with { Accounts = Int(name, Value(), 1) },
                "--refused-share" => result with { RefusedShare = Share(name, Value()) },
                "--protocol" => result with { Protocol = ParseProtocol(name, Value()) },
                "--seed" => result with { Seed = Int(name, Value(), int.MinValue) },
                "--timeout" => result with { Timeout = TimeSpan.FromSeconds(Int(name, Value(), 1)) },
                _ => throw new SettingsException($"unknown argument '{name}'"),
            };
        }

        if (result.EarlyPrepare && result.Protocol == CommitProtocol.ThreePhase)
        {
            throw new SettingsException("--early-prepare is for 2PC only; drop it or use --protocol 2pc");
        }

        return result;
    }

    private static int Int(string name, string text, int minimum) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= minimum
            ? value
            : throw new SettingsException($"{name} '{text}' is invalid: expected a whole number of at least {minimum}");

    private static double Share(string name, string text) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value is >= 0 and <= 1
            ? value
            : throw new SettingsException($"{name} '{text}' is invalid: expected a number from 0 to 1, e.g. 0.15");

    private static CommitProtocol ParseProtocol(string name, string text) => text.ToLowerInvariant() switch
    {
        "2pc" => CommitProtocol.TwoPhase,
        "3pc" => CommitProtocol.ThreePhase,
        _ => throw new SettingsException($"{name} '{text}' is invalid: expected 2pc or 3pc"),
    };
}
