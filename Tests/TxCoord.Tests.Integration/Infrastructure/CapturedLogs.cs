using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace TxCoord.Tests.Integration.Infrastructure;

/// <summary>One log entry a host wrote, with its structured properties.</summary>
internal sealed record CapturedLog(string Category, LogLevel Level, EventId EventId, string Message, IReadOnlyDictionary<string, object?> Properties);

/// <summary>A logger provider that keeps every entry, so a test can assert on what a host logged.</summary>
internal sealed class CapturedLogs : ILoggerProvider
{
    private readonly ConcurrentQueue<CapturedLog> _entries = new();

    public IReadOnlyList<CapturedLog> Entries => _entries.ToArray();

    /// <summary>The entries with <paramref name="eventId"/> whose TransactionId property is <paramref name="transactionId"/>.</summary>
    public IReadOnlyList<CapturedLog> For(int eventId, object transactionId) =>
        Entries.Where(e => e.EventId.Id == eventId && Equals(e.Properties.GetValueOrDefault("TransactionId")?.ToString(), transactionId.ToString())).ToList();

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _entries);

    public void Dispose()
    {
    }

    private sealed class Logger(string category, ConcurrentQueue<CapturedLog> entries) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var properties = state is IEnumerable<KeyValuePair<string, object?>> pairs
                ? pairs.GroupBy(p => p.Key).ToDictionary(g => g.Key, g => g.First().Value)
                : new Dictionary<string, object?>();
            entries.Enqueue(new CapturedLog(category, logLevel, eventId, formatter(state, exception), properties));
        }
    }
}
