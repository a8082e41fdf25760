using System.Diagnostics;

namespace TxCoord.Tests.Crash.Infrastructure;

/// <summary>Runs <c>scripts/services.sh</c> for one mode of private servers, the way the crash tests need it.</summary>
internal static class ServicesScript
{
    /// <summary>
    /// Runs <c>scripts/services.sh ARGUMENTS</c> for <paramref name="mode"/> with
    /// <paramref name="environment"/> added, and returns its exit code and output (-1 on a timeout,
    /// after killing it).
    /// </summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(
        string mode, IReadOnlyDictionary<string, string>? environment, TimeSpan timeout, params string[] arguments)
    {
        var start = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = Repository.Root,
        };
        start.ArgumentList.Add(Repository.ServicesScript);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        // The run.sh of the other tests exports its own mode and run dir: never act on those.
        start.Environment["TXCOORD_MODE"] = mode;
        start.Environment.Remove("TXCOORD_RUN_DIR");
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException("bash did not start");
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            return (-1, $"timed out after {timeout}: {await stdout}{await stderr}");
        }

        return (process.ExitCode, await stdout + await stderr);
    }

    /// <summary>The <c>TXCOORD_*=value</c> lines of <c>scripts/services.sh env MODE</c>.</summary>
    public static Dictionary<string, string> ParseEnvironment(string output) =>
        output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => line.Split('=', 2))
            .Where(parts => parts.Length == 2 && parts[0].StartsWith("TXCOORD_", StringComparison.Ordinal))
            .ToDictionary(parts => parts[0], parts => parts[1]);
}
