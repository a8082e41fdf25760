using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TxCoord.Contracts;

namespace TxCoord.Participants.Participant;

internal enum BranchPhase
{
    /// <summary>Just created to serialize an operation; nothing runs in the database yet.</summary>
    New,

    /// <summary>Work has run on the branch's connection; the transaction is open.</summary>
    Working,
}

/// <summary>
/// One branch in memory, from its first work message until it is prepared or rolled back.
/// Prepared branches are not kept here: PostgreSQL holds them, and <c>pg_prepared_xacts</c> plus the
/// outcome table say everything about them.
/// </summary>
internal sealed class Branch(BranchGid gid)
{
    public BranchGid Gid { get; } = gid;

    public SemaphoreSlim Lock { get; } = new(1, 1);

    public BranchPhase Phase { get; set; } = BranchPhase.New;

    /// <summary>Set under <see cref="Lock"/> when the branch leaves the registry; a waiter that sees it starts over.</summary>
    public bool Removed { get; set; }

    public NpgsqlConnection? Connection { get; set; }

    public NpgsqlTransaction? Transaction { get; set; }

    /// <summary>The branch's DI scope (<see cref="IBranchContext.Services"/>): made with its transaction, disposed when it ends.</summary>
    public AsyncServiceScope? Scope { get; set; }

    /// <summary>Set once the branch has been checked for a Success that wrote nothing (warned at most once).</summary>
    public bool WriteChecked { get; set; }

    /// <summary>
    /// True while every work of the branch said it wrote nothing (<see cref="WorkResult.SuccessReadOnly"/>):
    /// at a 2PC prepare the branch then checks with PostgreSQL and, having written nothing, votes ReadOnly.
    /// </summary>
    public bool ReadOnly { get; set; } = true;

    /// <summary>When a working branch that has not prepared is rolled back.</summary>
    public DateTimeOffset Deadline { get; set; } = DateTimeOffset.MaxValue;

    /// <summary>
    /// The <see cref="TxCoordHeaders.WorkSequence"/> numbers of the works that ran in this branch
    /// and succeeded. A prepare that expects <c>n</c> works finds exactly 1..n here, or the branch
    /// lost some (a restart of this process rolled an earlier branch back) and votes No.
    /// </summary>
    public SortedSet<int> Works { get; } = [];
}

/// <summary>Branches in memory, each operation on one under that branch's lock.</summary>
internal sealed class BranchRegistry
{
    // Keyed by the whole GID (coordinator, transaction and participant): two coordinators may
    // use the same transaction id, and their branches are distinct.
    private readonly ConcurrentDictionary<BranchGid, Branch> _branches = new();

    public int Count => _branches.Count;

    /// <summary>Gets or creates the branch and takes its lock. The caller releases it.</summary>
    public async Task<Branch> AcquireAsync(BranchGid gid, CancellationToken cancellationToken)
    {
        while (true)
        {
            var branch = _branches.GetOrAdd(gid, static (_, g) => new Branch(g), gid);
            await branch.Lock.WaitAsync(cancellationToken);
            if (!branch.Removed)
            {
                return branch;
            }

            // Its owner finished with it: make sure the dead entry is gone before trying again.
            _branches.TryRemove(new KeyValuePair<BranchGid, Branch>(gid, branch));
            branch.Lock.Release();
        }
    }

    /// <summary>
    /// Takes the lock of <paramref name="branch"/> only if it is free now and the branch is still in
    /// memory; never waits. The caller releases it when true.
    /// </summary>
    public bool TryAcquire(Branch branch)
    {
        if (!branch.Lock.Wait(0))
        {
            return false;
        }

        if (!branch.Removed)
        {
            return true;
        }

        _branches.TryRemove(new KeyValuePair<BranchGid, Branch>(branch.Gid, branch));
        branch.Lock.Release();
        return false;
    }

    /// <summary>
    /// Marks the branch to leave memory when its lock is released. Call under its lock. The
    /// entry stays in the registry until <see cref="Release"/>, so an operation that arrives
    /// meanwhile waits for this one to finish instead of running beside it on a fresh entry.
    /// </summary>
    public void Remove(Branch branch) => branch.Removed = true;

    /// <summary>Releases the branch's lock, taking it out of memory first if it was removed.</summary>
    public void Release(Branch branch)
    {
        if (branch.Removed)
        {
            _branches.TryRemove(new KeyValuePair<BranchGid, Branch>(branch.Gid, branch));
        }

        branch.Lock.Release();
    }

    /// <summary>Working branches whose deadline has passed (a snapshot; re-check under the lock).</summary>
    public IReadOnlyList<Branch> Expired(DateTimeOffset now) =>
        _branches.Values.Where(b => b.Phase == BranchPhase.Working && b.Deadline <= now).ToList();

    /// <summary>Every branch in memory (a snapshot; re-check under the lock).</summary>
    public IReadOnlyList<Branch> Snapshot() => _branches.Values.ToList();

    public int CountWorking() => _branches.Values.Count(b => b.Phase == BranchPhase.Working);
}
