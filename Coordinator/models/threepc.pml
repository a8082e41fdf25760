/*
 * threepc.pml - TxCoord three-phase commit and the participants' termination protocol (the
 * quorum rules of E3PC), one transaction, three participants.
 *
 * Mirrors (README.md in this folder maps every transition to its code):
 *   coordinator  Coordinator/TxCoord.Coordinator/Engine/ThreePhaseCommitEngine.cs (the prepare
 *                phase it reuses from TwoPhaseCommitEngine.cs and TransactionEngine.cs) and
 *                Runtime/CoordinatorRuntime.ThreePhase.cs (adopting the participants' decision)
 *   participant  Participants/TxCoord.Participants/Participant/ParticipantRuntime.Termination.cs
 *                (PreCommit, answering peers, leading rounds, the decision rule),
 *                PostgreSql/BranchStateStore.cs (state, last_elected, last_attempt and the
 *                guards of their UPDATEs), Participant/ParticipantRuntime.cs (prepare, commit, abort)
 *
 * Failures: the coordinator crashes for good at any point, between any two of its sends.
 * Participants crash for good (at most MAXPCRASH crashes), or with -DPRESTART come back with
 * their database intact (branch, state row) and their memory lost (the round they led).
 * Messages: a broadcast reaches each addressee at once, or late (at most MAXLATE messages in
 * a run: delivered at any later moment), or is lost (at most MAXLOSS messages in a run, answers
 * included); a message to a participant that is down or on the other side of a split is lost
 * without counting. With -DPARTITIONS the network splits the participants and the coordinator into two
 * sides that cannot reach each other, once, and with -DHEAL joins them again later.
 *
 * Granularity: a leader asks every participant for its state in one step (the questions go out
 * together and the leader waits for the answers), and its proposal reaches each participant in
 * that participant's own step or late; a question that reaches a participant late is left out
 * (it would only make the participant join a round that does not count it, which only makes it
 * refuse more). Rounds of different leaders, the coordinator and late messages interleave freely.
 *
 * Variants (spin -D...):
 *   -DPARTITIONS          the network may split (once)
 *   -DHEAL                ... and heal afterwards
 *   -DNO_QUORUM           the partition rule off: a termination leader decides on whatever answered
 *                         (quorum 1), the coordinator commits once every participant acknowledged
 *                         PreCommit (textbook 3PC)
 *   -DELECTION            crash-only failures seen by a perfect failure detector: the lowest
 *                         live participant leads the next round, one round at a time
 *   -DRELIABLE            nothing is lost (crash-only failures); messages can still be late
 *   -DLIVENESS            a synchronous period, for the liveness check: ELECTION and RELIABLE,
 *                         nothing late, a leader waits for every live participant
 *   -DPRESTART            crashed participants restart
 *   -DLEADER_JOINS_FIRST  a leader joins its own round durably before it asks anyone (README,
 *                         finding 4: a restarted leader re-running its round). The code today:
 *                         LeadRoundAsync calls ReportStateAsync (JoinRoundSql) for itself, gives the
 *                         round up if that is refused, and only then asks its peers
 *   -DBUG_PRECOMMIT_AFTER_JOIN  negative control: a participant takes the coordinator's PreCommit
 *                         even after it joined a termination round (PreCommitSql without its
 *                         last_elected = 0 guard). The checks must catch it.
 *   -DSIMPLE_RULE         the decision rule as issue 3 words it: propose commit when any joined
 *                         participant is PreCommitted, abort otherwise (last_attempt ignored)
 *   -DFULL_PREPARE        the prepare phase too (work, votes, No, expiry, fencing); by default every
 *                         participant starts prepared with its Yes vote in (with a No or a missing
 *                         vote the coordinator aborts before any PreCommit exists)
 *   -DSLOW_SELF           a leader's requests to itself (it asks itself over the bus like any peer)
 *                         may time out, without counting as lost messages. With LEADER_JOINS_FIRST
 *                         the code no longer asks itself for its state (its join is its answer) but
 *                         still sends its proposal to itself over the bus
 *   -DMAXR=k              termination rounds, 2 to 4 (default 3: each participant leads one)
 *   -DMAXPCRASH=k         participant crashes (default 1)
 *   -DMAXLATE=k           late messages (default 1)
 *   -DMAXLOSS=k           lost messages (default 1; 0 with RELIABLE)
 *
 * Properties (pan -N name):
 *   consistent  never one participant committed while another aborted
 *   agree       the coordinator never holds a decision that a participant contradicts
 *   live        once the coordinator is down for good, every participant that is up eventually
 *               commits or aborts (check.sh --liveness, with -DLIVENESS)
 */

