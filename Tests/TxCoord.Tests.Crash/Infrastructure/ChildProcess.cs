using System.Diagnostics;
using System.Text;

namespace TxCoord.Tests.Crash.Infrastructure;

/// <summary>
/// A program under test running as a child process (<c>dotnet some.dll</c>), its output copied to a
/// log file and kept in memory for waiting on lines and for failure messages. Killing it is
/// SIGKILL: no orderly shutdown.
/// </summary>
internal sealed class ChildProcess : IAsyncDisposable
{
    /// <summary>The exit code of a process killed by SIGKILL, as .NET reports it (128 + 9).</summary>
    public const int KilledExitCode = 137;

    private readonly Process _process;
    private readonly StreamWriter _log;
    private readonly StringBuilder _output = new();
    private readonly Lock _gate = new();
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completed (and replaced) whenever a line arrives or the process exits: what waits wake on.</summary>
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ChildProcess(string name, Process process, StreamWriter log)
    {
        Name = name;
        _process = process;
        _log = log;
    }

    public string Name { get; }

    public int Id => _process.Id;

    public string LogPath { get; private init; } = "";

    public bool HasExited => _exited.Task.IsCompleted;

    /// <summary>Completes when the process next writes a line or exits.</summary>
    public Task NextOutput
    {
        get
        {
            lock (_gate)
            {
                return _changed.Task;
            }
        }
    }

    /// <summary>Completes with the exit code once the process has exited and its output is drained.</summary>
    public Task<int> Exited => _exited.Task;

    /// <summary>Everything the process wrote so far (stdout and stderr, interleaved as read).</summary>
    public string Output
    {
        get
        {
            lock (_gate)
            {
                return _output.ToString();
            }
        }
    }

    public static ChildProcess Start(string name, string program, IReadOnlyDictionary<string, string> environment, string logPath, params string[] arguments)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(logPath)!);
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(program)!,
        };
        start.ArgumentList.Add(program);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        // Faults are armed only where a test says so, never inherited.
        foreach (var variable in new[] { "TXCOORD_CRASH_AT", "TXCOORD_CRASH_AFTER", "TXCOORD_BUS_FAULTS", "TXCOORD_DB_FAULTS" })
        {
            start.Environment.Remove(variable);
        }

        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_gcServer"] = "0";
        foreach (var (key, value) in environment)
        {
            start.Environment[key] = value;
        }

        var log = new StreamWriter(logPath, append: true, Encoding.UTF8) { AutoFlush = true };
        log.WriteLine($"==== {DateTimeOffset.Now:HH:mm:ss.fff} starting {name}: dotnet {program} {string.Join(' ', arguments)}");
        foreach (var (key, value) in environment.Where(e => e.Key.StartsWith("TXCOORD_", StringComparison.Ordinal)))
        {
            log.WriteLine($"==== {key}={value}");
        }

        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        var child = new ChildProcess(name, process, log) { LogPath = logPath };
        process.OutputDataReceived += (_, e) => child.Append(e.Data);
        process.ErrorDataReceived += (_, e) => child.Append(e.Data);
        process.Exited += (_, _) => child.OnExited();
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    /// <summary>Waits until the process wrote a line containing <paramref name="text"/>; fails if it exits or the time runs out first.</summary>
    public async Task WaitForOutputAsync(string text, TimeSpan timeout, int occurrences = 1)
    {
        if (await WaitUntilAsync(p => p.CountOccurrences(text) >= occurrences, timeout))
        {
            return;
        }

        Assert.Fail(HasExited
            ? $"{Name} exited (code {_exited.Task.Result}) before writing '{text}'.{Environment.NewLine}{Tail()}"
            : $"{Name} did not write '{text}' within {timeout.TotalSeconds:0} s.{Environment.NewLine}{Tail()}");
    }

    /// <summary>
    /// Waits until <paramref name="condition"/> holds, re-checking it each time the process writes a
    /// line or exits (no polling). False when the process exited without it, or the time ran out.
    /// </summary>
    public async Task<bool> WaitUntilAsync(Func<ChildProcess, bool> condition, TimeSpan timeout)
    {
        using var limit = new CancellationTokenSource(timeout);
        while (true)
        {
            var changed = NextOutput;
            if (condition(this))
            {
                return true;
            }

            if (HasExited)
            {
                return false;
            }

            try
            {
                await changed.WaitAsync(limit.Token);
            }
            catch (OperationCanceledException) when (limit.IsCancellationRequested)
            {
                return condition(this);
            }
        }
    }

    public int CountOccurrences(string text)
    {
        var output = Output;
        var count = 0;
        for (var i = output.IndexOf(text, StringComparison.Ordinal); i >= 0; i = output.IndexOf(text, i + text.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }

    /// <summary>Waits for the process to end and returns its exit code; fails the test when it does not end in time.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        try
        {
            return await _exited.Task.WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"{Name} (pid {Id}) did not exit within {timeout.TotalSeconds:0} s.{Environment.NewLine}{Tail()}");
            throw;
        }
    }

    /// <summary>kill -9, and waits until it is gone.</summary>
    public async Task KillAsync()
    {
        if (!HasExited)
        {
            try
            {
                _process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Exited meanwhile.
            }
        }

        await WaitForExitAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary>The last lines of output, for failure messages.</summary>
    public string Tail(int lines = 40)
    {
        var all = Output.Split('\n');
        return $"---- last {Math.Min(lines, all.Length)} lines of {Name} (log {LogPath}) ----{Environment.NewLine}{string.Join('\n', all.TakeLast(lines))}";
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
        lock (_gate)
        {
            _log.Dispose();
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        TaskCompletionSource changed;
        lock (_gate)
        {
            _output.Append(line).Append('\n');
            try
            {
                _log.WriteLine(line);
            }
            catch (ObjectDisposedException)
            {
                // Output that arrives after disposal.
            }

            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
    }

    private void OnExited()
    {
        // Let the asynchronous readers drain what is left before reporting the exit.
        _process.WaitForExit();
        var code = _process.ExitCode;
        lock (_gate)
        {
            try
            {
                _log.WriteLine($"==== {DateTimeOffset.Now:HH:mm:ss.fff} {Name} exited with code {code}");
            }
            catch (ObjectDisposedException)
            {
            }
        }

        _exited.TrySetResult(code);
        TaskCompletionSource changed;
        lock (_gate)
        {
            changed = _changed;
        }

        changed.TrySetResult();
    }
}
