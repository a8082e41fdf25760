using System.Globalization;
using System.Text.Json;
using TxCoord.Coordinator.Ownership;
using TxCoord.Coordinator.Recovery;
using TxCoord.Contracts;

namespace TxCoord.Recovery;

internal static class Format
{
    public static string Age(TimeSpan age) => age switch
    {
        _ when age < TimeSpan.FromSeconds(1) => "<1s",
        _ when age < TimeSpan.FromMinutes(1) => $"{(int)age.TotalSeconds}s",
        _ when age < TimeSpan.FromHours(1) => $"{(int)age.TotalMinutes}m {age.Seconds:00}s",
        _ when age < TimeSpan.FromDays(1) => $"{(int)age.TotalHours}h {age.Minutes:00}m",
        _ => $"{(int)age.TotalDays}d {age.Hours:00}h",
    };

    public static string Blocks(PreparedTransaction prepared)
    {
        var relations = prepared.Relations is { Length: > 0 } r ? r : "no relation";
        var waiting = prepared.Waiters > 0 ? $"; {prepared.Waiters} waiting" : "";
        return $"{prepared.Locks} locks: {relations}{waiting}";
    }

    public static string Action(RecoveryStep step) => step.Action switch
    {
        RecoveryAction.Commit => "COMMIT",
        RecoveryAction.Abort => "ROLLBACK",
        _ => "leave",
    };

    public static string Outcome(StepOutcome outcome) => outcome switch
    {
        StepOutcome.Done => "done",
        StepOutcome.AlreadyFinished => "already finished",
        StepOutcome.Busy => "busy: another session is finishing it",
        StepOutcome.Failed => "FAILED",
        _ => "",
    };

    public static string Number(int value) => value.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>Prints rows as columns separated by two spaces, each as wide as its widest cell.</summary>
    public static void Table(TextWriter output, IReadOnlyList<string> header, IReadOnlyList<IReadOnlyList<string>> rows)
    {
        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length))).ToArray();
        void Line(IReadOnlyList<string> cells) =>
            output.WriteLine(string.Join("  ", cells.Select((c, i) => i == cells.Count - 1 ? c : c.PadRight(widths[i]))).TrimEnd());
        Line(header);
        foreach (var row in rows)
        {
            Line(row);
        }
    }
}

/// <summary>A one-line progress bar on standard error, redrawn at most five times a second.</summary>
internal sealed class ProgressBar(TextWriter error, TimeProvider time)
{
    private readonly long _started = time.GetTimestamp();
    private long _lastDrawn;
    private int _total;
    private bool _drawn;

    public void Start(int total) => _total = total;

    public void Update(int done, bool force = false)
    {
        var now = time.GetTimestamp();
        if (!force && _drawn && time.GetElapsedTime(_lastDrawn, now) < TimeSpan.FromMilliseconds(200))
        {
            return;
        }

        _lastDrawn = now;
        _drawn = true;
        var total = Math.Max(_total, done);
        var share = total == 0 ? 1 : (double)done / total;
        const int width = 30;
        var filled = (int)Math.Round(share * width);
        var elapsed = time.GetElapsedTime(_started);
        var rate = elapsed.TotalSeconds > 0 ? done / elapsed.TotalSeconds : 0;
        error.Write(string.Create(CultureInfo.InvariantCulture,
            $"\r[{new string('#', filled)}{new string('-', width - filled)}] {done:N0}/{total:N0} {share:P0}  {rate:N0}/s  {Format.Age(elapsed)}   "));
        error.Flush();
    }

    /// <summary>Clears the line, so a line of ordinary output can be written.</summary>
    public void Clear()
    {
        if (_drawn)
        {
            error.Write("\r" + new string(' ', 78) + "\r");
        }
    }

    public void Finish(int done)
    {
        Update(done, force: true);
        error.WriteLine();
    }
}

/// <summary>Scan and resolve for people: tables for scan, one line per action for resolve, a summary.</summary>
internal sealed class TextObserver(TextWriter output, TextWriter error, bool resolving, bool dryRun, ProgressBar? progress) : IRecoveryObserver
{
    private const int ChunkSize = 200;
    private readonly List<RecoveryStep> _chunk = [];
    private readonly List<DecidedNotPrepared> _decided = [];
    private readonly TimeProvider _time = TimeProvider.System;
    private int _done;

