namespace TxCoord.Coordinator.Monitoring;

/// <summary>
/// A value read from somewhere slow (a database), served to every caller for
/// <see cref="MaxAge"/> and read again after: many dashboard viewers cost one read per period.
/// Concurrent callers share one read. While a new read runs, callers get the previous value at
/// once (a slow or unreachable source never slows the page); only the very first read is waited
/// for. A read that failed is not kept: the next caller tries again. A caller's cancellation only
/// stops its own wait.
/// </summary>
internal sealed class SharedReading<T>(Func<Task<T>> read, TimeSpan maxAge, TimeProvider time)
{
    private readonly Lock _lock = new();
    private Task<T>? _current;
    private Task<T>? _lastGood;
    private DateTimeOffset _startedAt = DateTimeOffset.MinValue;

    public TimeSpan MaxAge => maxAge;

    public Task<T> GetAsync(CancellationToken cancellationToken)
    {
        Task<T> reading;
        lock (_lock)
        {
            if (_current is { IsCompletedSuccessfully: true })
            {
                _lastGood = _current;
            }

            var now = time.GetUtcNow();
            if (_current is null || (_current.IsCompleted && (now - _startedAt >= maxAge || !_current.IsCompletedSuccessfully)))
            {
                _startedAt = now;
                _current = Task.Run(read, CancellationToken.None);
            }

            reading = _current.IsCompleted || _lastGood is null ? _current : _lastGood;
        }

        return reading.WaitAsync(cancellationToken);
    }
}
