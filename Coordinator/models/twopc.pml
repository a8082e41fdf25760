/*
 * twopc.pml - TxCoord two-phase commit, presumed abort, one transaction.
 *
 * Mirrors (README.md in this folder maps every transition to its code):
 *   coordinator  Coordinator/TxCoord.Coordinator/Engine/TwoPhaseCommitEngine.cs and
 *                Engine/TransactionEngine.cs (the rules), Runtime/CoordinatorRuntime.cs
 *                (transactions not in memory, recovery at start, effect order),
 *                Journal/PostgresTransactionJournal.cs (the row and its insert-if-absent writes)
 *   participant  Participants/TxCoord.Participants/Participant/ParticipantRuntime.cs,
 *                ParticipantRuntime.Termination.cs (2PC cooperative termination),
 *                ParticipantRuntime.EarlyPrepare.cs (EARLY_PREPARE) and
 *                PostgreSql/BranchStore.cs
 *   initiator    Participants/TxCoord.Participants/Initiator/GlobalTransaction.cs
 *
 * Failures: the coordinator process crashes and restarts (at most MAXCRASH times), losing its
 * memory; its journal survives. A participant process crash loses a Working branch (PostgreSQL
 * rolls the open transaction back, no marker is written); a prepared branch survives.
 *
 * The network: every message ever sent stays in a set (one bit per kind and participant) and
 * can be delivered any number of times, at any later moment, or never. That covers loss,
 * duplication (broker redelivery), delay and reordering (64 concurrent consumers per endpoint)
 * at once; for safety it is the most permissive channel there is.
 *
 * Without any FIX_* define the model follows the code as it was first modelled; spin then finds
 * a participant committed and another aborted (README.md, findings 1 to 3). The code today is
 * -DFIX_TOMBSTONE: all three fixed (CoordinatorRuntime.PresumeAbortAsync for 2 and 3; the
 * Aborting phase of TransactionEngine for 1).
 *
 * Variants (spin -D...):
 *   -DN=3                      three participants (default 2)
 *   -DMAXCRASH=k               coordinator crashes allowed (default 1)
 *   -DFIX_TOMBSTONE            presumed abort as it must be (README, "Findings"); the three
 *                              changes it stands for, each on its own:
 *     -DFIX_ABORT_ROW_FIRST      an abort inserts the abort row before any AbortBranch or reply
 *                                leaves, and only goes on once it is there
 *                                (TransactionEngine.Abort's effect order, RecordAbort)
 *     -DFIX_VOTE_ROW             a Yes vote for a transaction not in memory and not committing
 *                                inserts the abort row before answering AbortBranch
 *                                (CoordinatorRuntime.VoteAsync)
 *     -DFIX_OUTCOME_REREAD       GetOutcomeAsync answers from the row found after its
 *                                insert-if-absent, not from the read before it
 *   -DINFLIGHT_DECISION_WRITE  the forced commit-decision write can still land in PostgreSQL
 *                              after the coordinator process died (COMMIT sent, flush pending)
 *   -DEARLY_PREPARE            early prepare (README, "Early prepare"): the initiator sends each
 *                              participant its work with prepare: true or plain (a mix); a
 *                              participant prepares right after the work and answers Prepared;
 *                              the initiator relays those Yes votes in its CommitTransaction and
 *                              the coordinator's Begin counts them, asking only the others. A
 *                              prepared branch may ask the outcome (or a peer) before the
 *                              coordinator has begun the transaction. The initiator may also
 *                              conclude Aborted on its own when its rollback goes unanswered and
 *                              it never asked to commit. Implies -DDECISION_REFUSED.
 *   -DDECISION_REFUSED         a commit-decision write that meets an aborted row is refused and
 *                              the transaction aborts (DecisionRefused, the code today); without
 *                              it, as first modelled, the write is retried for ever
 *   -DWORKS=2                  two works to every participant (default 1), each numbered
 *                              (TxCoord-WorkSequence); the coordinator's PrepareBranch carries
 *                              the count (CommitTransaction.WorkCounts -> PrepareBranch.WorkCount)
 *                              and a Working branch that does not hold works 1..n rolls back and
 *                              votes No (Branch.MissingWorks). With EARLY_PREPARE the second work
 *                              may carry the Prepare header; the branch prepares early only if it
 *                              holds works 1..2 (the work's own number is its count). The
 *                              participant crash can fall between the works: the open transaction
 *                              and the in-memory branch are lost, the next work begins a fresh one.
 *   -DNO_WORK_COUNT            with WORKS=2, the code before the work count: a branch prepares
 *                              (late or early) whatever works it holds
 *   -DAWAIT_WORKS              with WORKS=2, the initiator commits only once every work was
 *                              answered Succeeded (the application awaits each SendAsync; a
 *                              refused or unanswered work makes CommitAsync roll back). Without
 *                              it the initiator may commit at any moment after sending, which
 *                              is more permissive; with it a lost work can only be one that ran
 *                              and was rolled back by a participant's restart.
 *   -DMAXJCRASH=k              the journal's PostgreSQL crashes at most k times (default 0): every
 *                              row not yet flushed is lost (unforced rows are written with
 *                              synchronous_commit off). Forced writes (the commit decision, the
 *                              presumed abort of PresumeAbortAsync) are flushed before they
 *                              return; an unforced one becomes durable when the WAL writer (or any
 *                              other forced commit) flushes it, at any later moment. The
 *                              coordinator process keeps its memory; what has left memory is
 *                              decided afresh from the journal (FindAsync), as the code does.
 *   -DUNFORCED_ABORT_ROW       with MAXJCRASH: the presumed-abort row (an outcome question or a
 *                              Yes vote for a transaction not in memory) written unforced and
 *                              the Aborted/AbortBranch answer sent before it is durable (the code
 *                              before 6f6fc7f)
 *   -DFORCED_ABORTING_ROW      with MAXJCRASH: the Aborting phase's abort row (a No vote, a vote
 *                              timeout, a rollback, AbortUnknown) forced too before AbortBranch
 *                              and the reply leave, as the code does since finding 5 (before, it
 *                              was unforced: TransactionEngine.Abort, CoordinatorRuntime.RecordAbortAsync)
 *   -DBUG_UNILATERAL_ABORT     negative control: a prepared participant that hears nothing
 *                              rolls back on its own
 *   -DBUG_UNFORCED_DECISION    negative control: CommitBranch leaves before the decision is durable
 *   -DBUG_OUTCOME_NO_ROW       negative control: an outcome question for a transaction the
 *                              coordinator does not know is answered Aborted without the abort
 *                              row (PresumeAbortAsync skipped; with early prepare a branch can ask
 *                              before the coordinator has begun the transaction)
 *
 * Properties (pan -N name):
 *   consistent  never one participant committed while another aborted
 *   alone       a participant that voted Yes never decides alone: it commits only when the
 *               journal holds the commit decision; it rolls back only after the coordinator
 *               said "aborted" or a participant rolled back without ever voting Yes (what a
 *               peer can tell it), and never while (or before) the journal holds a commit
 *               decision
 *   truthful    the initiator is never told an outcome that a participant contradicts
 *   whole       no participant commits a branch that lacks a work the initiator sent it (with
 *               WORKS=2; the initiator always sends every work, so a committed transaction
 *               has all its works committed or none)
 */