#define N 3
#define Q 2                       /* a majority of the 3 participants */

#ifdef LIVENESS
#define ELECTION
#define RELIABLE
#define MAXLATE 0
#endif
#ifdef RELIABLE
#define MAXLOSS 0
#endif
#ifndef MAXR
#define MAXR 3
#endif
#ifndef MAXPCRASH
#define MAXPCRASH 1
#endif
#ifndef MAXLATE
#define MAXLATE 1
#endif
#ifndef MAXLOSS
#define MAXLOSS 1
#endif

#ifdef NO_QUORUM
#define TQ 1                      /* termination quorum */
#define CQ N                      /* PreCommit acknowledgements the coordinator commits on */
#else
#define TQ Q                      /* LeadRoundAsync: quorum = participants.Count / 2 + 1 */
#define CQ Q                      /* TransactionState.PreCommitQuorum = Participants.Length / 2 + 1 */
#endif

#define ALL 7
#define HAS(set, i) ((((set) >> (i)) & 1) == 1)
#define ADD(set, i) set = (set) | (1 << (i))
#define DEL(set, i) set = (set) & (ALL - (1 << (i)))
#define COUNT(set) (((set) & 1) + (((set) >> 1) & 1) + (((set) >> 2) & 1))

/* branch status: BranchStore.BranchStatus, plus Working (an open transaction in memory) */
#define P_UNKNOWN   0
#define P_WORKING   1
#define P_PREPARED  2
#define P_COMMITTED 3
#define P_ABORTED   4

/* txcoord.branch_states.state of a prepared branch (BranchState) */
#define S_PREPARED 0
#define S_PC       1
#define S_PA       2

/* coordinator phase (TransactionPhase) */
#define C_PREPARING  0
#define C_FORCING    1            /* ForcingPreCommit */
#define C_PRECOMMIT  2            /* PreCommitting */
#define C_COMMITTING 3            /* Deciding and Committing: the commit decision is taken */
#define C_ABORTED    4

/* a leader's progress in its round */
#define L_IDLE    0
#define L_COLLECT 1               /* the states are in */
#define L_PROPOSE 2               /* ProposeTermination sent, answers coming in */

/* ---- participants: their database (survives a crash) ----------------------------------------- */
byte pst[N];                      /* branch status */
byte s3[N];                       /* state row: S_PREPARED, S_PC, S_PA */
byte le[N];                       /* last_elected */
byte att[N];                      /* last_attempt + 1; 0: none */
/* ---- participants: their processes ---------------------------------------------------------- */
bit  down[N];                     /* crashed (and not back) */
byte led[N];                      /* the last round this process led */
byte lr[N];                       /* the round being led; 0: none */
byte lph[N];                      /* L_IDLE, L_COLLECT, L_PROPOSE */
byte lans[N];                     /* who answered the proposal without accepting it (LIVENESS) */
byte ljoin[N];                    /* who joined the round */
bit  lfinC[N], lfinA[N];          /* a Committed / an Aborted report came in */
byte lmax[N];                     /* the highest last_attempt + 1 among those that joined */
bit  lallpc[N];                   /* every joined one with that last_attempt is PreCommitted */
#ifdef SIMPLE_RULE
bit  lanypc[N];                   /* some joined one is PreCommitted */
#define FORGETPC(j) lanypc[j] = 0
#else
#define FORGETPC(j) skip
#endif
bit  lprop[N];                    /* the proposal: 1 commit, 0 abort */
byte lacc[N];                     /* who accepted the proposal */
#ifdef ELECTION
byte started;                     /* the highest round any leader started */
#endif
/* ---- coordinator -------------------------------------------------------------------------------- */
byte cphase = C_PREPARING;
bit  cdown;
byte votes, pcacks;
/* ---- messages in flight (late ones, and those to the coordinator) ---------------------------- */
byte nPrepare;                    /* PrepareBranch, to j (FULL_PREPARE) */
byte nPreCommit, nCommit, nAbort; /* late PreCommitBranch / CommitBranch / AbortBranch, to j */
byte nYes, nNo, nPcAck, nCAck, nAAck;   /* from j, to the coordinator */
byte propC[5], propA[5];          /* late ProposeTermination of round r, to j */
byte decC, decA;                  /* TerminationDecided from leader k (bit k), to the coordinator */
byte ldC[N], ldA[N];              /* late TerminationDecided from leader k (index), to j (bit) */
/* ---- failure budgets ----------------------------------------------------------------------------- */
byte pcrash, lost, late;
/* ---- partitions: index N is the coordinator ------------------------------------------------------ */
bit  split;
bit  side[N + 1];
#define REACH(a, b) (!split || side[a] == side[b])
#define RMASK(a) (REACH(a, 0) | (REACH(a, 1) << 1) | (REACH(a, 2) << 2))
#define UPMASK ((!down[0]) | ((!down[1]) << 1) | ((!down[2]) << 2))
#define FROM(set, a) ((set) & RMASK(a))   /* a message from a sender in `set` can reach a */

