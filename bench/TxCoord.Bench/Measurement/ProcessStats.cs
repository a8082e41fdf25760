using System.Globalization;

namespace TxCoord.Bench.Measurement;

/// <summary>
/// CPU and memory of processes, read from <c>/proc</c> (Linux). CPU is in clock ticks
/// (<c>utime + stime</c>, 100 per second here); a process tree also counts its children,
/// live ones and those that exited (<c>cutime + cstime</c>), so PostgreSQL's backends are included.
/// </summary>
internal static class ProcessStats
{
    /// <summary>Clock ticks per second of <c>/proc/&lt;pid&gt;/stat</c> (USER_HZ, 100 on Linux).</summary>
    public const double TicksPerSecond = 100;

    /// <summary>CPU ticks of one process (0 when it is gone).</summary>
    public static long CpuTicks(int pid) => TryReadStat(pid, out var stat) ? stat.Own : 0;

    /// <summary>CPU ticks of a process, its exited children and its live children (one level: enough for PostgreSQL and RabbitMQ).</summary>
    public static long TreeCpuTicks(int pid)
    {
        if (!TryReadStat(pid, out var root))
        {
            return 0;
        }

        var total = root.Own + root.Children;
        foreach (var child in Children(pid))
        {
            if (TryReadStat(child, out var stat))
            {
                total += stat.Own;
            }
        }

        return total;
    }

    /// <summary>Resident set size in bytes (VmRSS), or null when the process is gone.</summary>
    public static long? ResidentBytes(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    var kb = line["VmRSS:".Length..].Trim().Split(' ')[0];
                    return long.Parse(kb, CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }

        return null;
    }

    /// <summary>Busy and total ticks of the whole machine (all cores), from <c>/proc/stat</c>.</summary>
    public static (long Busy, long Total) MachineTicks()
    {
        var line = File.ReadLines("/proc/stat").First();
        var values = line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Take(8)
            .Select(v => long.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        var total = values.Sum();
        var idle = values[3] + values[4]; // idle + iowait
        return (total - idle, total);
    }

    /// <summary>The postmaster of a data directory (first line of postmaster.pid).</summary>
    public static int? PostmasterPid(string dataDirectory)
    {
        try
        {
            var first = File.ReadLines(Path.Combine(dataDirectory, "postmaster.pid")).FirstOrDefault();
            return int.TryParse(first, NumberStyles.Integer, CultureInfo.InvariantCulture, out var pid) ? pid : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>The RabbitMQ node (beam.smp) whose environment names <paramref name="mnesiaBase"/>, as scripts/services.sh finds it.</summary>
    public static int? RabbitMqPid(string mnesiaBase)
    {
        var wanted = "RABBITMQ_MNESIA_BASE=" + mnesiaBase;
        foreach (var pid in AllPids())
        {
            try
            {
                if (File.ReadAllText($"/proc/{pid}/comm").Trim() != "beam.smp")
                {
                    continue;
                }

                if (File.ReadAllText($"/proc/{pid}/environ").Split('\0').Contains(wanted))
                {
                    return pid;
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Gone, or not ours to read.
            }
        }

        return null;
    }

    private static IEnumerable<int> AllPids() =>
        Directory.EnumerateDirectories("/proc")
            .Select(Path.GetFileName)
            .Select(name => int.TryParse(name, NumberStyles.Integer, CultureInfo.InvariantCulture, out var pid) ? pid : 0)
            .Where(pid => pid > 0);

    private static IEnumerable<int> Children(int parent)
    {
        foreach (var pid in AllPids())
        {
            if (TryReadStat(pid, out var stat) && stat.ParentPid == parent)
            {
                yield return pid;
            }
        }
    }

    private static bool TryReadStat(int pid, out (int ParentPid, long Own, long Children) stat)
    {
        stat = default;
        string text;
        try
        {
            text = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }

        // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
        var rest = text[(text.LastIndexOf(')') + 2)..].Split(' ');
        long Field(int number) => long.Parse(rest[number - 3], CultureInfo.InvariantCulture);
        stat = ((int)Field(4), Field(14) + Field(15), Field(16) + Field(17));
        return true;
    }
}