#ifndef N
#define N 2
#endif
#ifndef MAXCRASH
#define MAXCRASH 1
#endif
#ifndef MAXPCRASH
#define MAXPCRASH 1
#endif
#ifndef WORKS
#define WORKS 1
#endif
#ifndef MAXJCRASH
#define MAXJCRASH 0
#endif
#if WORKS != 1 && WORKS != 2
#error "WORKS must be 1 or 2"
#endif
#define WALL ((1 << WORKS) - 1)

#ifdef EARLY_PREPARE
#define DECISION_REFUSED
#endif

#ifdef FIX_TOMBSTONE
#define FIX_ABORT_ROW_FIRST
#define FIX_VOTE_ROW
#define FIX_OUTCOME_REREAD
#endif

#define ALL ((1 << N) - 1)
#define HAS(set, i) ((((set) >> (i)) & 1) == 1)
#define ADD(set, i) set = (set) | (1 << (i))

/* k := any participant whose bit is set in a non-empty set (N <= 3) */
#define PICK(k, set) \
    if \
    :: HAS(set, 0) -> k = 0 \
    :: HAS(set, 1) -> k = 1 \
    :: HAS(set, 2) -> k = 2 \
    fi

/* participant branch: BranchStore.BranchStatus plus the in-memory Working phase */
#define P_UNKNOWN   0   /* no outcome row, not prepared */
#define P_WORKING   1   /* open transaction on the branch's connection */
#define P_PREPARED  2   /* in pg_prepared_xacts */
#define P_COMMITTED 3   /* the branch's 'committed' marker row is visible */
#define P_ABORTED   4   /* an 'aborted' marker row */

/* the journal row, txcoord.transactions.state; J_NONE: no row (presumed abort) */
#define J_NONE       0
#define J_COMMITTING 1
#define J_COMMITTED  2
#define J_ABORTED    3
#define JCOMMIT (jrow == J_COMMITTING || jrow == J_COMMITTED)

/* the coordinator's memory, TransactionPhase; a terminal transaction leaves memory */
#define C_NONE       0
#define C_PREPARING  1
#define C_DECIDING   2
#define C_COMMITTING 3