#define ANYC (pst[0] == P_COMMITTED || pst[1] == P_COMMITTED || pst[2] == P_COMMITTED)
#define ANYA (pst[0] == P_ABORTED || pst[1] == P_ABORTED || pst[2] == P_ABORTED)
#define UNDECIDED(j) (!down[j] && (pst[j] == P_WORKING || pst[j] == P_PREPARED))
#define ALLDONE (!UNDECIDED(0) && !UNDECIDED(1) && !UNDECIDED(2))

ltl consistent { [] !(ANYC && ANYA) }
ltl agree      { [] !((cphase == C_COMMITTING && ANYA) || (cphase == C_ABORTED && ANYC)) }
ltl live       { [] (cdown -> <> ALLDONE) }

#define LOSSY (lost < MAXLOSS)
#ifdef SLOW_SELF
#define SLOWSELF true
#else
#define SLOWSELF false
#endif
#define LATE (late < MAXLATE)

/* Round r is led by participant (r - 1) mod n, participants sorted by id. The code leads
 * NextRoundLedBy(rank, n, highest): the first such round above the highest round it has seen
 * (TerminationProgress, in memory, and at least its own last_elected). Modelled: any round it
 * leads above its last_elected and above the last round it led since it (re)started. */
#define LEADER(r) (((r) + N - 1) % N)
#define CANLEAD(j, r) (MAXR >= (r) && LEADER(r) == (j) && le[j] < (r) && led[j] < (r) && MYTURN(r))

#ifdef ELECTION
#define NOLEADER ((lph[0] == L_IDLE || down[0]) && (lph[1] == L_IDLE || down[1]) && (lph[2] == L_IDLE || down[2]))
/* a participant that is down or has finished its branch leads nothing: its turn passes */
#define PASSES(x) (down[x] || pst[x] != P_PREPARED)
#define MYTURN(r) ((r) == started + 1 || ((r) == started + 2 && PASSES(LEADER(started + 1))) || \
                   ((r) == started + 3 && PASSES(LEADER(started + 1)) && PASSES(LEADER(started + 2))))
#else
#define NOLEADER true
#define MYTURN(r) true
#endif

#ifdef LIVENESS
/* a leader goes on once every live participant answered */
#define WAITED(j) (((ALL - (lacc[j] | lans[j])) & UPMASK) == 0)
#define ANSWERED(k, q) ADD(lans[k], q)
#else
#define WAITED(j) true
#define ANSWERED(k, q) skip
#endif

/* The round at j is over: forget it. */
#define ENDROUND(j) lph[j] = L_IDLE; lr[j] = 0; lans[j] = 0; ljoin[j] = 0; lfinC[j] = 0; lfinA[j] = 0; \
                    lmax[j] = 0; lallpc[j] = 0; lprop[j] = 0; lacc[j] = 0; FORGETPC(j)

/* ---------------------------------------------------------------------------------------------------
 * what a participant does with each message (ParticipantRuntime, ParticipantRuntime.Termination)
 * ------------------------------------------------------------------------------------------------- */

