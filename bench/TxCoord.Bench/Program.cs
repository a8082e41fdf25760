// The side-by-side benchmark (PERFORMANCE.md): every variant against the same PostgreSQL and
// RabbitMQ, at each concurrency, with the ledgers checked after each. Run it with ./run.sh bench.
// Exit codes: 0 every check passed, 1 a check failed or the run failed, 2 bad arguments or settings.

using TxCoord.Bench;

BenchArguments arguments;
BenchEnvironment environment;
try
{
    arguments = BenchArguments.Parse(args);
    if (arguments.Help)
    {
        Console.WriteLine(BenchArguments.Usage);
        return 0;
    }

    environment = BenchEnvironment.Read();
}
catch (BenchArgumentException e)
{
    await Console.Error.WriteLineAsync($"bench: {e.Message}");
    await Console.Error.WriteLineAsync();
    await Console.Error.WriteLineAsync(BenchArguments.Usage);
    return 2;
}

using var interrupted = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    // The first Ctrl-C stops the run cleanly (services stopped, nothing left prepared); the second kills it.
    if (!interrupted.IsCancellationRequested)
    {
        e.Cancel = true;
        interrupted.Cancel();
    }
};

try
{
    return await new BenchRun(arguments, environment, Console.Out).RunAsync(interrupted.Token);
}
catch (OperationCanceledException) when (interrupted.IsCancellationRequested)
{
    await Console.Error.WriteLineAsync("bench: interrupted");
    return 1;
}