byte pst[N];          /* participant branch */
bit  votedYes[N];     /* ghost: the participant voted Yes */
byte pcrash;          /* participant process crashes so far */
#if WORKS > 1
byte pw[N];           /* the works the branch holds, bit w-1 for work w (Branch.Works); kept after commit */
byte nWork2;          /* the second work messages, one bit per participant (nWork: the first) */
#ifdef AWAIT_WORKS
byte wok1, wok2;      /* the work 1 / work 2 answers that said Succeeded, one bit per participant */
#define OK1(i) ADD(wok1, i)
#define OK2(i) ADD(wok2, i)
#else
#define OK1(i) skip
#define OK2(i) skip
#endif
#endif

byte jrow = J_NONE;   /* the journal row */
bit  jinflight;       /* INFLIGHT_DECISION_WRITE: the decision insert is on its way */
byte cphase = C_NONE; /* coordinator memory */
byte votes;           /* Yes votes received */
byte acks;            /* commit acknowledgements received */
byte ccrash;          /* coordinator crashes so far */
bit  abortSaid;       /* ghost: the coordinator told someone "aborted" */
#if MAXJCRASH > 0
byte jdur = J_NONE;   /* the journal row as flushed: what a crash of the journal's server leaves */
byte jcrash;          /* journal crashes so far */
/* a forced write: flushed before it returns, with all WAL before it */
#define FLUSH jdur = jrow
#else
#define FLUSH skip
#endif

/* messages in flight, one bit per participant */
byte nWork, nPrepare, nCommit, nAbort, nYes, nNo, nAck, nAsk, nOutC, nOutA;
/* initiator <-> coordinator */
bit  nCommitTx, nRollbackTx, nInitAsk, nReplyC, nReplyA;
bit  toldC, toldA;    /* the initiator was told Committed / Aborted */
#ifdef EARLY_PREPARE
byte nWorkP;          /* work messages with the Prepare header, one bit per participant */
byte nDoneP;          /* WorkCompleted { Prepared = true } answers to the initiator */
byte relay;           /* the Yes votes the initiator relays (CommitTransaction.Prepared) */
#endif

#if N == 2
#define ANYC (pst[0] == P_COMMITTED || pst[1] == P_COMMITTED)
#define ANYA (pst[0] == P_ABORTED || pst[1] == P_ABORTED)
#define ALONE (ALONE_AT(0) || ALONE_AT(1))
#define NOYES (NOYES_AT(0) || NOYES_AT(1))
#elif N == 3
#define ANYC (pst[0] == P_COMMITTED || pst[1] == P_COMMITTED || pst[2] == P_COMMITTED)
#define ANYA (pst[0] == P_ABORTED || pst[1] == P_ABORTED || pst[2] == P_ABORTED)
#define ALONE (ALONE_AT(0) || ALONE_AT(1) || ALONE_AT(2))
#define NOYES (NOYES_AT(0) || NOYES_AT(1) || NOYES_AT(2))
#else
#error "N must be 2 or 3"
#endif
#define NOYES_AT(k) (pst[k] == P_ABORTED && !votedYes[k])
#define ALONE_AT(i) ((pst[i] == P_COMMITTED && !JCOMMIT) || \
                     (votedYes[i] && pst[i] == P_ABORTED && (!(abortSaid || NOYES) || JCOMMIT)))

ltl consistent { [] !(ANYC && ANYA) }
ltl alone      { [] !ALONE }
ltl truthful   { [] !((toldC && ANYA) || (toldA && ANYC)) }
#if WORKS > 1
#define LOST_AT(i) (pst[i] == P_COMMITTED && pw[i] != WALL)
#if N == 2
#define LOSTWORK (LOST_AT(0) || LOST_AT(1))
#else
#define LOSTWORK (LOST_AT(0) || LOST_AT(1) || LOST_AT(2))
#endif
#ifdef NO_WORK_COUNT
#define HOLDSALL(i) true
#else
#define HOLDSALL(i) (pw[i] == WALL)
#endif
#else
#define LOSTWORK false
#endif
ltl whole      { [] !LOSTWORK }

/* The coordinator process may die here (at most MAXCRASH times in a run). */
#define CRASHPOINT if :: ccrash < MAXCRASH -> ccrash++; goto crashed :: true -> skip fi

/* ---------------------------------------------------------------------------------------
 * participant
 * ------------------------------------------------------------------------------------- */

/* CommitAsync on a prepared branch: COMMIT PREPARED (then BranchCommitted when asked by a
 * CommitBranch). */
inline commitPrepared(i) {
    printf("P%d: COMMIT PREPARED\n", i);
    pst[i] = P_COMMITTED
}

/* AbortAsync: rolls back a branch in any state but Committed; an Unknown branch gets the
 * abort marker, which fences a late work message or Prepare. */
inline abortBranch(i) {
    printf("P%d: rolled back (was %d)\n", i, pst[i]);
    pst[i] = P_ABORTED
}