/* CommitAsync, AbortAsync */
inline commitBranch(q) {
    if
    :: pst[q] == P_PREPARED -> pst[q] = P_COMMITTED; printf("P%d: COMMIT PREPARED\n", q)
    :: else -> skip
    fi
}

inline abortBranch(q) {
    if
    :: pst[q] == P_PREPARED || pst[q] == P_WORKING || pst[q] == P_UNKNOWN -> pst[q] = P_ABORTED; printf("P%d: rolled back\n", q)
    :: else -> skip
    fi
}

/* PreCommitAsync: PreCommitSql takes it only while last_elected = 0 and the state is prepared or
 * precommitted, then BranchPreCommitted; a finished branch answers BranchCommitted/BranchAborted,
 * which the coordinator adopts; refused: no answer */
#ifdef BUG_PRECOMMIT_AFTER_JOIN
#define TAKES_PRECOMMIT(q) (s3[q] != S_PA)
#else
#define TAKES_PRECOMMIT(q) (le[q] == 0 && s3[q] != S_PA)
#endif
inline onPreCommit(q) {
    if
    :: pst[q] == P_PREPARED && TAKES_PRECOMMIT(q) ->
        s3[q] = S_PC; att[q] = 1; printf("P%d: PreCommitted (round 0)\n", q);
        if
        :: !cdown -> ADD(nPcAck, q)
        :: else -> skip
        fi
    :: pst[q] == P_PREPARED && !TAKES_PRECOMMIT(q) -> printf("P%d: refuses PreCommit\n", q)
    :: pst[q] == P_COMMITTED && !cdown -> ADD(nCAck, q)
    :: pst[q] == P_ABORTED && !cdown -> ADD(nAAck, q)
    :: else -> skip
    fi
}

/* AcceptProposalAsync: ProposeTermination of round rr, outcome cc, at q. A finished branch accepts
 * only its own outcome; a prepared one takes PreCommitted (cc) or PreAborted with last_attempt =
 * last_elected = rr unless it joined a higher round (AcceptProposalSql: last_elected <= rr). The
 * answer counts if the round's leader still waits for it; it can be lost. */
inline accept(q, rr, cc) {
    k = LEADER(rr);
    if
    :: pst[q] == P_PREPARED && le[q] <= rr ->
        s3[q] = (cc -> S_PC : S_PA); att[q] = rr + 1; le[q] = rr;
        printf("P%d: accepts %d (1 = commit) in round %d\n", q, cc, rr);
        ok = 1
    :: (cc && pst[q] == P_COMMITTED) || (!cc && pst[q] == P_ABORTED) -> ok = 1
    :: else -> ok = 0; printf("P%d: refuses round %d\n", q, rr)
    fi;
    if
    :: !down[k] && lr[k] == rr && lph[k] == L_PROPOSE && lprop[k] == cc && REACH(q, k) ->
        if
        :: ok -> ADD(lacc[k], q)
        :: else -> ANSWERED(k, q)
        fi
    :: LOSSY -> lost++
    :: else -> skip
    fi;
    ok = 0; k = 0
}

/* ---------------------------------------------------------------------------------------------------
 * a leader's round (RunTerminationRoundAsync, LeadRoundAsync, DecideAsync)
 * ------------------------------------------------------------------------------------------------- */

/* GetBranchState of the round, at p (ReportStateAsync): a branch that never voted Yes is fenced
 * (rolled back, Aborted); a prepared one joins the round (JoinRoundSql: last_elected <= r). The
 * answer reaches the leader, or is lost; or the question never reaches p. */
