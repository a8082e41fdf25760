using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace TxCoord.Tests.Unit.Models;

/// <summary>What one spin check found: pan's verdict and how big the search was.</summary>
internal sealed record SpinResult(
    string Model,
    string Claim,
    int Errors,
    long StatesStored,
    long Transitions,
    int Depth,
    double Seconds,
    string Output)
{
    public override string ToString() =>
        $"{Model} {Claim}: errors {Errors}, {StatesStored} states stored, {Transitions} transitions, depth {Depth}, {Seconds.ToString("0.00", CultureInfo.InvariantCulture)} s";
}

/// <summary>
/// Runs <c>Coordinator/models/check.sh</c>, which runs <c>spin -a</c> on a Promela model,
/// compiles the verifier with gcc and runs it for one <c>ltl</c> property. The models, their
/// variants and the meaning of each property are in <c>Coordinator/models/README.md</c>.
/// </summary>
internal static partial class SpinCheck
{
    /// <summary>A spin run takes seconds; this only stops a wedged one from hanging the test run.</summary>
    private static readonly TimeSpan RunLimit = TimeSpan.FromMinutes(15);

    private static readonly Lazy<string> ModelsDirectory = new(FindModelsDirectory);

    /// <summary>A safety property (<c>[] p</c>): any reachable state that breaks it is an error.</summary>
    public static Task<SpinResult> SafetyAsync(string model, string claim, params string[] defines) =>
        RunAsync(model, claim, liveness: false, defines);

    /// <summary>A liveness property (<c>&lt;&gt; p</c>, checked for acceptance cycles under weak fairness).</summary>
    public static Task<SpinResult> LivenessAsync(string model, string claim, params string[] defines) =>
        RunAsync(model, claim, liveness: true, defines);

    private static async Task<SpinResult> RunAsync(string model, string claim, bool liveness, string[] defines)
    {
        RequireTool("spin", "./run.sh test installs it when missing; by hand: apt-get install -y spin");
        RequireTool("gcc", "spin's verifier is C compiled with gcc: apt-get install -y gcc libc6-dev");

        var script = Path.Combine(ModelsDirectory.Value, "check.sh");
        var start = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(script);
        if (liveness)
        {
            start.ArgumentList.Add("--liveness");
        }

        start.ArgumentList.Add(model);
        start.ArgumentList.Add(claim);
        foreach (var define in defines)
        {
            start.ArgumentList.Add(define);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start bash {script}");
        var output = new StringBuilder();
        var stdout = PumpAsync(process.StandardOutput, output);
        var stderr = PumpAsync(process.StandardError, output);
        using var limit = new CancellationTokenSource(RunLimit);
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"check.sh {model} {claim} {string.Join(' ', defines)} did not finish within {RunLimit}:\n{output}");
        }

        await Task.WhenAll(stdout, stderr);
        var text = output.ToString();
        var match = ResultLine().Match(text);
        if (process.ExitCode != 0 || !match.Success)
        {
            Assert.Fail($"check.sh {model} {claim} {string.Join(' ', defines)} failed (exit code {process.ExitCode}):\n{text}");
        }

        var result = new SpinResult(
            model,
            claim,
            int.Parse(match.Groups["errors"].Value, CultureInfo.InvariantCulture),
            long.Parse(match.Groups["states"].Value, CultureInfo.InvariantCulture),
            long.TryParse(match.Groups["transitions"].Value, CultureInfo.InvariantCulture, out var transitions) ? transitions : -1,
            int.TryParse(match.Groups["depth"].Value, CultureInfo.InvariantCulture, out var depth) ? depth : -1,
            double.TryParse(match.Groups["seconds"].Value, CultureInfo.InvariantCulture, out var seconds) ? seconds : -1,
            text);
        TestContext.Out.WriteLine(result.ToString());
        return result;
    }

    private static async Task PumpAsync(StreamReader reader, StringBuilder into)
    {
        while (await reader.ReadLineAsync() is { } line)
        {
            lock (into)
            {
                into.AppendLine(line);
            }
        }
    }

    private static void RequireTool(string name, string howToInstall)
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        foreach (var directory in path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            if (File.Exists(Path.Combine(directory, name)))
            {
                return;
            }
        }

        Assert.Fail($"'{name}' is not installed (not found on PATH), so the protocol models cannot be checked. {howToInstall}.");
    }

    private static string FindModelsDirectory()
    {
        for (var directory = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); directory is not null; directory = directory.Parent)
        {
            var candidate = Path.Combine(directory.FullName, "Coordinator", "models");
            if (File.Exists(Path.Combine(candidate, "check.sh")))
            {
                return candidate;
            }
        }

        throw new InvalidOperationException(
            $"Coordinator/models/check.sh not found above {TestContext.CurrentContext.TestDirectory}: the model checks run from a source checkout.");
    }

    [GeneratedRegex(@"^RESULT model=\S+ claim=\S+ errors=(?<errors>\d+) states=(?<states>\d+) transitions=(?<transitions>\S+) depth=(?<depth>\S+) seconds=(?<seconds>\S+) complete=yes\s*$", RegexOptions.Multiline)]
    private static partial Regex ResultLine();
}
