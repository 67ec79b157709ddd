/* cut.c: the rounds of the cut. The ranks agree on how many collectives each collective context
 * (a communicator, a window, a file) must have completed, run on to exactly that, and agree
 * again until every rank is there (or one is refused, or waited too long). Contexts are named
 * by the id their members agree on (comm.c), and every agreement runs over the layer's own
 * duplicate of the world, so that a communicator needs no twin of the layer's: every rank
 * gathers everyone's (id, count) pairs and keeps, for its own contexts, the largest count. */
#include "layer.h"

/* run nonblocking requests of the protocol to completion without holding the application */
int protocol_wait(int n, MPI_Request *rs)
{
    for (;;) {
        int flag = 0;
        pthread_mutex_lock(&gate);
        int rc = PMPI_Testall(n, rs, &flag, MPI_STATUSES_IGNORE);
        pthread_mutex_unlock(&gate);
        if (rc || flag) return rc;
        sched_yield();
    }
}

/* a context the cut counts: the application's communicators, windows' and files' contexts */
static int counted(int i)
{
    return C[i].used && C[i].id && !C[i].foreign && C[i].kind != K_SELF && !context_alone(i) && (C[i].app || C[i].holds || C[i].kind == K_WINCTX ||
            C[i].kind == K_FILECTX);
}
static int cut_reached(void)
{
    if (inside) return 0;
    for (int i = 0; i < ncomm; i++)
        if (counted(i) && C[i].completed < C[i].target) return 0;
    return 1;
}
static void report_counts(const char *where)
{
    fprintf(stderr, "crcp %d: %s:", (int)getpid(), where);
    if (waiting_blocking) fprintf(stderr, " (%d held before a blocking call)", waiting_blocking);
    for (int i = 0; i < ncomm; i++)
        if (counted(i)) fprintf(stderr, " [%d] %lu/%lu/%lu", i, (unsigned long)C[i].started,
                                (unsigned long)C[i].completed, (unsigned long)C[i].target);
    if (inside) fprintf(stderr, " (%d inside a blocking call)", inside);
    fprintf(stderr, "\n");
}
static void poll_collectives(int *rc)
{
    for (int k = 0; k < nT; k++)
        if (T[k].used && (T[k].kind == RQ_COLL || T[k].kind == RQ_PCOLL) && !T[k].done) poll_one(k, rc);
}

/* everyone's (id, count) pairs, gathered (gate held on entry and on return; let go meanwhile) */
static int gather_counts(uint64_t *mine, int n, uint64_t **all, int *total, int *flags, int *allflags)
{
    int size = C[0].size, rc;
    int *counts = calloc(size, sizeof *counts), *displs = calloc(size, sizeof *displs);
    MPI_Request rs[2];
    int two = 2 * n;
    *all = NULL;
    if (!counts || !displs) { free(counts); free(displs); return MPI_ERR_NO_MEM; }
    rc = PMPI_Iallgather(&two, 1, MPI_INT, counts, 1, MPI_INT, proto_comm, &rs[0]);
    if (!rc) rc = PMPI_Iallreduce(flags, allflags, 3, MPI_INT, MPI_MAX, proto_comm, &rs[1]);
    pthread_mutex_unlock(&gate);
    if (!rc) rc = protocol_wait(2, rs);
    pthread_mutex_lock(&gate);
    *total = 0;
    for (int r = 0; r < size; r++) { displs[r] = *total; *total += counts[r]; }
    *all = malloc((*total + 1) * sizeof **all);
    if (!*all) rc = MPI_ERR_NO_MEM;
    if (!rc) rc = PMPI_Iallgatherv(mine, two, MPI_UINT64_T, *all, counts, displs, MPI_UINT64_T, proto_comm, &rs[0]);
    pthread_mutex_unlock(&gate);
    if (!rc) rc = protocol_wait(1, rs);
    pthread_mutex_lock(&gate);
    free(counts); free(displs);
    return rc;
}

/* Rounds until every rank has completed exactly `target` collectives on every context. Each
 * round agrees on the targets (phase 1: no collective, nor blocking call, starts meanwhile):
 * the most any member has started, one more where a rank is held wanting to start the next one
 * while some rank is short of its cut (its program may need it before what the other is short
 * of), then lets the ranks run on to them (phase 2). Every round also agrees, in one MAX, on
 * whether some rank is short of its cut, has waited longer than timeout_ms (then all give up
 * in the same round: a rank deciding alone would leave the others in the next one), or holds
 * something the layer refuses.
 * Called with the gate held (and given back with it held), by crcp_quiesce; returns an MPI error
 * of the agreement, and in *out what the last round agreed on. */
int cut_rounds(int timeout_ms, double t0, int mine_refused, struct cut_outcome *out)
{
    int rc = 0, any_refused = 0, all_done = 0, any_late = 0, any_short = 0;
    enum { SHORT, LATE, REFUSED };
    for (int round = 0; !rc; round++) {
        phase = 1;
        int done = round > 0 && cut_reached();
        int n = 0;
        uint64_t *mine = malloc((2 * (ncomm + nZ) + 2) * sizeof *mine);
        if (!mine) { rc = MPI_ERR_NO_MEM; break; }
        for (int i = 0; i < ncomm; i++) {
            if (!counted(i)) continue;
            mine[2 * n] = C[i].id;
            mine[2 * n + 1] = C[i].started + (C[i].waiting && (!done || any_short) ? 1 : 0);
            n++;
        }
        for (int z = 0; z < nZ; z++) { mine[2 * n] = Z[z].id; mine[2 * n + 1] = Z[z].started; n++; }
        int flags[3] = {!done, timeout_ms > 0 && (now() - t0) * 1e3 > timeout_ms, mine_refused}, all[3] = {0};
        uint64_t *every = NULL;
        int total = 0;
        rc = gather_counts(mine, n, &every, &total, flags, all);
        free(mine);
        all_done = !all[SHORT]; any_late = all[LATE]; any_refused = all[REFUSED]; any_short = all[SHORT];
        if (!rc)
            for (int i = 0; i < ncomm; i++) {
                if (!counted(i)) continue;
                uint64_t t = C[i].started;
                for (int k = 0; k < total; k += 2)
                    if (every[k] == C[i].id && every[k + 1] > t) t = every[k + 1];
                C[i].target = t;
            }
        free(every);
        if (rc || any_refused || all_done || any_late) break;
        phase = 2;
        pthread_cond_broadcast(&wake);
        if (verbose && round == 0) report_counts("targets (started/completed/target)");
        /* run on to the targets, for a while: a rank held short of them shows in the next round */
        for (double t = now(); !cut_reached() && now() - t < 0.01 * (round < 20 ? 1 : 10);) {
            poll_collectives(&rc);
            pthread_mutex_unlock(&gate);
            sched_yield();
            pthread_mutex_lock(&gate);
        }
    }
    if (verbose && any_late && !all_done) report_counts("gave up short of the cut");
    if (!rc && all_done) nZ = 0; /* every member is past the contexts freed before the cut */
    out->all_done = all_done; out->any_late = any_late; out->any_refused = any_refused;
    return rc;
}