inline collect(j, p) {
    if
    :: !down[p] && REACH(j, p) ->
        if
        :: pst[p] == P_WORKING || pst[p] == P_UNKNOWN -> pst[p] = P_ABORTED; printf("P%d: fenced by round %d\n", p, lr[j])
        :: else -> skip
        fi;
        if
        :: pst[p] == P_PREPARED && le[p] <= lr[j] -> le[p] = lr[j]; printf("P%d: joins round %d\n", p, lr[j])
        :: pst[p] == P_PREPARED && le[p] > lr[j] -> printf("P%d: refuses round %d\n", p, lr[j])
        :: else -> skip
        fi;
        if
        :: true ->
            if
            :: pst[p] == P_COMMITTED -> lfinC[j] = 1
            :: pst[p] == P_ABORTED -> lfinA[j] = 1
            :: pst[p] == P_PREPARED && le[p] == lr[j] ->
                ADD(ljoin[j], p);
#ifdef SIMPLE_RULE
                if
                :: s3[p] == S_PC -> lanypc[j] = 1
                :: else -> skip
                fi;
#endif
                if
                :: s3[p] != S_PREPARED && att[p] > lmax[j] -> lmax[j] = att[p]; lallpc[j] = (s3[p] == S_PC)
                :: s3[p] != S_PREPARED && att[p] == lmax[j] -> lallpc[j] = (lallpc[j] && s3[p] == S_PC)
                :: else -> skip
                fi
            :: else -> skip
            fi
        :: LOSSY -> lost++
        fi
    :: !down[p] && REACH(j, p) && LOSSY -> lost++            /* the question is lost */
    /* the leader's own question times out. With LEADER_JOINS_FIRST the code takes its own answer from
     * its join (ReportStateAsync called directly, not over the bus), never lost: the model keeps the
     * timeout, which only counts the leader out, so it checks more runs than the code has */
    :: p == j && SLOWSELF -> printf("P%d: its own question times out\n", j)
    :: else -> skip
    fi
}

/* the leader's proposal on its way to p: now, late, or never */
inline offer(j, p) {
    if
    :: !down[p] && REACH(j, p) -> accept(p, r, dc)
    :: LATE ->
        late++;
        if
        :: dc -> ADD(propC[r], p)
        :: else -> ADD(propA[r], p)
        fi
    :: LOSSY -> lost++
    :: p == j && SLOWSELF -> printf("P%d: its own proposal times out\n", j)
    :: down[p] || !REACH(j, p) -> skip
    fi
}

/* TerminationDecided on its way to p: now, late, or never */
inline tell(j, p, c) {
    if
    :: p == j -> skip
    :: p != j && !down[p] && REACH(j, p) ->
        printf("P%d: told %d (1 = commit) by P%d\n", p, c, j);
        if
        :: c -> commitBranch(p)
        :: else -> abortBranch(p)
        fi
    :: p != j && LATE ->
        late++;
        if
        :: c -> ADD(ldC[j], p)
        :: else -> ADD(ldA[j], p)
        fi
    :: p != j && LOSSY -> lost++
    :: p != j && (down[p] || !REACH(j, p)) -> skip
    fi
}

/* DecideAsync: finish the leader's own branch, then TerminationDecided to every peer and to the
 * coordinator; the leader can die before or between the sends */
#define PCRASH if :: pcrash < MAXPCRASH -> pcrash++; down[j] = 1; printf("P%d: CRASH\n", j); goto crashed :: true -> skip fi

inline decide(j, c) {
    dc = c;
    printf("P%d: round %d decides %d (1 = commit)\n", j, lr[j], dc);
    if
    :: dc -> commitBranch(j)
    :: else -> abortBranch(j)
    fi;
    ENDROUND(j);
    PCRASH;
    tell(j, 0, dc); PCRASH;
    tell(j, 1, dc); PCRASH;
    tell(j, 2, dc); PCRASH;
    if
    :: dc -> ADD(decC, j)
    :: else -> ADD(decA, j)
    fi;
    dc = 0
}

/* With the states in: a Committed or Aborted report decides that outcome; otherwise, with a
 * quorum joined, propose commit when every joined participant with the highest last_attempt is
 * PreCommitted, abort otherwise (also when none has a last_attempt); without a quorum, nothing
 * (blocked). */
inline endCollect(j) {
    if
    :: lfinC[j] -> decide(j, 1)
    :: !lfinC[j] && lfinA[j] -> decide(j, 0)
    :: !lfinC[j] && !lfinA[j] && COUNT(ljoin[j]) < TQ ->
        printf("P%d: round %d blocked, %d joined\n", j, lr[j], COUNT(ljoin[j]));
        ENDROUND(j)
    :: !lfinC[j] && !lfinA[j] && COUNT(ljoin[j]) >= TQ ->
#ifdef SIMPLE_RULE
        lprop[j] = lanypc[j];
#else
        lprop[j] = (lmax[j] > 0 && lallpc[j]);
#endif
        printf("P%d: round %d proposes %d (1 = commit)\n", j, lr[j], lprop[j]);
        lph[j] = L_PROPOSE; lacc[j] = 0; lans[j] = 0;
        r = lr[j]; dc = lprop[j];
        offer(j, 0); offer(j, 1); offer(j, 2);
        r = 0; dc = 0
    fi
}

