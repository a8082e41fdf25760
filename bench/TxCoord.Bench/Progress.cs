using System.Diagnostics;

namespace TxCoord.Bench;

/// <summary>
/// The progress line. On a terminal one line is rewritten in place; when the output goes to a
/// file or a pipe (CI), a line is printed every few seconds instead.
/// </summary>
internal sealed class Progress(TextWriter output, bool interactive)
{
    private static readonly TimeSpan PipedInterval = TimeSpan.FromSeconds(5);

    private readonly Lock _gate = new();
    private int _width;
    private long _lastPrinted;

    public void Update(string line)
    {
        lock (_gate)
        {
            if (interactive)
            {
                output.Write('\r' + line.PadRight(_width));
                _width = line.Length;
            }
            else if (_lastPrinted == 0 || Stopwatch.GetElapsedTime(_lastPrinted) >= PipedInterval)
            {
                output.WriteLine("  " + line);
                _lastPrinted = Stopwatch.GetTimestamp();
            }

            output.Flush();
        }
    }

    /// <summary>Ends the progress line before other output.</summary>
    public void Clear()
    {
        lock (_gate)
        {
            if (interactive && _width > 0)
            {
                output.Write('\r' + new string(' ', _width) + '\r');
                output.Flush();
            }

            _width = 0;
            _lastPrinted = 0;
        }
    }
}