/* k := any participant but i */
#define PICKPEER(k, i) \
    if \
    :: i != 0 -> k = 0 \
    :: i != 1 -> k = 1 \
    :: N > 2 && i != 2 -> k = 2 \
    fi

proctype Participant(byte i) {
    byte k;
    do
    /* HandleWorkAsync/RunWorkAsync: work starts only on a branch whose status is Unknown. */
#if WORKS == 1
    :: atomic { HAS(nWork, i) && pst[i] == P_UNKNOWN -> pst[i] = P_WORKING; printf("P%d: work\n", i) }
#else
    /* Work w (TxCoord-WorkSequence w): on an Unknown branch it begins a fresh one; on a Working
     * branch it runs in it, unless the branch holds it already (a redelivery: not run twice, no
     * change); any other branch refuses it (no change). */
    :: atomic { HAS(nWork, i) && (pst[i] == P_UNKNOWN || (pst[i] == P_WORKING && !HAS(pw[i], 0))) ->
        pst[i] = P_WORKING; ADD(pw[i], 0); OK1(i); printf("P%d: work 1 (the branch holds works %d)\n", i, pw[i]) }
    :: atomic { HAS(nWork2, i) && (pst[i] == P_UNKNOWN || (pst[i] == P_WORKING && !HAS(pw[i], 1))) ->
        pst[i] = P_WORKING; ADD(pw[i], 1); OK2(i); printf("P%d: work 2 (the branch holds works %d)\n", i, pw[i]) }
#endif
#ifdef EARLY_PREPARE
    /* HandleWorkAsync with the Prepare header: under the branch lock (no AbortBranch, Prepare,
     * expiry or peer question gets in between), RunWorkAsync on an Unknown branch, then
     * PrepareEarlyAsync, the same PrepareAsync as a PrepareBranch (state row with the declared
     * peers, PREPARE TRANSACTION): Yes -> WorkCompleted { Prepared = true }; the work refused or
     * PREPARE failed -> rolled back, answered Succeeded = false. A process crash half-way leaves
     * an Unknown branch and the work message redelivered: the same as not yet delivered. A
     * branch that is not Unknown refuses the work (the answer does not matter: the initiator can
     * always roll back, or commit without waiting for an answer). */
#if WORKS == 1
    :: atomic { HAS(nWorkP, i) && pst[i] == P_UNKNOWN ->
        if
        :: pst[i] = P_PREPARED; votedYes[i] = 1; ADD(nDoneP, i); printf("P%d: work with prepare: PREPARE, answers Prepared (Yes)\n", i)
        :: pst[i] = P_ABORTED; printf("P%d: work with prepare refused or PREPARE failed: rolled back\n", i)
        fi }
#else
    /* the second (last) work with the Prepare header: it runs on an Unknown branch (a fresh one)
     * or a Working one (a redelivery of a work it holds is not run again, and the prepare still
     * follows); PrepareEarlyAsync with WorkCount = the work's own number, 2: the branch must hold
     * works 1..2, otherwise it rolls back and the work is refused */
    :: atomic { HAS(nWorkP, i) && (pst[i] == P_UNKNOWN || pst[i] == P_WORKING) ->
        ADD(pw[i], 1);
        if
        :: HOLDSALL(i) ->
            if
            :: pst[i] = P_PREPARED; votedYes[i] = 1; ADD(nDoneP, i); OK2(i); printf("P%d: work 2 with prepare, holds works %d: PREPARE, answers Prepared (Yes)\n", i, pw[i])
            :: pst[i] = P_ABORTED; printf("P%d: work 2 with prepare refused or PREPARE failed: rolled back\n", i)
            fi
        :: else -> pst[i] = P_ABORTED; printf("P%d: work 2 with prepare, holds works %d, not 1..2: rolled back, refused\n", i, pw[i])
        fi }
#endif
#endif
    /* the handler refuses, or ExpireBranchesAsync: the branch timeout passed before Prepare */
    :: atomic { pst[i] == P_WORKING -> pst[i] = P_ABORTED; printf("P%d: work refused or expired\n", i) }
    /* the participant process dies: PostgreSQL rolls the open transaction back, no marker */
#if WORKS == 1
    :: atomic { pst[i] == P_WORKING && pcrash < MAXPCRASH -> pcrash++; pst[i] = P_UNKNOWN; printf("P%d: crash\n", i) }
#else
    :: atomic { pst[i] == P_WORKING && pcrash < MAXPCRASH -> pcrash++; pst[i] = P_UNKNOWN; pw[i] = 0; printf("P%d: crash: the branch and its works are lost\n", i) }
#endif
    /* HandlePrepareAsync/PrepareAsync */
    :: atomic { HAS(nPrepare, i) ->
        if
#if WORKS > 1
        /* Branch.MissingWorks: PrepareBranch.WorkCount is 2; a branch without works 1..2 (work 1
         * lost in a restart of this participant, or not delivered yet) rolls back, votes No */
        :: pst[i] == P_WORKING && !HOLDSALL(i) ->
            pst[i] = P_ABORTED; ADD(nNo, i); printf("P%d: Prepare: holds works %d, not 1..2: rolled back, votes No\n", i, pw[i])
        :: pst[i] == P_WORKING && HOLDSALL(i) ->
#else
        :: pst[i] == P_WORKING ->
#endif
            if
            :: pst[i] = P_PREPARED; votedYes[i] = 1; ADD(nYes, i); printf("P%d: PREPARE, votes Yes\n", i)
            :: pst[i] = P_ABORTED; ADD(nNo, i); printf("P%d: PREPARE failed, votes No\n", i)
            fi
        :: pst[i] == P_PREPARED || pst[i] == P_COMMITTED -> ADD(nYes, i); printf("P%d: votes Yes again\n", i)
        :: pst[i] == P_ABORTED -> ADD(nNo, i)
        :: pst[i] == P_UNKNOWN -> pst[i] = P_ABORTED; ADD(nNo, i); printf("P%d: Prepare before work: fenced, votes No\n", i)
        fi }
    /* HandleCommitAsync: a prepared branch commits, a committed one acknowledges again; a
     * Working one refuses and an aborted one logs CommitImpossible (no state change) */
    :: atomic { HAS(nCommit, i) && (pst[i] == P_PREPARED || pst[i] == P_COMMITTED) ->
        if
        :: pst[i] == P_PREPARED -> printf("P%d: CommitBranch\n", i); commitPrepared(i)
        :: else -> skip
        fi;
        ADD(nAck, i) }
    /* HandleAbortAsync (a committed branch logs AbortAfterCommit and refuses) */
    :: atomic { HAS(nAbort, i) && pst[i] != P_COMMITTED && pst[i] != P_ABORTED -> printf("P%d: AbortBranch\n", i); abortBranch(i) }
    /* ResolvePreparedAsync: a prepared branch past the decision timeout asks the coordinator
     * (GetTransactionOutcome) and does what it is told; Pending or no answer: stays prepared */
    :: atomic { pst[i] == P_PREPARED && !HAS(nAsk, i) -> ADD(nAsk, i); printf("P%d: asks the outcome\n", i) }
    :: atomic { HAS(nOutC, i) && pst[i] == P_PREPARED -> printf("P%d: told Committed\n", i); commitPrepared(i) }
    :: atomic { HAS(nOutA, i) && pst[i] != P_COMMITTED && pst[i] != P_ABORTED -> printf("P%d: told Aborted\n", i); abortBranch(i) }
    /* CooperativeTerminationAsync: a prepared branch that cannot reach the coordinator asks a
     * peer (GetBranchState, round 0; ReportStateAsync). A peer that never voted Yes (working, or
     * unknown) is fenced: rolled back, Aborted. The asker finishes as a peer that committed or
     * aborted says; a prepared peer knows nothing (blocked). The answer can be lost. */
    :: atomic { pst[i] == P_PREPARED ->
        PICKPEER(k, i);
        if
        :: pst[k] == P_WORKING || pst[k] == P_UNKNOWN -> pst[k] = P_ABORTED; printf("P%d: fenced by P%d's question\n", k, i)
        :: else -> skip
        fi;
        if
        :: pst[k] == P_COMMITTED -> printf("P%d: peer P%d committed\n", i, k); commitPrepared(i)
        :: pst[k] == P_ABORTED -> printf("P%d: peer P%d aborted\n", i, k); abortBranch(i)
        :: true -> skip                    /* a prepared peer knows nothing; or the answer is lost */
        fi;
        k = 0 }
#ifdef BUG_UNILATERAL_ABORT
    :: atomic { pst[i] == P_PREPARED -> printf("P%d: BUG: gives up waiting\n", i); abortBranch(i) }
#endif
    od
}

