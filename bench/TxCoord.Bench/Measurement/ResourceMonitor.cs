using System.Collections.Immutable;
using System.Diagnostics;
using Dapper;
using Npgsql;
using TxCoord.Bench.Variants;

namespace TxCoord.Bench.Measurement;

/// <summary>PostgreSQL's own counters: commits per database and WAL activity (pg_stat_wal, PostgreSQL 14+).</summary>
internal sealed record PostgresCounters(ImmutableDictionary<string, long> Commits, long WalRecords, long WalBytes, long WalWrites, long WalSyncs)
{
    private const string CommitsSql = "SELECT datname AS Name, xact_commit AS Commits FROM pg_stat_database WHERE datname = ANY(@Names)";

    private const string WalSql = "SELECT wal_records AS Records, wal_bytes::bigint AS Bytes, wal_write AS Writes, wal_sync AS Syncs FROM pg_stat_wal";

    public static readonly ImmutableArray<string> Databases = [BenchEnvironment.BankA, BenchEnvironment.BankB, BenchEnvironment.Journal];

    public static async Task<PostgresCounters> ReadAsync(NpgsqlDataSource server, CancellationToken cancellationToken)
    {
        await using var connection = await server.OpenConnectionAsync(cancellationToken);
        var commits = await connection.QueryAsync<(string Name, long Commits)>(
            new CommandDefinition(CommitsSql, new { Names = Databases.ToArray() }, cancellationToken: cancellationToken));
        var wal = await connection.QuerySingleAsync<(long Records, long Bytes, long Writes, long Syncs)>(
            new CommandDefinition(WalSql, cancellationToken: cancellationToken));
        return new PostgresCounters(commits.ToImmutableDictionary(c => c.Name, c => c.Commits), wal.Records, wal.Bytes, wal.Writes, wal.Syncs);
    }

    public PostgresCounters Since(PostgresCounters before) => new(
        Commits.ToImmutableDictionary(kv => kv.Key, kv => kv.Value - before.Commits.GetValueOrDefault(kv.Key)),
        WalRecords - before.WalRecords, WalBytes - before.WalBytes, WalWrites - before.WalWrites, WalSyncs - before.WalSyncs);
}

/// <summary>Everything measured at one moment of a cell.</summary>
internal sealed record ResourceSnapshot(
    long Timestamp,
    long BenchTicks,
    ImmutableDictionary<string, long> RoleTicks,
    long PostgresTicks,
    long RabbitMqTicks,
    long MachineBusyTicks,
    long MachineTotalTicks,
    PostgresCounters Postgres,
    InProcessCounters.Snapshot InProcess);

/// <summary>Takes <see cref="ResourceSnapshot"/>s of the processes a variant runs on: this one, its services, PostgreSQL, RabbitMQ and the machine.</summary>
internal sealed class ResourceMonitor(BenchEnvironment environment, BenchDatabases databases, InProcessCounters counters)
{
    private readonly int? _postmaster = ProcessStats.PostmasterPid(environment.PostgreSqlDataDirectory);
    private readonly int? _rabbitMq = ProcessStats.RabbitMqPid(environment.RabbitMqMnesiaBase);

    /// <summary>False when the servers' processes could not be found (then their CPU reads 0).</summary>
    public bool SeesServers => _postmaster is not null && _rabbitMq is not null;

    public async Task<ResourceSnapshot> TakeAsync(IReadOnlyList<MeasuredProcess> processes, CancellationToken cancellationToken)
    {
        var postgres = await PostgresCounters.ReadAsync(databases.Server, cancellationToken);
        var roles = processes
            .GroupBy(p => p.Role)
            .ToImmutableDictionary(g => g.Key, g => g.Sum(p => ProcessStats.CpuTicks(p.ProcessId)));
        var (busy, total) = ProcessStats.MachineTicks();
        return new ResourceSnapshot(
            Stopwatch.GetTimestamp(),
            ProcessStats.CpuTicks(Environment.ProcessId),
            roles,
            _postmaster is { } pg ? ProcessStats.TreeCpuTicks(pg) : 0,
            _rabbitMq is { } rabbit ? ProcessStats.TreeCpuTicks(rabbit) : 0,
            busy,
            total,
            postgres,
            counters.Take());
    }
}

