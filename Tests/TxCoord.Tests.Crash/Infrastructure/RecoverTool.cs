using System.Diagnostics;
using System.Text.Json;

namespace TxCoord.Tests.Crash.Infrastructure;

/// <summary>What one run of txcoord-recover did.</summary>
internal sealed record ToolRun(int ExitCode, string Output, string Error)
{
    public JsonDocument Json() => JsonDocument.Parse(Output);

    public override string ToString() => $"exit {ExitCode}{Environment.NewLine}--- stdout ---{Environment.NewLine}{Output}--- stderr ---{Environment.NewLine}{Error}";
}

/// <summary>Runs the built txcoord-recover as a child process, as an operator would.</summary>
internal static class RecoverTool
{
    public static string Program => Repository.Program("Coordinator/TxCoord.Recovery", "txcoord-recover");

    /// <summary>The settings of <paramref name="system"/>: its coordinator, journal and both banks.</summary>
    public static string[] Settings(BankSystem system) =>
    [
        "--coordinator", system.CoordinatorId,
        "--journal", system.JournalConnectionString,
        "--participant", $"{system.BankA}={system.BankAConnectionString}",
        "--participant", $"{system.BankB}={system.BankBConnectionString}",
    ];

    public static Task<ToolRun> RunAsync(IEnumerable<string> arguments, IReadOnlyDictionary<string, string>? environment = null, TimeSpan? timeout = null) =>
        RunProgramAsync(Program, "txcoord-recover", arguments, environment, timeout);

    /// <summary>Runs any built command-line program of the repository (<paramref name="name"/> is how the output names it), without the fault switches of the test process.</summary>
    public static async Task<ToolRun> RunProgramAsync(
        string program, string name, IEnumerable<string> arguments, IReadOnlyDictionary<string, string>? environment = null, TimeSpan? timeout = null)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(program);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var variable in new[] { "TXCOORD_CRASH_AT", "TXCOORD_CRASH_AFTER", "TXCOORD_BUS_FAULTS", "TXCOORD_DB_FAULTS" })
        {
            start.Environment.Remove(variable);
        }

        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start");
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var cancel = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(3));
        try
        {
            await process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{name} {string.Join(' ', arguments)} did not finish in time:{Environment.NewLine}{await output}{await error}");
        }

        var run = new ToolRun(process.ExitCode, await output, await error);
        var shown = run.ToString();
        const int maxShown = 6000;
        await TestContext.Out.WriteLineAsync(
            $"$ {name} {string.Join(' ', arguments.Where(a => !a.Contains('=', StringComparison.Ordinal) && !a.StartsWith("Host", StringComparison.Ordinal)))}{Environment.NewLine}" +
            (shown.Length > maxShown ? shown[..maxShown] + $"{Environment.NewLine}... ({shown.Length - maxShown:N0} more characters)" : shown));
        return run;
    }
}