/* ---------------------------------------------------------------------------------------
 * coordinator
 * ------------------------------------------------------------------------------------- */

/* Abort (TransactionEngine.Abort and AbortUnknown). As first coded (no FIX_ABORT_ROW_FIRST):
 * SendAbort to every participant, ReplyToInitiator(Aborted), RecordAbort unforced, in that order,
 * so the process can die between any two, and a failed RecordAbort was only logged.
 * The code today (FIX_ABORT_ROW_FIRST): Abort enters the Aborting phase whose only effect is
 * RecordAbort; CoordinatorRuntime.RecordAbortAsync answers AbortRecorded (then SendAbort...,
 * ReplyToInitiator), AbortWriteFailed (retried on the tick, nothing told meanwhile) or
 * JournalHoldsDecision (a commit row found: Recover, finish the commit). The transaction then
 * leaves memory. */
inline abortAll() {
#ifdef FIX_ABORT_ROW_FIRST
    /* the abort row first; if a commit decision is there instead (an earlier incarnation's
     * write that landed late), the transaction is committing: finish that */
    if
    :: jrow == J_NONE -> jrow = J_ABORTED
    :: else -> skip
    fi;
#ifdef FORCED_ABORTING_ROW
    FLUSH;
#endif
    if
    :: JCOMMIT ->
        printf("C: abort refused, the journal holds a commit decision\n");
        cphase = C_COMMITTING; votes = ALL; acks = 0; nCommit = ALL; nReplyC = 1
    :: else ->
#endif
        printf("C: abort\n");
        abortSaid = 1;
        k = 0;
        do
        :: k < N -> ADD(nAbort, k); k++; CRASHPOINT
        :: else -> k = 0; break
        od;
        nReplyA = 1;
        CRASHPOINT;
        cphase = C_NONE;
#ifndef FIX_ABORT_ROW_FIRST
        if
        :: jrow == J_NONE -> jrow = J_ABORTED
        :: true -> printf("C: RecordAbort failed (unforced, logged)\n")
        fi
#else
    fi
#endif
}

