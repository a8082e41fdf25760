using Serilog.Core;
using Serilog.Events;
using TxCoord.Contracts;

namespace TxCoord.Logging;

/// <summary>
/// The hosts' safety net against forged log lines: every string property of every event (the
/// libraries' own and those of MassTransit, ASP.NET Core and the application) gets its control
/// characters escaped by <see cref="UntrustedText.Escape"/> before any sink renders it, so a
/// newline that slipped past the boundary checks cannot start a fake line. The TxCoord libraries
/// escape at the boundary already; this catches what they do not see. Only strings are touched,
/// and only those that need it, so the cost is one scan per string property. One source, linked
/// into each executable that configures Serilog.
/// </summary>
internal sealed class EscapeControlCharactersEnricher : ILogEventEnricher
{
    public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory)
    {
        List<LogEventProperty>? escaped = null;
        foreach (var (name, value) in logEvent.Properties)
        {
            if (value is ScalarValue { Value: string text } && UntrustedText.NeedsEscape(text))
            {
                (escaped ??= []).Add(new LogEventProperty(name, new ScalarValue(UntrustedText.Escape(text))));
            }
        }

        // Not while enumerating: the properties are a dictionary.
        foreach (var property in escaped ?? [])
        {
            logEvent.AddOrUpdateProperty(property);
        }
    }
}