/* with the proposal's answers in: decided when a quorum accepted */
inline endPropose(j) {
    if
    :: COUNT(lacc[j]) >= TQ -> decide(j, lprop[j])
    :: else -> printf("P%d: round %d: too few accepted\n", j, lr[j]); ENDROUND(j)
    fi
}

proctype Participant(byte j) {
    byte r, k;
    bit ok, dc;
loop:
    do
    /* ---- the coordinator's messages ---- */
#ifdef FULL_PREPARE
    /* HandlePrepareAsync: RecordPreparingAsync then PREPARE TRANSACTION and Yes; or No */
    :: atomic { !down[j] && HAS(nPrepare, j) && REACH(j, N) && pst[j] == P_WORKING ->
        if
        :: pst[j] = P_PREPARED; s3[j] = S_PREPARED; ADD(nYes, j); printf("P%d: PREPARE, votes Yes\n", j)
        :: pst[j] = P_ABORTED; ADD(nNo, j); printf("P%d: votes No\n", j)
        fi }
    /* no Prepare before the branch timeout (ExpireBranchesAsync) */
    :: atomic { !down[j] && pst[j] == P_WORKING -> pst[j] = P_ABORTED; printf("P%d: branch expired\n", j) }
#endif
    /* late PreCommitBranch, CommitBranch, AbortBranch */
    :: atomic { !down[j] && HAS(nPreCommit, j) && REACH(j, N) -> DEL(nPreCommit, j); printf("P%d: late PreCommit\n", j); onPreCommit(j) }
    :: atomic { !down[j] && HAS(nCommit, j) && REACH(j, N) -> DEL(nCommit, j); commitBranch(j) }
    :: atomic { !down[j] && HAS(nAbort, j) && REACH(j, N) -> DEL(nAbort, j); abortBranch(j) }

    /* ---- late termination messages ---- */
    :: atomic { !down[j] && HAS(propC[1], j) && REACH(j, LEADER(1)) -> DEL(propC[1], j); printf("P%d: late proposal\n", j); accept(j, 1, 1) }
    :: atomic { !down[j] && HAS(propA[1], j) && REACH(j, LEADER(1)) -> DEL(propA[1], j); printf("P%d: late proposal\n", j); accept(j, 1, 0) }
    :: atomic { !down[j] && HAS(propC[2], j) && REACH(j, LEADER(2)) -> DEL(propC[2], j); printf("P%d: late proposal\n", j); accept(j, 2, 1) }
    :: atomic { !down[j] && HAS(propA[2], j) && REACH(j, LEADER(2)) -> DEL(propA[2], j); printf("P%d: late proposal\n", j); accept(j, 2, 0) }
    :: atomic { !down[j] && HAS(propC[3], j) && REACH(j, LEADER(3)) -> DEL(propC[3], j); printf("P%d: late proposal\n", j); accept(j, 3, 1) }
    :: atomic { !down[j] && HAS(propA[3], j) && REACH(j, LEADER(3)) -> DEL(propA[3], j); printf("P%d: late proposal\n", j); accept(j, 3, 0) }
    :: atomic { !down[j] && HAS(propC[4], j) && REACH(j, LEADER(4)) -> DEL(propC[4], j); printf("P%d: late proposal\n", j); accept(j, 4, 1) }
    :: atomic { !down[j] && HAS(propA[4], j) && REACH(j, LEADER(4)) -> DEL(propA[4], j); printf("P%d: late proposal\n", j); accept(j, 4, 0) }
    :: atomic { !down[j] && (HAS(ldC[0], j) && REACH(j, 0) || HAS(ldC[1], j) && REACH(j, 1) || HAS(ldC[2], j) && REACH(j, 2)) ->
        DEL(ldC[0], j); DEL(ldC[1], j); DEL(ldC[2], j); printf("P%d: late decision: commit\n", j); commitBranch(j) }
    :: atomic { !down[j] && (HAS(ldA[0], j) && REACH(j, 0) || HAS(ldA[1], j) && REACH(j, 1) || HAS(ldA[2], j) && REACH(j, 2)) ->
        DEL(ldA[0], j); DEL(ldA[1], j); DEL(ldA[2], j); printf("P%d: late decision: abort\n", j); abortBranch(j) }

    /* ---- leading a round ---- */
    /* A prepared branch that hears nothing useful from the coordinator leads the next round it
     * leads; when is a matter of timeouts, so it may be at any moment: the leader asks everyone
     * for its state, and the answers come in (or not). */
    :: atomic { !down[j] && pst[j] == P_PREPARED && lph[j] == L_IDLE && NOLEADER &&
                (CANLEAD(j, 1) || CANLEAD(j, 2) || CANLEAD(j, 3) || CANLEAD(j, 4)) ->
        if
        :: CANLEAD(j, 1) -> lr[j] = 1
        :: CANLEAD(j, 2) -> lr[j] = 2
        :: CANLEAD(j, 3) -> lr[j] = 3
        :: CANLEAD(j, 4) -> lr[j] = 4
        fi;
        led[j] = lr[j];
#ifdef ELECTION
        if
        :: lr[j] > started -> started = lr[j]
        :: else -> skip
        fi;
#endif
        printf("P%d: leads round %d\n", j, lr[j]);
#ifdef LEADER_JOINS_FIRST
        /* LeadRoundAsync: ReportStateAsync(gid, Id, round) before AskAllAsync to the peers, in the
         * code one forced UPDATE (JoinRoundSql: last_elected <= r). Here it cannot be refused:
         * CANLEAD holds le[j] < r in this atomic step. In the code a higher round's question can
         * reach the branch between reading its row and the join; the join is then refused and the
         * round given up (no question sent), which is this model with that question delivered first
         * (CANLEAD(j, r) false). The leader's own answer is collect(j, j) below, from this join. */
        le[j] = lr[j];
#endif
        lph[j] = L_COLLECT;
        collect(j, 0); collect(j, 1); collect(j, 2) }
    :: atomic { !down[j] && lph[j] == L_COLLECT -> endCollect(j) }
    :: atomic { !down[j] && lph[j] == L_PROPOSE && WAITED(j) -> endPropose(j) }

    /* ---- crashes ---- */
    :: atomic { !down[j] && pcrash < MAXPCRASH -> pcrash++; down[j] = 1; printf("P%d: CRASH\n", j) }
#ifdef PRESTART
    :: atomic { down[j] ->
        down[j] = 0; led[j] = 0; ENDROUND(j);
        if
        :: pst[j] == P_WORKING -> pst[j] = P_UNKNOWN              /* its open transaction rolled back */
        :: else -> skip
        fi;
        printf("P%d: restarts\n", j) }
#endif
    od;
crashed:
    /* the leader died in DecideAsync: back to the loop, where down[j] holds it */
    r = 0; k = 0; ok = 0; dc = 0;
    goto loop
}