    public void Started(int total, OwnershipHolder? liveCoordinator)
    {
        if (liveCoordinator is not null)
        {
            output.WriteLine($"Coordinator is running: {liveCoordinator}.");
            output.WriteLine(resolving
                ? "Only transactions the journal decided commit are finished; undecided ones may be in flight and are left to it."
                : "Undecided transactions may be in flight: resolve leaves them to it.");
        }

        output.WriteLine($"{Format.Number(total)} prepared transaction(s) of this coordinator in the configured databases.");
        progress?.Start(total);
    }

    public void Step(RecoveryStep step, StepOutcome outcome, string? error)
    {
        if (!resolving)
        {
            _chunk.Add(step);
            if (_chunk.Count >= ChunkSize)
            {
                FlushScan();
            }

            return;
        }

        var ours = step.Verdict is not (JournalVerdict.OtherCoordinator or JournalVerdict.UnknownGid);
        if (ours)
        {
            progress?.Update(++_done);
        }

        if (!ours && !dryRun)
        {
            return;
        }

        progress?.Clear();
        var verb = dryRun && step.Action != RecoveryAction.Leave ? "would " + Format.Action(step) : Format.Action(step);
        var what = error is null ? Format.Outcome(outcome) : $"FAILED: {error}";
        output.WriteLine($"{verb,-14} {step.Prepared.Gid}  at {step.Prepared.Participant}  {step.Why}{(what.Length > 0 ? "  -> " + what : "")}");
    }

    public void DatabaseFailed(ParticipantId participant, string message)
    {
        progress?.Clear();
        error.WriteLine($"txcoord-recover: participant {participant}: {message}");
    }

    public void DecidedNotPrepared(DecidedNotPrepared decision) => _decided.Add(decision);

    public void Finish(RecoverySummary summary)
    {
        if (progress is not null)
        {
            progress.Finish(_done);
        }

        if (!resolving)
        {
            FlushScan();
            if (_decided.Count > 0)
            {
                output.WriteLine();
                output.WriteLine("Decided commit in the journal, prepared nowhere any more (the coordinator closes them when it runs):");
                Format.Table(output, ["TRANSACTION", "DECIDED", "WAITING FOR ACK FROM", "NOT CONFIGURED HERE"],
                    [.. _decided.Select(d => (IReadOnlyList<string>)[
                        d.TransactionId.ToString(),
                        d.DecidedAt is { } at ? Format.Age(_time.GetUtcNow() - at) + " ago" : "?",
                        string.Join(", ", d.Unacknowledged),
                        d.NotConfigured.Count == 0 ? "-" : string.Join(", ", d.NotConfigured)])]);
            }
        }

        output.WriteLine();
        output.WriteLine(summary.Ours == 0 && summary.OthersPrepared == 0
            ? "Nothing prepared."
            : resolving && !dryRun
                ? $"Resolved: {summary.Committed} committed, {summary.Aborted} rolled back, {summary.AlreadyFinished} already finished, {summary.Left} left, {summary.Failed} failed; " +
                  $"{summary.RemainingInDoubt} of this coordinator still prepared; {summary.OthersPrepared} of others left alone."
                : $"{summary.Ours} of this coordinator in doubt, {summary.OthersPrepared} of others (left alone).");
    }

    private void FlushScan()
    {
        if (_chunk.Count == 0)
        {
            return;
        }

        var now = _time.GetUtcNow();
        Format.Table(output, ["GID", "PARTICIPANT", "AGE", "OWNER", "JOURNAL", "RESOLVE WOULD", "BLOCKS"],
            [.. _chunk.Select(s => (IReadOnlyList<string>)[
                s.Prepared.Gid,
                s.Prepared.Participant.ToString(),
                Format.Age(now - s.Prepared.PreparedAt),
                s.Prepared.Owner,
                RecoveryPlanner.Describe(s.Verdict),
                Format.Action(s),
                Format.Blocks(s.Prepared)])]);
        _chunk.Clear();
    }
}

/// <summary>Scan and resolve for scripts: one JSON document on standard output, written as the work goes.</summary>
internal sealed class JsonObserver : IRecoveryObserver, IDisposable
{
    private readonly Utf8JsonWriter _json;
    private readonly List<(ParticipantId Participant, string Error)> _errors = [];
    private readonly TimeProvider _time = TimeProvider.System;
    private readonly ProgressBar? _progress;
    private bool _inDecided;
    private int _done;

