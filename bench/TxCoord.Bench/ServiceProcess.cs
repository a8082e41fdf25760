using System.Diagnostics;
using System.Runtime.InteropServices;

namespace TxCoord.Bench;

/// <summary>
/// A service the benchmark runs as its own process (<c>dotnet &lt;dll&gt;</c>, output to a log
/// file), as <c>./run.sh demo</c> runs them. Stopped with SIGTERM (a graceful host shutdown),
/// then SIGKILL.
/// </summary>
internal sealed partial class ServiceProcess : IAsyncDisposable
{
    private const int SigTerm = 15;

    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(15);

    private readonly Process _process;

    private ServiceProcess(string name, string logPath, Process process)
    {
        Name = name;
        LogPath = logPath;
        _process = process;
    }

    public string Name { get; }

    public string LogPath { get; }

    public int ProcessId => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>Starts <c>dotnet <paramref name="dll"/></c> with <paramref name="environment"/> added to ours.</summary>
    public static ServiceProcess Start(string name, string dll, IReadOnlyDictionary<string, string> environment, string logDirectory)
    {
        if (!File.Exists(dll))
        {
            throw new FileNotFoundException($"{name}: {dll} is missing; build the solution (./run.sh bench builds it)", dll);
        }

        Directory.CreateDirectory(logDirectory);
        var logPath = Path.Combine(logDirectory, $"bench-{name}.log");

        // exec through sh (then env) so the output goes straight to the log file and the pid is dotnet's own.
        var start = new ProcessStartInfo("/bin/sh")
        {
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(dll)!,
        };
        // Settings whose names are no shell identifiers (TxCoord__Security__Participants__bank-a) go
        // through env(1): sh would drop them from the environment it passes on.
        foreach (var argument in new[] { "-c", "log=\"$1\"; shift; exec \"$@\" >\"$log\" 2>&1 </dev/null", "sh", logPath, "env" })
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (key, value) in environment)
        {
            if (key.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
            {
                start.Environment[key] = value; // not on the command line, where ps shows it
            }
            else
            {
                start.ArgumentList.Add($"{key}={value}"); // the bench's own users and keys: visible in ps
            }
        }

        start.ArgumentList.Add("dotnet");
        start.ArgumentList.Add(dll);

        var process = Process.Start(start) ?? throw new InvalidOperationException($"{name}: could not start dotnet {dll}");
        return new ServiceProcess(name, logPath, process);
    }

    /// <summary>The last lines of the log, for error messages.</summary>
    public string LogTail(int lines = 20)
    {
        try
        {
            return string.Join(Environment.NewLine, File.ReadLines(LogPath).TakeLast(lines));
        }
        catch (IOException e)
        {
            return $"(cannot read {LogPath}: {e.Message})";
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _ = Kill(_process.Id, SigTerm);
            using var timeout = new CancellationTokenSource(StopTimeout);
            try
            {
                await _process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync(CancellationToken.None);
            }
        }

        _process.Dispose();
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