/* The commit decision is durable (DecisionDurable): the initiator is answered Committed, then
 * CommitBranch goes to every Yes voter (sent together in the code; one by one here, a crash
 * possible between any two, which covers every subset of them having left). */
inline decisionDurable() {
    printf("C: commit decision durable\n");
    cphase = C_COMMITTING; acks = 0;
    nReplyC = 1;
    CRASHPOINT;
    k = 0;
    do
    :: k < N -> ADD(nCommit, k); k++; CRASHPOINT
    :: else -> k = 0; break
    od
}

active proctype Coordinator() {
    byte k;
    bit wasCommit, lookup;
restart:
    atomic {
        cphase = C_NONE; votes = 0; acks = 0; k = 0; wasCommit = 0; lookup = 0;
        /* RecoverAsync: a 'committing' row is resumed, CommitBranch re-sent to its Yes voters */
        if
        :: jrow == J_COMMITTING -> cphase = C_COMMITTING; votes = ALL; nCommit = ALL; printf("C: recovered committing\n")
        :: else -> skip
        fi
    }
    do
    /* the process dies while idle */
    :: atomic { ccrash < MAXCRASH -> ccrash++; goto crashed }

    /* CommitAsync */
    :: atomic { nCommitTx ->
        if
        :: cphase == C_COMMITTING -> nReplyC = 1
        :: cphase == C_PREPARING || cphase == C_DECIDING -> skip   /* a duplicate, answered later */
        :: cphase == C_NONE && JCOMMIT -> nReplyC = 1              /* finished: the journal answers */
        :: cphase == C_NONE && jrow == J_ABORTED ->                /* AbortUnknown, again */
            printf("C: CommitTransaction for an aborted transaction\n"); abortAll()
        :: cphase == C_NONE && jrow == J_NONE ->                   /* unknown to the journal: Begin */
#ifdef EARLY_PREPARE
            /* TwoPhaseCommitEngine.Begin: the relayed Yes votes count; PrepareBranch only to
             * the others; all relayed -> Deciding at once (AllVoted, ForceCommitDecision) */
            cphase = C_PREPARING; votes = relay;
            printf("C: CommitTransaction: Begin with relayed Yes votes %d, PrepareBranch to the others\n", relay);
            if
            :: votes == ALL -> cphase = C_DECIDING
            :: else -> skip
            fi;
            k = 0;
            do
            :: k < N && HAS(votes, k) -> k++
            :: k < N && !HAS(votes, k) -> ADD(nPrepare, k); k++; CRASHPOINT
            :: else -> k = 0; break
            od
#else
            printf("C: CommitTransaction: Begin, PrepareBranch to all\n");
            cphase = C_PREPARING; votes = 0;
            k = 0;
            do
            :: k < N -> ADD(nPrepare, k); k++; CRASHPOINT
            :: else -> k = 0; break
            od
#endif
        fi }

    /* RollbackAsync */
    :: atomic { nRollbackTx ->
        if
        :: cphase == C_PREPARING -> printf("C: RollbackTransaction\n"); abortAll()
        :: cphase == C_DECIDING -> skip                            /* answered Committed once durable */
        :: cphase == C_COMMITTING || (cphase == C_NONE && JCOMMIT) -> nReplyC = 1
        :: cphase == C_NONE && !JCOMMIT -> printf("C: RollbackTransaction, unknown\n"); abortAll()
        fi }

    /* VoteAsync, Yes */
    :: atomic { nYes != 0 ->
        PICK(k, nYes);
        if
        :: cphase == C_PREPARING ->
            ADD(votes, k);
            if
            :: votes == ALL ->
                cphase = C_DECIDING;                               /* ForceCommitDecision */
#ifdef BUG_UNFORCED_DECISION
                decisionDurable();
                if
                :: jrow == J_NONE -> jrow = J_COMMITTING
                :: else -> skip
                fi
#endif
            :: else -> skip
            fi
        :: cphase == C_DECIDING -> skip
        :: cphase == C_COMMITTING || (cphase == C_NONE && JCOMMIT) -> ADD(nCommit, k)
        :: cphase == C_NONE && !JCOMMIT ->
#ifdef FIX_VOTE_ROW
            if
            :: jrow == J_NONE -> jrow = J_ABORTED
            :: else -> skip
            fi;
#ifndef UNFORCED_ABORT_ROW
            FLUSH;                                                 /* PresumeAbortAsync: forced */
#endif
            if
            :: JCOMMIT -> ADD(nCommit, k)
            :: else -> abortSaid = 1; ADD(nAbort, k); printf("C: Yes from P%d for an aborted transaction: AbortBranch\n", k)
            fi
#else
            abortSaid = 1; ADD(nAbort, k);                         /* presumed abort, no row written */
            printf("C: Yes from P%d for an unknown transaction: AbortBranch (no row written)\n", k)
#endif
        fi;
        k = 0 }

    /* VoteAsync, No: aborts a transaction still preparing; ignored otherwise */
    :: atomic { nNo != 0 && cphase == C_PREPARING -> printf("C: a No vote\n"); abortAll() }

    /* a Tick while preparing: vote timeout or transaction deadline */
    :: atomic { cphase == C_PREPARING -> printf("C: vote timeout\n"); abortAll() }

#ifndef BUG_UNFORCED_DECISION
    /* Deciding: the forced insert-if-absent of the 'committing' row; refused (the journal
     * throws) when the row says aborted: DecisionWriteFailed, retried, never aborted */
#ifdef INFLIGHT_DECISION_WRITE
    :: atomic { cphase == C_DECIDING && !jinflight -> jinflight = 1; printf("C: decision write sent\n") }
    :: atomic { cphase == C_DECIDING && !jinflight && JCOMMIT -> decisionDurable() }
#ifdef DECISION_REFUSED
    :: atomic { cphase == C_DECIDING && !jinflight && jrow == J_ABORTED ->
        printf("C: decision refused: the row says aborted\n"); abortAll() }
#endif
#else
    :: atomic { cphase == C_DECIDING ->
        if
        :: jrow == J_NONE -> jrow = J_COMMITTING
        :: else -> skip
        fi;
        if
        :: JCOMMIT -> FLUSH; decisionDurable()
#ifdef DECISION_REFUSED
        :: jrow == J_ABORTED -> printf("C: decision refused: the row says aborted\n"); abortAll()
#endif
        :: else -> skip
        fi }
#endif
#endif

    /* CommitAcknowledgedAsync: the last acknowledgement ends the transaction (RecordEnd,
     * unforced; if it fails the row stays 'committing' and a restart re-drives) */
    :: atomic { nAck != 0 && cphase == C_COMMITTING ->
        acks = acks | nAck;
        if
        :: acks == ALL ->
            cphase = C_NONE;
            if
            :: jrow = J_COMMITTED
            :: skip
            fi
        :: else -> skip
        fi }

    /* GetOutcomeAsync, from a participant (k < N) or the initiator (k == N). In memory:
     * Pending while preparing or deciding. Not in memory: read the row (FindAsync), then
     * insert the abort row if absent (RecordAbortAsync) and answer from the read. Between the
     * two statements a decision write of an earlier incarnation can land. */
    :: atomic { (nAsk != 0 || nInitAsk) ->
        if
        :: nAsk != 0 -> PICK(k, nAsk)
        :: nInitAsk -> k = N
        fi;
        if
        :: cphase == C_PREPARING || cphase == C_DECIDING -> k = 0
        :: cphase == C_COMMITTING ->
            if
            :: k < N -> ADD(nOutC, k)
            :: else -> nReplyC = 1
            fi;
            k = 0
        :: cphase == C_NONE ->
            wasCommit = JCOMMIT;
            lookup = 1
        fi }
        if
        :: lookup ->
            atomic {
            lookup = 0;
#ifndef BUG_OUTCOME_NO_ROW
            if
            :: jrow == J_NONE -> jrow = J_ABORTED
            :: else -> skip
            fi;
#ifndef UNFORCED_ABORT_ROW
            FLUSH;                                                 /* PresumeAbortAsync: forced */
#endif
#endif
#ifdef FIX_OUTCOME_REREAD
            wasCommit = JCOMMIT;
#endif
            if
            :: !wasCommit -> abortSaid = 1
            :: else -> skip
            fi;
            printf("C: outcome asked by %d, not in memory: answers %d (1 = Committed)\n", k, wasCommit);
            if
            :: k < N && wasCommit -> ADD(nOutC, k)
            :: k < N && !wasCommit -> ADD(nOutA, k)
            :: k == N && wasCommit -> nReplyC = 1
            :: k == N && !wasCommit -> nReplyA = 1
            fi;
            wasCommit = 0; k = 0 }
        :: else -> skip
        fi
    od;

crashed:
    printf("C: CRASH\n");
    goto restart
}