    public JsonObserver(Stream output, string command, string coordinator, bool dryRun, ProgressBar? progress)
    {
        _progress = progress;
        _json = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true });
        _json.WriteStartObject();
        _json.WriteString("command", command);
        _json.WriteString("coordinator", coordinator);
        _json.WriteBoolean("dryRun", dryRun);
    }

    public void Started(int total, OwnershipHolder? liveCoordinator)
    {
        if (liveCoordinator is null)
        {
            _json.WriteNull("liveCoordinator");
        }
        else
        {
            _json.WriteString("liveCoordinator", liveCoordinator.ToString());
        }

        _json.WriteNumber("total", total);
        _json.WriteStartArray("prepared");
        _progress?.Start(total);
    }

    public void Step(RecoveryStep step, StepOutcome outcome, string? error)
    {
        if (step.Verdict is not (JournalVerdict.OtherCoordinator or JournalVerdict.UnknownGid))
        {
            _progress?.Update(++_done);
        }

        var p = step.Prepared;
        _json.WriteStartObject();
        _json.WriteString("gid", p.Gid);
        _json.WriteString("participant", p.Participant.Value);
        _json.WriteString("database", p.Database);
        _json.WriteString("transactionId", p.Branch?.Transaction.ToString());
        _json.WriteString("preparedAt", p.PreparedAt);
        _json.WriteNumber("ageSeconds", Math.Round((_time.GetUtcNow() - p.PreparedAt).TotalSeconds, 1));
        _json.WriteString("owner", p.Owner);
        _json.WriteNumber("locks", p.Locks);
        _json.WriteString("relations", p.Relations);
        _json.WriteNumber("waiters", p.Waiters);
        _json.WriteString("journal", RecoveryPlanner.Describe(step.Verdict));
        _json.WriteString("action", step.Action.ToString().ToLowerInvariant());
        _json.WriteString("why", step.Why);
        _json.WriteString("outcome", outcome switch
        {
            StepOutcome.Done => "done",
            StepOutcome.AlreadyFinished => "already-finished",
            StepOutcome.Busy => "busy",
            StepOutcome.Failed => "failed",
            _ => "not-run",
        });
        _json.WriteString("error", error);
        _json.WriteEndObject();
    }

    public void DatabaseFailed(ParticipantId participant, string error) => _errors.Add((participant, error));

    public void DecidedNotPrepared(DecidedNotPrepared decision)
    {
        if (!_inDecided)
        {
            _json.WriteEndArray();
            _json.WriteStartArray("decidedNotPrepared");
            _inDecided = true;
        }

        _json.WriteStartObject();
        _json.WriteString("transactionId", decision.TransactionId.ToString());
        if (decision.DecidedAt is { } at)
        {
            _json.WriteString("decidedAt", at);
        }

        _json.WriteStartArray("waitingFor");
        foreach (var participant in decision.Unacknowledged)
        {
            _json.WriteStringValue(participant.Value);
        }

        _json.WriteEndArray();
        _json.WriteStartArray("notConfigured");
        foreach (var participant in decision.NotConfigured)
        {
            _json.WriteStringValue(participant.Value);
        }

        _json.WriteEndArray();
        _json.WriteEndObject();
    }

    public void Finish(RecoverySummary summary, int exitCode)
    {
        _progress?.Finish(_done);
        _json.WriteEndArray();
        if (!_inDecided)
        {
            _json.WriteStartArray("decidedNotPrepared");
            _json.WriteEndArray();
        }

        _json.WriteStartArray("databaseErrors");
        foreach (var (participant, error) in _errors)
        {
            _json.WriteStartObject();
            _json.WriteString("participant", participant.Value);
            _json.WriteString("error", error);
            _json.WriteEndObject();
        }

        _json.WriteEndArray();
        _json.WriteStartObject("summary");
        _json.WriteNumber("ours", summary.Ours);
        _json.WriteNumber("others", summary.OthersPrepared);
        _json.WriteNumber("committed", summary.Committed);
        _json.WriteNumber("rolledBack", summary.Aborted);
        _json.WriteNumber("alreadyFinished", summary.AlreadyFinished);
        _json.WriteNumber("left", summary.Left);
        _json.WriteNumber("failed", summary.Failed);
        _json.WriteNumber("remainingInDoubt", summary.RemainingInDoubt);
        _json.WriteEndObject();
        using (var process = System.Diagnostics.Process.GetCurrentProcess())
        {
            // What streaming a page at a time keeps the tool at, however many are in doubt.
            _json.WriteNumber("peakWorkingSetBytes", process.PeakWorkingSet64);
        }

        _json.WriteNumber("exitCode", exitCode);
        _json.WriteEndObject();
        _json.Flush();
    }

    public void Dispose() => _json.Dispose();
}