/// <summary>What one cell cost, per committed transfer and overall, between two snapshots.</summary>
internal sealed record CellResources
{
    /// <summary>CPU milliseconds per committed transfer by process group: bench, coordinator, participants, postgres, rabbitmq.</summary>
    public required ImmutableDictionary<string, double> CpuMsPerTransfer { get; init; }

    public required double CpuMsPerTransferTotal { get; init; }

    /// <summary>Share of the whole machine (all cores) busy during the cell, anyone's work included.</summary>
    public required double MachineBusyShare { get; init; }

    /// <summary>Machine CPU used by processes outside the benchmark's (other users of the shared machine), in cores.</summary>
    public required double OtherCores { get; init; }

    public required ImmutableDictionary<string, double> CommitsPerTransfer { get; init; }

    public required double WalSyncsPerTransfer { get; init; }

    public required double WalWritesPerTransfer { get; init; }

    public required double WalBytesPerTransfer { get; init; }

    /// <summary>Messages sent by this process per transfer, by type (B3e: all of them; B3/B4: the initiator's).</summary>
    public required ImmutableDictionary<string, double> MessagesSentPerTransfer { get; init; }

    public required double MessagesReceivedPerTransfer { get; init; }

    public required double SqlCommandsPerTransfer { get; init; }

    public static CellResources Between(ResourceSnapshot before, ResourceSnapshot after, long transfers)
    {
        var n = Math.Max(1, transfers);
        double PerTransferMs(long ticks) => ticks / ProcessStats.TicksPerSecond * 1000 / n;

        var cpu = ImmutableDictionary.CreateBuilder<string, double>();
        cpu["bench"] = PerTransferMs(after.BenchTicks - before.BenchTicks);
        foreach (var (role, ticks) in after.RoleTicks)
        {
            cpu[role] = PerTransferMs(ticks - before.RoleTicks.GetValueOrDefault(role));
        }

        cpu["postgres"] = PerTransferMs(after.PostgresTicks - before.PostgresTicks);
        cpu["rabbitmq"] = PerTransferMs(after.RabbitMqTicks - before.RabbitMqTicks);
        var ours = cpu.Values.Sum();

        var machineTotal = Math.Max(1, after.MachineTotalTicks - before.MachineTotalTicks);
        var machineBusy = after.MachineBusyTicks - before.MachineBusyTicks;
        var seconds = Stopwatch.GetElapsedTime(before.Timestamp, after.Timestamp).TotalSeconds;
        var oursTicks = ours * n / 1000 * ProcessStats.TicksPerSecond;
        var postgres = after.Postgres.Since(before.Postgres);
        var inProcess = after.InProcess.Since(before.InProcess);
        return new CellResources
        {
            CpuMsPerTransfer = cpu.ToImmutable(),
            CpuMsPerTransferTotal = ours,
            MachineBusyShare = (double)machineBusy / machineTotal,
            OtherCores = seconds > 0 ? Math.Max(0, (machineBusy - oursTicks) / ProcessStats.TicksPerSecond / seconds) : 0,
            CommitsPerTransfer = postgres.Commits.ToImmutableDictionary(kv => kv.Key, kv => (double)kv.Value / n),
            WalSyncsPerTransfer = (double)postgres.WalSyncs / n,
            WalWritesPerTransfer = (double)postgres.WalWrites / n,
            WalBytesPerTransfer = (double)postgres.WalBytes / n,
            MessagesSentPerTransfer = inProcess.SentByType.ToImmutableDictionary(kv => kv.Key, kv => (double)kv.Value / n),
            MessagesReceivedPerTransfer = (double)inProcess.Received / n,
            SqlCommandsPerTransfer = (double)inProcess.SqlCommands / n,
        };
    }
}
