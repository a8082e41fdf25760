using System.Net;
using System.Net.Sockets;

namespace TxCoord.Coordinator.Host.Dashboard;

/// <summary>
/// Stops key guessing: after <see cref="DashboardSettings.FailedKeyLimit"/> wrong keys from one
/// client address within <see cref="DashboardSettings.FailedKeyWindow"/>, every request from
/// that address is refused for one window, the right key included (else guessing would go on,
/// only the hits would be hidden). Addresses are IPv4 addresses or IPv6 /64 networks (one host
/// usually holds a whole /64). The table holds at most <see cref="MaxTrackedAddresses"/>: when
/// it is full of addresses still inside their window, the failures of any further address count
/// together, and that shared count locks out every address not in the table, so many addresses
/// buy an attacker no more guesses. Behind a reverse proxy every client has the proxy's address,
/// and one guesser locks them all out: that is the price of not trusting forwarding headers.
/// In memory: a restart forgets it.
/// </summary>
internal sealed class FailedKeyLimiter
{
    public const int MaxTrackedAddresses = 10_000;

    private const string OverflowKey = "(addresses beyond the tracked ones)";

    /// <summary>A full table is swept for expired entries at most this often, so a flood of new addresses costs no sweep per request.</summary>
    private static readonly TimeSpan SweepInterval = TimeSpan.FromSeconds(1);

    private readonly Lock _gate = new();
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly int _limit;
    private readonly TimeSpan _window;
    private readonly int _capacity;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private Entry? _overflow;
    private DateTimeOffset _lastSweep = DateTimeOffset.MinValue;

    public FailedKeyLimiter(DashboardSettings settings, TimeProvider time, ILogger<FailedKeyLimiter> logger, int capacity = MaxTrackedAddresses)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _limit = settings.FailedKeyLimit;
        _window = settings.FailedKeyWindow;
        _capacity = capacity;
        _time = time;
        _logger = logger;
    }

    /// <summary>How many addresses the table holds now (for tests of its bound).</summary>
    internal int TrackedAddresses
    {
        get
        {
            lock (_gate)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>How much longer requests from <paramref name="address"/> are refused; null when they are not.</summary>
    public TimeSpan? LockedFor(IPAddress? address)
    {
        var now = _time.GetUtcNow();
        lock (_gate)
        {
            var entry = _entries.GetValueOrDefault(KeyOf(address)) ?? _overflow;
            return entry?.LockedUntil is { } until && until > now ? until - now : null;
        }
    }

    /// <summary>Counts a wrong key from <paramref name="address"/>; the failure that reaches the limit starts a lock-out, logged once.</summary>
    public void Failed(IPAddress? address)
    {
        var now = _time.GetUtcNow();
        var key = KeyOf(address);
        int failures;
        lock (_gate)
        {
            var entry = EntryFor(key, now, out key);
            if (entry.LockedUntil is { } until && until > now)
            {
                // Already locked out: refused before its key was looked at, so this does not happen
                // through the filter; counted nowhere, and the lock-out is not prolonged.
                return;
            }

            if (now - entry.WindowStart >= _window || entry.LockedUntil is not null)
            {
                entry.WindowStart = now;
                entry.Failures = 0;
                entry.LockedUntil = null;
            }

            entry.Failures++;
            if (entry.Failures < _limit)
            {
                return;
            }

            entry.LockedUntil = now + _window;
            failures = entry.Failures;
        }

        DashboardLog.KeyGuessingLockedOut(_logger, key, failures, _window, now + _window);
    }

    private Entry EntryFor(string key, DateTimeOffset now, out string countedAs)
    {
        countedAs = key;
        if (_entries.TryGetValue(key, out var entry))
        {
            return entry;
        }

        if (_entries.Count >= _capacity && now - _lastSweep >= SweepInterval)
        {
            _lastSweep = now;
            foreach (var (stale, _) in _entries.Where(e => !e.Value.ActiveAt(now, _window)).ToList())
            {
                _entries.Remove(stale);
            }

            if (_overflow is not null && !_overflow.ActiveAt(now, _window))
            {
                _overflow = null;
            }
        }

        if (_entries.Count >= _capacity)
        {
            countedAs = OverflowKey;
            return _overflow ??= new Entry { WindowStart = now };
        }

        entry = new Entry { WindowStart = now };
        _entries.Add(key, entry);
        return entry;
    }

    private static string KeyOf(IPAddress? address)
    {
        if (address is null)
        {
            return "(unknown address)";
        }

        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (address.AddressFamily != AddressFamily.InterNetworkV6 || IPAddress.IsLoopback(address))
        {
            return address.ToString();
        }

        var bytes = address.GetAddressBytes();
        Array.Clear(bytes, 8, 8);
        return new IPAddress(bytes) + "/64";
    }

    private sealed class Entry
    {
        public DateTimeOffset WindowStart { get; set; }

        public int Failures { get; set; }

        public DateTimeOffset? LockedUntil { get; set; }

        /// <summary>Whether forgetting the entry now would lose anything: a window still open or a lock-out still running.</summary>
        public bool ActiveAt(DateTimeOffset now, TimeSpan window) =>
            now - WindowStart < window || (LockedUntil is { } until && until > now);
    }
}
