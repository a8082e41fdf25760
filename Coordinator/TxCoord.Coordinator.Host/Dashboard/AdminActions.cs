using System.Collections.Immutable;
using TxCoord.Contracts;
using TxCoord.Coordinator.Engine;
using TxCoord.Coordinator.Journal;
using TxCoord.Coordinator.Runtime;

namespace TxCoord.Coordinator.Host.Dashboard;

/// <summary>Who asks for an admin action, as the access check established it.</summary>
internal sealed record AdminCaller(string Actor, string Credential, string? RemoteAddress);

/// <summary>An admin action's answer: the HTTP status and the body.</summary>
internal sealed record AdminResult(int StatusCode, AdminResultModel Body);

/// <summary>
/// The operators' actions on one transaction. Each is recorded in the audit log before it is
/// carried out and completed after, with what happened.
/// <list type="bullet">
/// <item><b>Resolve</b>: finish the transaction as the journal says. Commit (the journal holds
/// the decision): phase 2 is re-driven now. Abort (no commit decision: presumed abort): a
/// transaction still collecting votes is aborted, and every participant is told to roll back.
/// Refused while the decision is being made durable (its outcome is not known yet).</item>
/// <item><b>Heuristic</b> (an outcome other than the journal's): only with <c>heuristic</c>,
/// <c>confirm</c> repeating the transaction id, and a reason. Committing a transaction the
/// journal does not know (all its branches found prepared, the coordinator no longer holding it)
/// records a commit decision and drives it; aborting a transaction that decided commit is always
/// refused, because some participants may have committed already.</item>
/// <item><b>Retry phase 2 now</b>: the next re-drive (or decision-write retry) runs at once.</item>
/// </list>
/// </summary>
internal sealed class AdminActions(
    CoordinatorRuntime runtime,
    ITransactionJournal journal,
    ICoordinatorTransport transport,
    AuditLog audit,
    DashboardQueries queries,
    TimeProvider time,
    ILogger<AdminActions> logger)
{
    public const int MaxActorLength = 100;

    public const int MinReasonLength = 3;

    public const int MaxReasonLength = 1000;

    /// <summary>Checks the common fields of an admin request; null when they are fine, else the problem.</summary>
    public static string? Validate(string? actor, string? reason)
    {
        if (string.IsNullOrWhiteSpace(actor) || actor.Trim().Length > MaxActorLength || actor.Any(char.IsControl))
        {
            return $"'operator' is required: who you are, 1 to {MaxActorLength} characters without control characters";
        }

        if (string.IsNullOrWhiteSpace(reason) || reason.Trim().Length < MinReasonLength || reason.Length > MaxReasonLength)
        {
            return $"'reason' is required: why, {MinReasonLength} to {MaxReasonLength} characters (it goes to the audit log)";
        }

        return null;
    }

    /// <summary>Checks a resolve request beyond the common fields; null when it is fine.</summary>
    public static string? ValidateResolve(TransactionId id, ResolveRequestModel request)
    {
        if (Validate(request.Operator, request.Reason) is { } problem)
        {
            return problem;
        }

        if (request.Outcome is not (null or TransactionVerdict.Commit or TransactionVerdict.Abort))
        {
            return $"'outcome' must be \"commit\" or \"abort\" (or left out to follow the journal), not \"{request.Outcome}\"";
        }

        if (request.Heuristic)
        {
            if (request.Outcome is null)
            {
                return "a heuristic decision needs an explicit 'outcome': \"commit\" or \"abort\"";
            }

            if (!TransactionId.TryParse(request.Confirm, out var confirmed) || confirmed != id)
            {
                return "a heuristic decision needs 'confirm' set to the transaction id, to show it is meant for this transaction";
            }
        }

        return null;
    }

    public async Task<AdminResult> ResolveAsync(TransactionId id, ResolveRequestModel request, AdminCaller caller, CancellationToken cancellationToken)
    {
        // The reason is logged, stored in the audit log and the journal, and shown on the dashboard: no line breaks in it.
        request = request with { Reason = UntrustedText.Escape(request.Reason) };
        var live = runtime.Find(id);
        var entry = await journal.FindAsync(id, cancellationToken);
        var (verdict, explanation) = TransactionVerdict.Of(live, entry);
        var requested = request.Outcome ?? verdict;
        var heuristic = request.Heuristic && requested != verdict && verdict != TransactionVerdict.Deciding;
        var action = heuristic ? $"heuristic-{requested}" : $"resolve-{requested}";

        return await AuditedAsync(id, action, verdict, request.Reason!, caller, async auditId =>
        {
            if (verdict == TransactionVerdict.Deciding)
            {
                return Refused($"nothing done: {explanation}");
            }

            if (entry is not null && entry.CoordinatorId != runtime.Id)
            {
                return Refused($"nothing done: the transaction belongs to coordinator '{entry.CoordinatorId}'; resolve it there");
            }

            if (requested != verdict && !request.Heuristic)
            {
                return Refused($"nothing done: {explanation}. An outcome other than the journal's is a heuristic decision: send \"heuristic\": true, \"confirm\": \"{id.Value}\" and a reason");
            }

            if (heuristic)
            {
                return requested == TransactionVerdict.Commit
                    ? await HeuristicCommitAsync(id, live, entry, caller, request.Reason!, auditId, cancellationToken)
                    : Refused($"refused: {explanation}. Aborting now could leave some participants committed and others not; TxCoord never forces an abort over a commit decision");
            }

            return verdict == TransactionVerdict.Commit
                ? await CommitPerJournalAsync(id, live, entry, cancellationToken)
                : await AbortPerJournalAsync(id, live, entry, caller, request.Reason!, cancellationToken);
        }, cancellationToken);
    }

    public async Task<AdminResult> RetryAsync(TransactionId id, RetryRequestModel request, AdminCaller caller, CancellationToken cancellationToken)
    {
        request = request with { Reason = UntrustedText.Escape(request.Reason) };
        var live = runtime.Find(id);
        var entry = live is null ? await journal.FindAsync(id, cancellationToken) : null;
        var (verdict, _) = TransactionVerdict.Of(live, entry);
        return await AuditedAsync(id, "retry-phase2", verdict, request.Reason!, caller, async _ =>
        {
            if (live is null)
            {
                if (entry is { State: JournalState.Committing } && entry.CoordinatorId == runtime.Id)
                {
                    var resumed = await runtime.RecoverAsync(cancellationToken);
                    return Done($"resumed from the journal ({resumed} transaction(s) resumed): CommitBranch sent to {Join(Unacknowledged(entry))}");
                }

                return Refused("nothing done: the transaction is not in flight on this coordinator, so it has no phase 2 to retry");
            }

            if (live.IsTerminal)
            {
                return Refused($"nothing done: the transaction has just {CoordinatorPhase(live)}");
            }

            if (live.Phase == TransactionPhase.Preparing)
            {
                return Refused("nothing done: the transaction is still collecting votes, so there is no phase 2 yet; resolve it to abort it");
            }

            var after = await runtime.RetryNowAsync(id, cancellationToken);
            if (after is null)
            {
                return Refused("nothing done: no retry is pending (one is running right now)");
            }

            return after.Phase switch
            {
                TransactionPhase.Committing => Done($"phase 2 re-driven now (re-drive {after.Redrives}): CommitBranch sent to {Join(after.UnacknowledgedYesVoters)}"),
                TransactionPhase.Committed => Done("retried: every participant has acknowledged; the transaction is committed"),
                _ => Done($"retried now; the transaction is {CoordinatorPhase(after)}"),
            };
        }, cancellationToken);
    }

    private async Task<Outcome> CommitPerJournalAsync(TransactionId id, TransactionState? live, JournalEntry? entry, CancellationToken cancellationToken)
    {
        if (live is { IsTerminal: false })
        {
            var after = await runtime.RetryNowAsync(id, cancellationToken);
            return after is null
                ? Done("the coordinator is committing it already (a re-drive is running right now)")
                : Done($"committing: phase 2 re-driven now; waiting for {Join(after.UnacknowledgedYesVoters, "nobody")}");
        }

        if (entry is { State: JournalState.Committing })
        {
            var resumed = await runtime.RecoverAsync(cancellationToken);
            return Done($"resumed from the journal ({resumed} transaction(s) resumed): CommitBranch sent to {Join(Unacknowledged(entry))}");
        }

        // Committed in the journal: every participant acknowledged. A branch still prepared
        // somewhere (a participant restored from a backup, say) is told again; commit is idempotent.
        var prepared = await queries.PreparedBranchesAsync(id, cancellationToken);
        foreach (var branch in prepared)
        {
            var participant = branch.Branch!.Value.Participant;
            await transport.SendToParticipantAsync(participant, new CommitBranch { TransactionId = id, Coordinator = runtime.Id, Participant = participant }, cancellationToken);
        }

        return Done(prepared.Count == 0
            ? "already committed everywhere; nothing to do"
            : $"committed in the journal; CommitBranch sent again to {Join(prepared.Select(b => b.Branch!.Value.Participant))}, still prepared");
    }

    private async Task<Outcome> AbortPerJournalAsync(
        TransactionId id, TransactionState? live, JournalEntry? entry, AdminCaller caller, string reason, CancellationToken cancellationToken)
    {
        var prepared = await queries.PreparedBranchesAsync(id, cancellationToken);
        var participants = (live?.Participants ?? [])
            .Concat(entry?.Participants ?? [])
            .Concat(prepared.Select(b => b.Branch!.Value.Participant))
            .Distinct()
            .ToList();
        await runtime.RollbackAsync(
            new RollbackTransaction
            {
                TransactionId = id,
                Participants = participants,
                Protocol = live?.Protocol ?? entry?.Protocol ?? CommitProtocol.TwoPhase,
                Reason = $"resolved by operator {caller.Actor}: {reason}",
            },
            null,
            cancellationToken);

        // The coordinator may have decided in the meantime: say what really happened.
        var after = runtime.Find(id);
        var entryAfter = await journal.FindAsync(id, cancellationToken);
        if (entryAfter is { IsCommit: true } || after is { IsTerminal: false })
        {
            return Refused($"nothing aborted: the coordinator reached a decision meanwhile ({(entryAfter is { IsCommit: true } ? "commit" : CoordinatorPhase(after!))}); look again");
        }

        return Done(participants.Count == 0
            ? "aborted (recorded in the journal); no participant is known to tell"
            : $"aborted: AbortBranch sent to {Join(participants)}; recorded in the journal");
    }

    private async Task<Outcome> HeuristicCommitAsync(
        TransactionId id, TransactionState? live, JournalEntry? entry, AdminCaller caller, string reason, long auditId, CancellationToken cancellationToken)
    {
        if (live is not null)
        {
            return Refused(DrivenRefusal);
        }

        if (entry is { State: JournalState.Aborted })
        {
            return Refused("refused: the journal records this transaction aborted, so its participants may have rolled back already; committing the rest would break atomicity");
        }

        var prepared = await queries.PreparedBranchesAsync(id, cancellationToken);
        if (prepared.Count == 0)
        {
            return Refused("refused: no prepared branch of this transaction was found in the configured participant databases, so there is nothing to commit (configure TxCoord:Participants:<id>:ConnectionString for its participants)");
        }

        var participants = prepared.Select(b => b.Branch!.Value.Participant).Distinct().ToImmutableArray();
        var now = time.GetUtcNow();
        var decision = new CommitDecision(id, runtime.Id, CommitProtocol.TwoPhase, participants, prepared.Min(b => b.PreparedAt), now);

        // The checks above are a first answer for the operator; the coordinator may have started
        // the transaction since (a late commit request, a vote). The runtime checks again while
        // it holds the transaction, and writes the decision only if it still holds nothing.
        switch (await runtime.CommitHeuristicallyAsync(decision, cancellationToken))
        {
            case { Live: not null }:
                return Refused(DrivenRefusal);
            case { Journal: { } known }:
                return Refused($"refused: the journal now holds this transaction ({known.State.ToString().ToLowerInvariant()}), written while the action was on its way; look again");
        }

        DashboardLog.Heuristic(logger, id.Value, TransactionVerdict.Commit, caller.Actor, reason, auditId);
        return Done($"heuristic commit: decision forced to the journal for {Join(participants)} (the branches found prepared) and driven; a participant whose branch was not found prepared may have rolled back: check it");
    }

    private const string DrivenRefusal =
        "refused: the coordinator is driving this transaction; a heuristic decision is only for a transaction it no longer holds. Resolve it (abort) or wait";

    private async Task<AdminResult> AuditedAsync(
        TransactionId id, string action, string verdict, string reason, AdminCaller caller, Func<long, Task<Outcome>> act, CancellationToken cancellationToken)
    {
        var auditId = await audit.RecordRequestAsync(
            new AuditRequest(runtime.Id, caller.Actor.Trim(), caller.Credential, caller.RemoteAddress, action, id, reason.Trim()),
            time.GetUtcNow(),
            cancellationToken);
        DashboardLog.AdminRequested(logger, id.Value, caller.Actor, caller.Credential, caller.RemoteAddress, action, reason, auditId);

        Outcome outcome;
        try
        {
            outcome = await act(auditId);
        }
        catch (Exception ex)
        {
            DashboardLog.AdminFailed(logger, ex, id.Value, action, auditId);
            var message = $"failed: {ex.Message}. The action may have been carried out in part: look at the transaction again";
            await audit.CompleteAsync(auditId, AuditLog.Failed, message, time.GetUtcNow(), CancellationToken.None);
            return new AdminResult(StatusCodes.Status500InternalServerError, new AdminResultModel(auditId, action, verdict, AuditLog.Failed, message));
        }

        // Completed even if the caller went away: the action itself has happened.
        await audit.CompleteAsync(auditId, outcome.Status, outcome.Message, time.GetUtcNow(), CancellationToken.None);
        DashboardLog.AdminCompleted(logger, id.Value, action, outcome.Status, outcome.Message, auditId);
        var status = outcome.Status == AuditLog.Done ? StatusCodes.Status200OK : StatusCodes.Status409Conflict;
        return new AdminResult(status, new AdminResultModel(auditId, action, verdict, outcome.Status, outcome.Message));
    }

    private static IEnumerable<ParticipantId> Unacknowledged(JournalEntry entry) => entry.Participants.Where(p => !entry.Acknowledged.Contains(p));

    private static string Join(IEnumerable<ParticipantId> participants, string none = "no participant")
    {
        var text = string.Join(", ", participants);
        return text.Length == 0 ? none : text;
    }

    private static string CoordinatorPhase(TransactionState state) => state.Phase.ToString().ToLowerInvariant();

    private static Outcome Done(string message) => new(AuditLog.Done, message);

    private static Outcome Refused(string message) => new(AuditLog.Refused, message);

    private sealed record Outcome(string Status, string Message);
}
