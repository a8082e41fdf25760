using TxCoord.Recovery;

// txcoord-recover: see Usage.Text. All the work (and all SQL) is in TxCoord.Coordinator's Recovery namespace.
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cancel.Cancel();
};

return await RecoverCommand.RunAsync(args, Console.Out, Console.Error, cancel.Token);