#if defined(INFLIGHT_DECISION_WRITE) || MAXJCRASH > 0
/* PostgreSQL finishing the decision insert, whether or not the process that sent it is still
 * alive (it died after sending COMMIT), or dropping it (it died before). ON CONFLICT DO
 * NOTHING: a row already there stays. With MAXJCRASH: the server flushes unforced rows at any
 * moment (the WAL writer, another transaction's forced commit), or crashes and comes back with
 * only what was flushed; a decision write in flight then is lost (the coordinator sees it fail
 * and writes again). */
active proctype JournalServer() {
    do
#ifdef INFLIGHT_DECISION_WRITE
    :: atomic { jinflight ->
        if
        :: jrow == J_NONE -> jrow = J_COMMITTING; printf("PG: the decision write lands\n")
        :: else -> skip
        fi;
        FLUSH;
        jinflight = 0 }
    :: atomic { jinflight -> jinflight = 0 }
#endif
#if MAXJCRASH > 0
    :: atomic { jdur != jrow -> jdur = jrow; printf("PG: WAL flushed (the row %d is durable)\n", jrow) }
    :: atomic { jcrash < MAXJCRASH ->
        jcrash++; jrow = jdur; jinflight = 0;
        printf("PG: the journal's server CRASHES and restarts: the row is now %d (0 = none)\n", jrow) }
#endif
    od
}
#endif

