// The baseline users compare TxCoord with: TransactionScope over two Npgsql connections, which
// commits across two databases on Linux with two-phase commit but no durable log. Runs transfers
// (debit in database A, credit in database B) from SCOPE_CONCURRENCY workers until it is killed,
// printing "committed N" every 25 transfers. With SCOPE_DIE_IN_COMMIT set, it kills itself (SIGKILL)
// in the commit of the transfer after that many, once both databases have prepared.
using System.Diagnostics;
using System.Globalization;
using System.Transactions;
using Npgsql;

var bankA = Environment.GetEnvironmentVariable("SCOPE_BANK_A") ?? throw new InvalidOperationException("set SCOPE_BANK_A");
var bankB = Environment.GetEnvironmentVariable("SCOPE_BANK_B") ?? throw new InvalidOperationException("set SCOPE_BANK_B");
var concurrency = int.Parse(Environment.GetEnvironmentVariable("SCOPE_CONCURRENCY") ?? "16", CultureInfo.InvariantCulture);
var dieAfter = int.TryParse(Environment.GetEnvironmentVariable("SCOPE_DIE_IN_COMMIT"), CultureInfo.InvariantCulture, out var n) ? n : -1;
var committed = 0;

await Task.WhenAll(Enumerable.Range(0, concurrency).Select(worker => Task.Run(async () =>
{
    var random = new Random(worker);
    while (true)
    {
        var from = random.Next(1, 101);
        var to = random.Next(1, 101);
        try
        {
            using (var scope = new TransactionScope(TransactionScopeAsyncFlowOption.Enabled))
            {
                await using (var a = new NpgsqlConnection(bankA))
                {
                    await a.OpenAsync();
                    await using var debit = new NpgsqlCommand("UPDATE accounts SET balance = balance - 1 WHERE id = $1 AND balance >= 1", a) { Parameters = { new() { Value = from } } };
                    await debit.ExecuteNonQueryAsync();
                }

                await using (var b = new NpgsqlConnection(bankB))
                {
                    await b.OpenAsync();
                    await using var credit = new NpgsqlCommand("UPDATE accounts SET balance = balance + 1 WHERE id = $1", b) { Parameters = { new() { Value = to } } };
                    await credit.ExecuteNonQueryAsync();
                }

                if (dieAfter >= 0 && Volatile.Read(ref committed) >= dieAfter)
                {
                    Transaction.Current!.EnlistVolatile(new DieInPrepare(bankA, bankB), EnlistmentOptions.None);
                }

                scope.Complete();
            }

            if (Interlocked.Increment(ref committed) % 25 == 0)
            {
                Console.WriteLine($"committed {committed}");
            }
        }
        catch (Exception e) when (e is NpgsqlException or TransactionException)
        {
            // Contention and the like: try the next one.
        }
    }
})));

/// <summary>
/// Enlisted last. Its Prepare is not always called after both databases prepared (the two
/// PREPARE TRANSACTIONs may still be in flight; seen in CI as leftovers in one database only), so
/// it waits, up to 5 s, until both databases hold a prepared transaction, then kills the process.
/// </summary>
internal sealed class DieInPrepare(string bankA, string bankB) : IEnlistmentNotification
{
    public void Prepare(PreparingEnlistment preparingEnlistment)
    {
        // Each check is a round trip to both servers: the wait is paced by them, not by a sleep.
        using (var a = Open(bankA))
        using (var b = Open(bankB))
        {
            SpinWait.SpinUntil(() => HasPrepared(a) && HasPrepared(b), TimeSpan.FromSeconds(5));
        }

        Console.WriteLine("dying in the middle of a commit");
        Console.Out.Flush();
        using var self = Process.GetCurrentProcess();
        self.Kill();
    }

    private static NpgsqlConnection Open(string connectionString)
    {
        // Not enlisted: the ambient transaction is the one being prepared.
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Enlist = false, Pooling = false }.ConnectionString);
        connection.Open();
        return connection;
    }

    private static bool HasPrepared(NpgsqlConnection connection)
    {
        using var count = new NpgsqlCommand("SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()", connection);
        return (long)count.ExecuteScalar()! > 0;
    }

    public void Commit(Enlistment enlistment) => enlistment.Done();

    public void Rollback(Enlistment enlistment) => enlistment.Done();

    public void InDoubt(Enlistment enlistment) => enlistment.Done();
}