/* ---------------------------------------------------------------------------------------------------
 * coordinator: crashes for good
 * ------------------------------------------------------------------------------------------------- */

/* it dies; what was on its way to it no longer matters */
#define CDIE cdown = 1; nYes = 0; nNo = 0; nPcAck = 0; nCAck = 0; nAAck = 0; votes = 0; pcacks = 0; \
             printf("C: CRASH (for good)\n"); goto dead
#define CCRASH if :: CDIE :: true -> skip fi

/* a message from the coordinator to q: now (q handles it in this step), late, or never */
#define TOPARTICIPANT(q, pending, handle) \
    if \
    :: !down[q] && REACH(N, q) -> handle \
    :: LATE -> late++; ADD(pending, q) \
    :: LOSSY -> lost++ \
    :: down[q] || !REACH(N, q) -> skip \
    fi

inline abortAll() {
    printf("C: abort\n");
    cphase = C_ABORTED; nYes = 0; nNo = 0; nPcAck = 0; nCAck = 0; nAAck = 0; votes = 0; pcacks = 0;
    TOPARTICIPANT(0, nAbort, abortBranch(0)); CCRASH;
    TOPARTICIPANT(1, nAbort, abortBranch(1)); CCRASH;
    TOPARTICIPANT(2, nAbort, abortBranch(2)); CCRASH
}