/* ---------------------------------------------------------------------------------------
 * initiator
 * ------------------------------------------------------------------------------------- */

active proctype Initiator() {
#ifdef EARLY_PREPARE
    byte k;
    /* the participants declared at Begin (TransactionOptions.Participants): every one gets
     * work, each SendAsync with prepare: true or plain */
#if WORKS > 1
    /* the first work plain to every participant, the second (the last) with prepare: true or plain */
    nWork = ALL;
    k = 0;
    do
    :: k < N -> if :: ADD(nWorkP, k) :: ADD(nWork2, k) fi; k++
    :: else -> k = 0; break
    od;
#else
    k = 0;
    do
    :: k < N -> if :: ADD(nWorkP, k) :: ADD(nWork, k) fi; k++
    :: else -> k = 0; break
    od;
#endif
    /* Prepared answers collected (_prepared); any subset of those that arrived: an answer may
     * be lost, or the app commits without awaiting every SendAsync */
    do
    :: atomic { (nDoneP & ~relay & ALL) != 0 -> PICK(k, nDoneP & ~relay & ALL); ADD(relay, k); printf("I: relays P%d's Prepared (Yes)\n", k); k = 0 }
    :: break
    od;
#else
    /* GlobalTransaction.SendAsync: the work to every participant (some may never arrive) */
    nWork = ALL;
#if WORKS > 1
    nWork2 = ALL;
#endif
#endif
    if
#ifdef AWAIT_WORKS
    :: atomic { wok1 == ALL && wok2 == ALL -> nCommitTx = 1; printf("I: every work answered Succeeded: CommitAsync\n") }
#else
    :: nCommitTx = 1                      /* CommitAsync */
#endif
    :: nRollbackTx = 1                    /* RollbackAsync: a branch refused, or the app */
    fi;
    do
#ifdef EARLY_PREPARE
    /* a later CommitAsync (after an answer in doubt) relays the Prepared answers that came in
     * since; the coordinator's Begin takes whichever CommitTransaction it handles first */
    :: atomic { nCommitTx && (nDoneP & ~relay & ALL) != 0 -> PICK(k, nDoneP & ~relay & ALL); ADD(relay, k); printf("I: relays P%d's Prepared (Yes)\n", k); k = 0 }
    /* RollbackAsync unanswered and commit never asked (or DisposeAsync): the initiator
     * concludes Aborted on its own ("branches roll back after their timeout") */
    :: atomic { nRollbackTx && !nCommitTx && !toldA -> toldA = 1; printf("I: rollback unanswered, commit never asked: concludes Aborted\n") }
#endif
    :: !nRollbackTx -> nRollbackTx = 1    /* the app rolls back after a commit in doubt */
    :: !nInitAsk -> nInitAsk = 1          /* TransactionInitiator asks for the outcome */
    :: atomic { nReplyC && !toldC -> toldC = 1; printf("I: told Committed\n") }
    :: atomic { nReplyA && !toldA -> toldA = 1; printf("I: told Aborted\n") }
    od
}

init {
    byte i;
    atomic {
        i = 0;
        do
        :: i < N -> run Participant(i); i++
        :: else -> break
        od
    }
}
