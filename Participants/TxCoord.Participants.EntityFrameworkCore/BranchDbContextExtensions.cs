using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.DependencyInjection;

namespace TxCoord.Participants.EntityFrameworkCore;

/// <summary>
/// EF Core inside a branch. A <see cref="DbContext"/> resolved from <see cref="IBranchContext.Services"/>
/// as it is opens a connection of its own: what it saves commits at once, outside the global
/// transaction, and stays when that aborts. <see cref="GetDbContextAsync{TContext}"/> binds the
/// branch's scoped instance to the branch's connection and transaction first, so SaveChanges
/// writes inside the branch and is prepared, committed or rolled back with it.
/// </summary>
public static class BranchDbContextExtensions
{
    /// <summary>
    /// The branch's <typeparamref name="TContext"/> (registered with <c>AddDbContext</c>, scoped: one
    /// per branch, shared by the branch's works and disposed when it ends), on the branch's
    /// connection and transaction. Refuses, with the reason, a context that cannot stay inside the
    /// branch: one whose execution strategy retries (it would replay work outside the branch's
    /// transaction), or one already bound to another connection or transaction.
    /// </summary>
    public static async Task<TContext> GetDbContextAsync<TContext>(this IBranchContext branch, CancellationToken cancellationToken = default)
        where TContext : DbContext
    {
        ArgumentNullException.ThrowIfNull(branch);
        var context = branch.Services.GetService<TContext>()
            ?? throw new InvalidOperationException(
                $"{typeof(TContext).Name} is not registered in the participant's services: register it with AddDbContext<{typeof(TContext).Name}>(...) (scoped, the default).");
        var database = context.Database;
        if (database.CreateExecutionStrategy().RetriesOnFailure)
        {
            throw new InvalidOperationException(
                $"{typeof(TContext).Name} uses a retrying execution strategy (EnableRetryOnFailure): on a branch a retry cannot replay what the branch's " +
                "transaction already holds; leave retries to TxCoord (a failed work is a No vote) and register the context without EnableRetryOnFailure.");
        }

        var connection = database.GetDbConnection();
        if (!ReferenceEquals(connection, branch.Connection))
        {
            if (database.CurrentTransaction is not null || connection.State != System.Data.ConnectionState.Closed)
            {
                throw new InvalidOperationException(
                    $"{typeof(TContext).Name} is already in use on a connection of its own in this branch: take it with GetDbContextAsync before using it, not from Services.");
            }

            // The branch owns the connection: the context must not close or dispose it.
            database.SetDbConnection(branch.Connection, contextOwnsConnection: false);
        }

        if (database.CurrentTransaction?.GetDbTransaction() is not { } current || !ReferenceEquals(current, branch.Transaction))
        {
            await database.UseTransactionAsync(branch.Transaction, cancellationToken);
        }

        return context;
    }
}
