using System.Text.Json;
using TxCoord.Contracts;
using TxCoord.Coordinator.Recovery;

namespace TxCoord.Recovery;

/// <summary>The commands of txcoord-recover: parse, read the settings, run, print, and map the result to an exit code.</summary>
internal static class RecoverCommand
{
    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        try
        {
            var arguments = Arguments.Parse(args);
            return arguments.Command switch
            {
                "scan" => await ScanAsync(arguments, output, error, cancellationToken),
                "resolve" => await ResolveAsync(arguments, output, error, cancellationToken),
                "force" => await ForceAsync(arguments, output, error, cancellationToken),
                "verify" => await VerifyAsync(arguments, output, cancellationToken),
                _ => Help(output),
            };
        }
        catch (UsageException e)
        {
            await error.WriteLineAsync($"txcoord-recover: {e.Message}");
            await error.WriteLineAsync("(txcoord-recover help shows the commands, settings and exit codes)");
            return ExitCodes.Usage;
        }
        catch (RecoveryException e)
        {
            await error.WriteLineAsync($"txcoord-recover: error: {e.Message}");
            return ExitCodes.Error;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await error.WriteLineAsync("txcoord-recover: cancelled; what was done so far stays done, and running it again carries on.");
            return ExitCodes.Error;
        }
    }

    private static int Help(TextWriter output)
    {
        output.WriteLine(Usage.Text);
        return ExitCodes.NothingInDoubt;
    }

    private static async Task<int> ScanAsync(Arguments arguments, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        var settings = arguments.ReadSettings(needParticipants: true, needCoordinator: true);
        await using var session = await RecoverySession.OpenAsync(settings, TimeProvider.System, journalOnly: false, cancellationToken);
        if (arguments.Json)
        {
            using var json = new JsonObserver(Console.OpenStandardOutput(), "scan", settings.Coordinator.Value, dryRun: true, progress: null);
            var summary = await session.ScanAsync(json, cancellationToken);
            var code = ExitCode(summary);
            json.Finish(summary, code);
            return code;
        }

        var text = new TextObserver(output, error, resolving: false, dryRun: true, progress: null);
        var result = await session.ScanAsync(text, cancellationToken);
        text.Finish(result);
        return ExitCode(result);
    }

    private static async Task<int> ResolveAsync(Arguments arguments, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        var settings = arguments.ReadSettings(needParticipants: true, needCoordinator: true);
        var options = new ResolveOptions(arguments.DryRun, arguments.MinimumAge, arguments.Parallelism, arguments.LockTimeout);
        var progress = arguments.Progress ?? !Console.IsErrorRedirected ? new ProgressBar(error, TimeProvider.System) : null;
        var actor = Actor(arguments);
        await using var session = await RecoverySession.OpenAsync(settings, TimeProvider.System, journalOnly: false, cancellationToken);
        if (arguments.Json)
        {
            using var json = new JsonObserver(Console.OpenStandardOutput(), "resolve", settings.Coordinator.Value, arguments.DryRun, progress);
            var summary = await session.ResolveAsync(options, actor, json, cancellationToken);
            var code = ExitCode(summary);
            json.Finish(summary, code);
            return code;
        }

        var text = new TextObserver(output, error, resolving: true, arguments.DryRun, progress);
        var result = await session.ResolveAsync(options, actor, text, cancellationToken);
        text.Finish(result);
        return ExitCode(result);
    }

    private static async Task<int> ForceAsync(Arguments arguments, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        var commit = arguments.Positional[0] switch
        {
            "commit" => true,
            "abort" => false,
            var other => throw new UsageException($"force {other}: use force commit <gid> or force abort <gid>."),
        };
        if (!BranchGid.TryParse(arguments.Positional[1], out var gid))
        {
            throw new UsageException($"'{arguments.Positional[1]}' is not a TxCoord GID (txc:<coordinator>:<transaction>:<participant>); other prepared transactions are not this tool's to finish.");
        }

        var settings = arguments.ReadSettings(needParticipants: true, needCoordinator: true);
        if (gid.Coordinator != settings.Coordinator)
        {
            throw new UsageException($"{gid} belongs to coordinator {gid.Coordinator}, not {settings.Coordinator}: run with --coordinator {gid.Coordinator} and that coordinator's journal.");
        }

        if (string.IsNullOrWhiteSpace(arguments.Reason))
        {
            throw new UsageException("force needs --reason <text>: it is recorded in the journal with who forced what, and when.");
        }

        await using var session = await RecoverySession.OpenAsync(settings, TimeProvider.System, journalOnly: false, cancellationToken);
        var verdict = await session.VerdictAsync(gid, cancellationToken);
        var against = (commit, verdict) switch
        {
            (false, JournalVerdict.Commit) => "the journal decided COMMIT: its other participants have committed or will; rolling this branch back breaks the transaction's atomicity",
            (true, JournalVerdict.Aborted or JournalVerdict.None) => "the journal has no commit decision: its other participants have rolled back or will; committing this branch breaks the transaction's atomicity",
            (_, JournalVerdict.Inconsistent) => "the journal is inconsistent about this transaction (see verify)",
            _ => null,
        };
        if (!arguments.YesIKnow)
        {
            await error.WriteLineAsync($"txcoord-recover: refused: force {(commit ? "commit" : "abort")} {gid} is a heuristic decision (journal: {RecoveryPlanner.Describe(verdict)}).");
            if (against is not null)
            {
                await error.WriteLineAsync($"HEURISTIC HAZARD: {against}.");
            }

            await error.WriteLineAsync("Add --yes-i-know to do it; it will be recorded in the journal with --reason, who and when.");
            return ExitCodes.Usage;
        }

        RecoveryStep step;
        FinishOutcome outcome;
        try
        {
            (step, outcome) = await session.ForceAsync(gid, commit, arguments.Reason, Actor(arguments), arguments.EvenIfLive, arguments.LockTimeout, cancellationToken);
        }
        catch (ForceRefusedException e)
        {
            await error.WriteLineAsync($"txcoord-recover: refused: force abort {gid}: {e.Message}");
            return ExitCodes.Usage;
        }

        if (arguments.Json)
        {
            await using var json = new Utf8JsonWriter(Console.OpenStandardOutput(), new JsonWriterOptions { Indented = true });
            json.WriteStartObject();
            json.WriteString("command", "force");
            json.WriteString("gid", gid.Value);
            json.WriteString("action", commit ? "commit" : "abort");
            json.WriteString("journal", RecoveryPlanner.Describe(step.Verdict));
            json.WriteBoolean("againstJournal", against is not null);
            json.WriteString("outcome", outcome switch { FinishOutcome.Done => "done", FinishOutcome.Busy => "busy", _ => "already-finished" });
            json.WriteString("operator", Actor(arguments));
            json.WriteString("reason", arguments.Reason);
            json.WriteEndObject();
        }
        else
        {
            if (against is not null)
            {
                await output.WriteLineAsync($"HEURISTIC: {against}.");
            }
            else if (!commit && verdict == JournalVerdict.None)
            {
                await output.WriteLineAsync($"The journal had no decision for {gid.Transaction}: the abort is now its decision (recorded, forced), so every participant rolls back.");
            }

            await output.WriteLineAsync($"{(commit ? "COMMIT" : "ROLLBACK")} PREPARED {gid} at {step.Prepared.Participant}: " +
                $"{outcome switch { FinishOutcome.Done => "done", FinishOutcome.Busy => "another session was finishing it at that moment", _ => "it was no longer prepared" }}; recorded as heuristic by {Actor(arguments)} (journal said: {RecoveryPlanner.Describe(step.Verdict)}).");
        }

        return ExitCodes.NothingInDoubt;
    }

    private static async Task<int> VerifyAsync(Arguments arguments, TextWriter output, CancellationToken cancellationToken)
    {
        var settings = arguments.ReadSettings(needParticipants: false, needCoordinator: false);
        await using var session = await RecoverySession.OpenAsync(settings, TimeProvider.System, journalOnly: true, cancellationToken);
        var verification = await JournalVerifier.VerifyAsync(session.Journal, cancellationToken);
        var heuristics = await session.Journal.ReadHeuristicsAsync(cancellationToken);
        var owner = BranchGid.IsValidName(settings.Coordinator.Value) && settings.Coordinator.Value != "-"
            ? await session.FindOwnerAsync(cancellationToken)
            : null;
        var code = verification.IsConsistent ? ExitCodes.NothingInDoubt : ExitCodes.JournalDamaged;
        if (arguments.Json)
        {
            await using var json = new Utf8JsonWriter(Console.OpenStandardOutput(), new JsonWriterOptions { Indented = true });
            json.WriteStartObject();
            json.WriteString("command", "verify");
            json.WriteBoolean("consistent", verification.IsConsistent);
            json.WriteNumber("transactions", verification.Transactions);
            json.WriteNumber("events", verification.Events);
            json.WriteBoolean("truncated", verification.Truncated);
            json.WriteString("owner", owner?.ToString());
            json.WriteStartArray("problems");
            foreach (var problem in verification.Problems)
            {
                json.WriteStartObject();
                json.WriteString("check", problem.Check);
                json.WriteString("transactionId", JournalVerifier.Show(problem.TransactionId));
                json.WriteString("problem", problem.Problem);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteStartArray("heuristics");
            foreach (var h in heuristics)
            {
                json.WriteStartObject();
                json.WriteNumber("id", h.Id);
                json.WriteString("gid", h.Gid);
                json.WriteString("action", h.Action);
                json.WriteString("journalState", h.JournalState);
                json.WriteString("operator", h.Operator);
                json.WriteString("at", h.At);
                json.WriteString("reason", h.Reason);
                json.WriteString("outcome", h.Outcome);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteNumber("exitCode", code);
            json.WriteEndObject();
            return code;
        }

        await output.WriteLineAsync($"Journal: {Format.Number((int)Math.Min(int.MaxValue, verification.Transactions))} transactions, {Format.Number((int)Math.Min(int.MaxValue, verification.Events))} history events, read in one snapshot.");
        if (owner is not null)
        {
            await output.WriteLineAsync($"Coordinator {settings.Coordinator} is owned by {owner}.");
        }

        if (verification.IsConsistent)
        {
            await output.WriteLineAsync("Consistent: every row agrees with its history.");
        }
        else
        {
            await output.WriteLineAsync($"{verification.Problems.Count}{(verification.Truncated ? "+" : "")} problem(s); recovery will not presume abort for these transactions:");
            Format.Table(output, ["CHECK", "TRANSACTION", "PROBLEM"],
                [.. verification.Problems.Select(p => (IReadOnlyList<string>)[p.Check, JournalVerifier.Show(p.TransactionId), p.Problem])]);
        }

        if (heuristics.Count > 0)
        {
            await output.WriteLineAsync();
            await output.WriteLineAsync("Heuristic decisions forced by operators:");
            Format.Table(output, ["AT", "OPERATOR", "ACTION", "GID", "JOURNAL SAID", "OUTCOME", "REASON"],
                [.. heuristics.Select(h => (IReadOnlyList<string>)[h.At.ToString("u"), h.Operator, h.Action, h.Gid, h.JournalState, h.Outcome, h.Reason])]);
        }

        return code;
    }

    private static int ExitCode(RecoverySummary summary) =>
        summary.HasErrors ? ExitCodes.Error : summary.RemainingInDoubt > 0 ? ExitCodes.InDoubt : ExitCodes.NothingInDoubt;

    private static string Actor(Arguments arguments) =>
        arguments.Operator is { Length: > 0 } name ? name : $"{Environment.UserName}@{Environment.MachineName}";
}
