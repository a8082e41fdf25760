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
                    Transaction.Current!.EnlistVolatile(new DieInPrepare(), EnlistmentOptions.None);
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

/// <summary>Enlisted last: its Prepare runs after both databases prepared; it kills the process there.</summary>
internal sealed class DieInPrepare : IEnlistmentNotification
{
    public void Prepare(PreparingEnlistment preparingEnlistment)
    {
        Console.WriteLine("dying in the middle of a commit");
        Console.Out.Flush();
        using var self = Process.GetCurrentProcess();
        self.Kill();
    }

    public void Commit(Enlistment enlistment) => enlistment.Done();

    public void Rollback(Enlistment enlistment) => enlistment.Done();

    public void InDoubt(Enlistment enlistment) => enlistment.Done();
}
