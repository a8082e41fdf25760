using System.Globalization;
using System.Text;
using TxCoord.Contracts;
using TxCoord.Coordinator.Monitoring;

namespace TxCoord.Coordinator.Host.Dashboard;

/// <summary>
/// <c>GET /metrics</c> in the Prometheus text exposition format (version 0.0.4), written here
/// rather than through a metrics library: the values already live in <see cref="CoordinatorMonitor"/>,
/// the runtime and the participant readings, and each host (several per test process) keeps its own.
/// Counters count since the process started.
/// </summary>
internal sealed class PrometheusMetrics(CoordinatorMonitor monitor, DashboardQueries queries)
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    public async Task<string> RenderAsync(CancellationToken cancellationToken)
    {
        var (live, orphans, databases) = await queries.LiveForMetricsAsync(cancellationToken);
        var snapshot = monitor.Read();
        var text = new MetricsText();
        var coordinator = queries.CoordinatorId.Value;

        text.Metric("txcoord_info", "gauge", "The coordinator: its id.");
        text.Sample("txcoord_info", [("coordinator", coordinator)], 1);
        text.Metric("txcoord_start_time_seconds", "gauge", "When the coordinator process started (Unix time).");
        text.Sample("txcoord_start_time_seconds", [], snapshot.StartedAt.ToUnixTimeMilliseconds() / 1000.0);

        var protocols = Enum.GetValues<CommitProtocol>();
        text.Metric("txcoord_transactions_begun_total", "counter", "Transactions begun on this coordinator, by protocol.");
        foreach (var protocol in protocols)
        {
            text.Sample("txcoord_transactions_begun_total", [("protocol", Label(protocol))], Counts(snapshot, protocol)?.Begun ?? 0);
        }

        text.Metric("txcoord_transactions_total", "counter", "Transactions ended, by protocol and outcome.");
        foreach (var protocol in protocols)
        {
            text.Sample("txcoord_transactions_total", [("protocol", Label(protocol)), ("outcome", "committed")], Counts(snapshot, protocol)?.Committed ?? 0);
            text.Sample("txcoord_transactions_total", [("protocol", Label(protocol)), ("outcome", "aborted")], Counts(snapshot, protocol)?.Aborted ?? 0);
        }

        text.Metric("txcoord_transactions_recovered_total", "counter", "Transactions resumed from the journal at start, by protocol.");
        foreach (var protocol in protocols)
        {
            text.Sample("txcoord_transactions_recovered_total", [("protocol", Label(protocol))], Counts(snapshot, protocol)?.Recovered ?? 0);
        }

        text.Metric("txcoord_transactions_in_flight", "gauge", "Transactions held in memory, by protocol and status.");
        foreach (var group in live.GroupBy(l => (Label(l.State.Protocol), l.Status)).OrderBy(g => g.Key))
        {
            text.Sample("txcoord_transactions_in_flight", [("protocol", group.Key.Item1), ("status", group.Key.Status)], group.Count());
        }

        text.Metric("txcoord_transactions_in_doubt", "gauge", "Transactions whose participants hold prepared branches without a durable decision past the threshold, including prepared branches the coordinator does not hold.");
        text.Sample("txcoord_transactions_in_doubt", [], live.Count(l => l.Status == LiveStatus.InDoubt) + orphans);
        text.Metric("txcoord_transactions_stuck", "gauge", "Transactions decided commit whose phase 2 is not acknowledged past the threshold.");
        text.Sample("txcoord_transactions_stuck", [], live.Count(l => l.Status == LiveStatus.Stuck));
        text.Metric("txcoord_oldest_in_flight_age_seconds", "gauge", "Age of the oldest transaction in memory (0 when none).");
        text.Sample("txcoord_oldest_in_flight_age_seconds", [], live.Count == 0 ? 0 : live.Max(l => (snapshot.At - l.State.CreatedAt).TotalSeconds));

        text.Metric("txcoord_transaction_duration_seconds", "histogram", "Time from the commit request to the end, by protocol and outcome.");
        foreach (var histogram in snapshot.Durations)
        {
            text.Histogram("txcoord_transaction_duration_seconds", [("protocol", Label(histogram.Protocol)), ("outcome", histogram.Label)], histogram.Histogram);
        }

        text.Metric("txcoord_phase_duration_seconds", "histogram", "Time spent in each phase (preparing, deciding, committing, ...), by protocol.");
        foreach (var histogram in snapshot.Phases)
        {
            text.Histogram("txcoord_phase_duration_seconds", [("protocol", Label(histogram.Protocol)), ("phase", histogram.Label)], histogram.Histogram);
        }

        text.Metric("txcoord_journal_decision_write_seconds", "histogram", "Latency of the forced commit-decision writes to the journal.");
        text.Histogram("txcoord_journal_decision_write_seconds", [], snapshot.DecisionWrites);
        text.Metric("txcoord_journal_decision_write_failures_total", "counter", "Commit-decision writes that failed (each is retried).");
        text.Sample("txcoord_journal_decision_write_failures_total", [], snapshot.DecisionWriteFailures);

        text.Metric("txcoord_messages_sent_total", "counter", "Protocol messages sent, by type: each transaction's under its own type (CommitBranch), and batch messages under theirs (CommitBranches) besides.");
        foreach (var message in snapshot.Messages)
        {
            text.Sample("txcoord_messages_sent_total", [("type", message.MessageType)], message.Sent);
        }

        text.Metric("txcoord_message_send_failures_total", "counter", "Sends that failed, by type (a lost send is recovered by re-drives and outcome queries).");
        foreach (var message in snapshot.Messages)
        {
            text.Sample("txcoord_message_send_failures_total", [("type", message.MessageType)], message.Failed);
        }

        text.Metric("txcoord_messages_refused_total", "counter", "Protocol messages refused and dropped (changing nothing) because their sender is not who they claim or the protocol does not allow them, by type and reason.");
        foreach (var refused in snapshot.Refused)
        {
            text.Sample("txcoord_messages_refused_total", [("type", refused.MessageType), ("reason", refused.Reason)], refused.Count);
        }

        text.Metric("txcoord_messages_skipped_total", "counter", "Messages no handler takes, moved to the queue's _skipped queue, by queue.");
        foreach (var skipped in snapshot.Skipped)
        {
            text.Sample("txcoord_messages_skipped_total", [("queue", skipped.Queue)], skipped.Count);
        }

        text.Metric("txcoord_messages_retried_total", "counter", "Phase-2 messages sent again by re-drives, by protocol.");
        text.Metric("txcoord_redrives_total", "counter", "Phase-2 re-drive rounds, by protocol.");
        foreach (var protocol in protocols)
        {
            text.Sample("txcoord_messages_retried_total", [("protocol", Label(protocol))], Counts(snapshot, protocol)?.MessagesRetried ?? 0);
            text.Sample("txcoord_redrives_total", [("protocol", Label(protocol))], Counts(snapshot, protocol)?.Redrives ?? 0);
        }

        text.Metric("txcoord_participant_database_up", "gauge", "1 when the participant's database answered the last reading.");
        text.Metric("txcoord_participant_prepared_transactions", "gauge", "Prepared transactions in the participant's database (anyone's).");
        text.Metric("txcoord_participant_oldest_prepared_age_seconds", "gauge", "Age of the oldest prepared transaction in the participant's database (0 when none).");
        text.Metric("txcoord_participant_prepared_locks", "gauge", "Locks held by prepared transactions in the participant's database.");
        text.Metric("txcoord_participant_blocked_sessions", "gauge", "Sessions waiting for a lock a prepared transaction holds.");
        text.Metric("txcoord_participant_prepared_headroom", "gauge", "Free slots of max_prepared_transactions on the participant's server.");
        text.Metric("txcoord_participant_xmin_age", "gauge", "Transactions by which the oldest prepared transaction holds the xmin horizon back (0 when none).");
        foreach (var database in databases)
        {
            (string, string)[] labels = [("participant", database.Participant.Value)];
            text.Sample("txcoord_participant_database_up", labels, database.Reachable ? 1 : 0);
            if (!database.Reachable)
            {
                continue;
            }

            text.Sample("txcoord_participant_prepared_transactions", labels, database.PreparedHere);
            text.Sample("txcoord_participant_oldest_prepared_age_seconds", labels, database.OldestPreparedAge?.TotalSeconds ?? 0);
            text.Sample("txcoord_participant_prepared_locks", labels, database.LocksHeld);
            text.Sample("txcoord_participant_blocked_sessions", labels, database.BlockedSessions);
            text.Sample("txcoord_participant_prepared_headroom", labels, database.Headroom);
            text.Sample("txcoord_participant_xmin_age", labels, database.OldestXidAge ?? 0);
        }

        text.Metric("txcoord_oldest_prepared_age_seconds", "gauge", "Age of the oldest prepared transaction over every configured participant database (0 when none).");
        text.Sample("txcoord_oldest_prepared_age_seconds", [], databases.Where(d => d.Reachable).Select(d => d.OldestPreparedAge?.TotalSeconds ?? 0).DefaultIfEmpty(0).Max());
        return text.ToString();
    }

    private static ProtocolCounts? Counts(MonitorSnapshot snapshot, CommitProtocol protocol) =>
        snapshot.Protocols.FirstOrDefault(p => p.Protocol == protocol);

    private static string Label(CommitProtocol protocol) => CoordinatorMonitor.ProtocolLabel(protocol);

    /// <summary>The text format: HELP and TYPE once per metric, samples with escaped label values.</summary>
    private sealed class MetricsText
    {
        private readonly StringBuilder _text = new();

        public void Metric(string name, string type, string help) =>
            _text.Append("# HELP ").Append(name).Append(' ').Append(help.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal)).Append('\n')
                .Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');

        public void Sample(string name, IReadOnlyList<(string Name, string Value)> labels, double value)
        {
            _text.Append(name);
            AppendLabels(labels);
            _text.Append(' ').Append(Format(value)).Append('\n');
        }

        public void Histogram(string name, IReadOnlyList<(string Name, string Value)> labels, HistogramSnapshot histogram)
        {
            long cumulative = 0;
            for (var i = 0; i < LatencyHistogram.Bounds.Length; i++)
            {
                cumulative += histogram.Counts[i];
                Sample(name + "_bucket", [.. labels, ("le", Format(LatencyHistogram.Bounds[i]))], cumulative);
            }

            Sample(name + "_bucket", [.. labels, ("le", "+Inf")], histogram.Count);
            Sample(name + "_sum", labels, histogram.Sum);
            Sample(name + "_count", labels, histogram.Count);
        }

        public override string ToString() => _text.ToString();

        private void AppendLabels(IReadOnlyList<(string Name, string Value)> labels)
        {
            if (labels.Count == 0)
            {
                return;
            }

            _text.Append('{');
            for (var i = 0; i < labels.Count; i++)
            {
                if (i > 0)
                {
                    _text.Append(',');
                }

                _text.Append(labels[i].Name).Append("=\"").Append(Escape(labels[i].Value)).Append('"');
            }

            _text.Append('}');
        }

        private static string Escape(string value) =>
            value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

        private static string Format(double value) =>
            double.IsPositiveInfinity(value) ? "+Inf" : value.ToString("R", CultureInfo.InvariantCulture);
    }
}