inline decideCommit() {
    printf("C: commit decision durable\n");
    cphase = C_COMMITTING; nYes = 0; nNo = 0; nPcAck = 0; nCAck = 0; nAAck = 0; votes = 0; pcacks = 0;
    TOPARTICIPANT(0, nCommit, commitBranch(0)); CCRASH;
    TOPARTICIPANT(1, nCommit, commitBranch(1)); CCRASH;
    TOPARTICIPANT(2, nCommit, commitBranch(2)); CCRASH
}

active proctype Coordinator() {
#ifdef FULL_PREPARE
    /* Begin: PrepareBranch to every participant */
    atomic { nPrepare = ALL }
#else
    votes = ALL; cphase = C_FORCING;
#endif
    do
    :: atomic { CDIE }
    /* Preparing: Yes votes; all in -> ForcingPreCommit. A No, a vote timeout, the deadline or a
     * rollback aborts. */
    :: atomic { cphase == C_PREPARING && (nYes & RMASK(N) & (ALL - votes)) != 0 ->
        votes = votes | (nYes & RMASK(N));
        if
        :: votes == ALL -> cphase = C_FORCING; nYes = 0
        :: else -> skip
        fi }
    :: atomic { cphase == C_PREPARING -> abortAll() }
    /* ForcingPreCommit: the PreCommit row is durable; PreCommitBranch to every participant */
    :: atomic { cphase == C_FORCING ->
        printf("C: PreCommit durable\n");
        cphase = C_PRECOMMIT;
        TOPARTICIPANT(0, nPreCommit, onPreCommit(0)); CCRASH;
        TOPARTICIPANT(1, nPreCommit, onPreCommit(1)); CCRASH;
        TOPARTICIPANT(2, nPreCommit, onPreCommit(2)) }
    /* PreCommitting: acknowledgements from a quorum -> the commit decision */
    :: atomic { cphase == C_PRECOMMIT && (nPcAck & RMASK(N) & (ALL - pcacks)) != 0 ->
        pcacks = pcacks | (nPcAck & RMASK(N));
        if
        :: COUNT(pcacks) >= CQ -> decideCommit()
        :: else -> skip
        fi }
    /* PreCommitting: a branch answered that it committed / rolled back (termination decided) */
    :: atomic { cphase == C_PRECOMMIT && (nCAck & RMASK(N)) != 0 -> printf("C: adopts a commit\n"); decideCommit() }
    :: atomic { cphase == C_PRECOMMIT && (nAAck & RMASK(N)) != 0 -> printf("C: adopts an abort\n"); abortAll() }
    /* TerminationDecided: adopted in every phase that has not decided */
    :: atomic { (cphase == C_PREPARING || cphase == C_FORCING || cphase == C_PRECOMMIT) && FROM(decC, N) != 0 ->
        printf("C: adopts the participants' commit\n"); decideCommit() }
    :: atomic { (cphase == C_PREPARING || cphase == C_FORCING || cphase == C_PRECOMMIT) && FROM(decA, N) != 0 ->
        printf("C: adopts the participants' abort\n"); abortAll() }
    od;
dead:
    skip
}

#ifdef PARTITIONS
/* the network splits the participants and the coordinator into two sides, once (-DHEAL: and
 * joins them again later) */
active proctype Network() {
    atomic {
        if
        :: side[0] = 0
        :: side[0] = 1
        fi;
        if
        :: side[1] = 0
        :: side[1] = 1
        fi;
        if
        :: side[2] = 0
        :: side[2] = 1
        fi;
        side[3] = 0;                  /* the coordinator's side is side 0 (the names of the sides do not matter) */
        split = 1;
        printf("NET: split: participants on sides %d %d %d, coordinator on %d\n", side[0], side[1], side[2], side[3])
    }
#ifdef HEAL
    atomic { split = 0; printf("NET: healed\n") }
#endif
}
#endif

init {
    atomic {
#ifdef FULL_PREPARE
        pst[0] = P_WORKING; pst[1] = P_WORKING; pst[2] = P_WORKING;   /* the work arrived */
#else
        pst[0] = P_PREPARED; pst[1] = P_PREPARED; pst[2] = P_PREPARED;
#endif
        run Participant(0); run Participant(1); run Participant(2)
    }
}
