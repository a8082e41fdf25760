using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting.Display;
using TxCoord.Coordinator.Host;
using TxCoord.Logging;

namespace TxCoord.Tests.Dashboard;

/// <summary>
/// The hosts' Serilog safety net (issue 16, seen 3): whatever string reaches a log event, its
/// control characters are escaped before the host's output template renders it, so one event is
/// one line. No servers needed.
/// </summary>
public sealed class LogForgingTests
{
    private const string Forged = "x\n[12:00:00.000 FTL] fake";

    [Test]
    public void StringPropertyWithANewline_RendersAsOneLine_WithTheHostsTemplate()
    {
        var escaped = Render(escape: true, "Transaction {TransactionId}: rollback requested: {Reason}", "t1", Forged);
        var raw = Render(escape: false, "Transaction {TransactionId}: rollback requested: {Reason}", "t1", Forged);

        Assert.Multiple(() =>
        {
            // Without the enricher the same event forges a second line: the check can fail.
            Assert.That(Lines(raw), Has.Length.EqualTo(2));
            Assert.That(Lines(escaped), Has.Length.EqualTo(1));
            Assert.That(escaped, Does.Contain(@"rollback requested: x\n[12:00:00.000 FTL] fake"));
        });
    }

    [Test]
    public void LineSeparatorsAndBidiOverrides_AreEscaped_AndOtherTextIsLeftAlone()
    {
        var rendered = Render(escape: true, "{A} {B} {C}", "a\u2028b\u2029c", "\u202eevil\u202c", "plain 'text' é ✓ \\ ok");

        Assert.That(rendered, Does.Contain(@"a\u2028b\u2029c \u202eevil\u202c plain 'text' é ✓ \ ok"));
    }

    private static string[] Lines(string text) => text.Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries);

    private static string Render(bool escape, string template, params object[] values)
    {
        var sink = new CollectingSink();
        var configuration = new LoggerConfiguration().MinimumLevel.Verbose();
        if (escape)
        {
            configuration = configuration.Enrich.With<EscapeControlCharactersEnricher>();
        }

        using (var logger = configuration.WriteTo.Sink(sink).CreateLogger())
        {
            logger.ForContext(Constants.SourceContextPropertyName, "test").Warning(template, values);
        }

        var formatter = new MessageTemplateTextFormatter(CoordinatorHostSetup.OutputTemplate, System.Globalization.CultureInfo.InvariantCulture);
        using var output = new StringWriter();
        foreach (var logEvent in sink.Events)
        {
            formatter.Format(logEvent, output);
        }

        return output.ToString();
    }

    private sealed class CollectingSink : ILogEventSink
    {
        public List<LogEvent> Events { get; } = [];

        public void Emit(LogEvent logEvent) => Events.Add(logEvent);
    }
}
