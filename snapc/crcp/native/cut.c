/* cut.c: the rounds of the cut. The ranks agree, on the communicators' twins, on how many
 * collectives each communicator must have completed, run on to exactly that, and agree again
 * until every rank is there (or one is refused, or waited too long). */
#include "layer.h"

/* run nonblocking requests of the protocol to completion without holding the application */
static int protocol_wait(int n, MPI_Request *rs, int poll_collectives)
{
    for (;;) {
        int flag = 0;
        pthread_mutex_lock(&gate);
        int rc = PMPI_Testall(n, rs, &flag, MPI_STATUSES_IGNORE);
        if (poll_collectives)
            for (int k = 0; k < nT; k++)
                if (T[k].used && T[k].kind == RQ_COLL && !T[k].done) poll_one(k, &rc);
        pthread_mutex_unlock(&gate);
        if (rc || flag) return rc;
        sched_yield();
    }
}

static int cut_reached(void)
{
    for (int i = 0; i < ncomm; i++)
        if (C[i].live && C[i].r != MPI_COMM_NULL && C[i].completed < C[i].target) return 0;
    return 1;
}
static void report_counts(const char *where)
{
    fprintf(stderr, "crcp %d: %s:", (int)getpid(), where);
    for (int i = 0; i < ncomm; i++)
        if (C[i].live) fprintf(stderr, " [%d] %lu/%lu/%lu", i, (unsigned long)C[i].started,
                               (unsigned long)C[i].completed, (unsigned long)C[i].target);
    fprintf(stderr, "\n");
}

/* Rounds until every rank has completed exactly `target` collectives on every
 * communicator. Each round agrees on the targets (phase 1: no collective starts meanwhile):
 * the most any member has started, one more where a rank short of its cut is held wanting
 * to start the next one (its program needs it before the collective it is short of), then
 * lets the ranks run on to them (phase 2). Every round also agrees, in one MAX, on whether
 * some rank is short of its cut, has waited longer than timeout_ms (then all give up in
 * the same round: a rank deciding alone would leave the others in the next one), or holds
 * something the layer refuses.
 * Called with the gate held (and given back with it held), by crcp_quiesce; returns an MPI error
 * of the agreement, and in *out what the last round agreed on. */
int cut_rounds(int timeout_ms, double t0, int mine_refused, struct cut_outcome *out)
{
    int rc = 0, nr, any_refused = 0;
    int n = ncomm, all_done = 0, any_late = 0;
    uint64_t *want = calloc(n + 1, sizeof *want), *agreed = calloc(n + 1, sizeof *agreed);
    MPI_Request *rs = calloc(n + 1, sizeof *rs);
    enum { SHORT, LATE, REFUSED };
    int mine[3], all[3] = {0};
    for (int round = 0; !rc; round++) {
        phase = 1;
        int done = round > 0 && cut_reached();
        nr = 0;
        for (int i = 0; i < n && !rc; i++) {
            want[i] = C[i].started + (!done && C[i].waiting ? 1 : 0);
            if (!C[i].live || C[i].shadow == MPI_COMM_NULL) { agreed[i] = want[i]; continue; }
            rc = PMPI_Iallreduce(&want[i], &agreed[i], 1, MPI_UINT64_T, MPI_MAX, C[i].shadow, &rs[nr++]);
        }
        mine[SHORT] = !done;
        mine[LATE] = timeout_ms > 0 && (now() - t0) * 1e3 > timeout_ms;
        mine[REFUSED] = mine_refused;
        if (!rc) rc = PMPI_Iallreduce(mine, all, 3, MPI_INT, MPI_MAX, C[0].shadow, &rs[nr++]);
        pthread_mutex_unlock(&gate);
        if (!rc) rc = protocol_wait(nr, rs, 0);
        pthread_mutex_lock(&gate);
        all_done = !all[SHORT]; any_late = all[LATE]; any_refused = all[REFUSED];
        if (rc || any_refused || all_done || any_late) break;
        for (int i = 0; i < n; i++) C[i].target = agreed[i];
        phase = 2;
        pthread_cond_broadcast(&wake);
        if (verbose && round == 0) report_counts("targets (started/completed/target)");
        /* run on to the targets, for a while: a rank held short of them shows in the next round */
        for (double t = now(), last = t; !cut_reached() && now() - t < 0.01 * (round < 20 ? 1 : 10);) {
            for (int k = 0; k < nT; k++)
                if (T[k].used && T[k].kind == RQ_COLL && !T[k].done) poll_one(k, &rc);
            if (verbose && now() - last > 2) { report_counts("still short of the cut"); last = now(); }
            pthread_mutex_unlock(&gate);
            sched_yield();
            pthread_mutex_lock(&gate);
        }
    }
    free(want); free(agreed); free(rs);
    out->all_done = all_done; out->any_late = any_late; out->any_refused = any_refused;
    return rc;
}
