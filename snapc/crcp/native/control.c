/* control.c: what the rank's app coordinator calls through ctypes (snapc/crcp/__init__.py):
 * crcp_quiesce (the cut, the drain, the teardown), crcp_resume (a new session, the objects made
 * again, the receives posted again), crcp_active and crcp_stats. */
#include "layer.h"

double stat_cut, stat_drain, stat_teardown, stat_rebuild, stat_msgs, stat_bytes;

int mpi_error(int rc, char *err, int errlen, const char *what)
{
    char s[MPI_MAX_ERROR_STRING] = "";
    int l = 0;
    PMPI_Error_string(rc, s, &l);
    snprintf(err, errlen, "%s: %s", what, s);
    return -1;
}

EXPORT int crcp_active(void) { return state == 1 || state == 2; }

EXPORT int crcp_quiesce(int timeout_ms, char *err, int errlen)
{
    char why[512];
    double t0 = now();
    stat_msgs = stat_bytes = 0;
    protocol_wants_gate = 1;
    pthread_mutex_lock(&gate);
    if (state != 1) {
        pthread_mutex_unlock(&gate);
        protocol_wants_gate = 0;
        snprintf(err, errlen, state == 0 ? "the application has not initialized MPI yet" :
                 state == 3 ? "the application has finalized MPI" : "MPI is torn down already");
        return -1;
    }
    struct cut_outcome cut;
    int mine_refused = refusal(why, sizeof why) != NULL;
    int rc = cut_rounds(timeout_ms, t0, mine_refused, &cut);
    int all_done = cut.all_done, any_late = cut.any_late, any_refused = cut.any_refused;
    int gave_up = any_late && !all_done && !rc && !any_refused;
    if (rc || any_refused || gave_up) {
        phase = 0;
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&gate);
        protocol_wants_gate = 0;
        if (rc) return mpi_error(rc, err, errlen, "agreeing on a cut");
        if (gave_up)
            snprintf(err, errlen, "the ranks did not reach a consistent cut within %g s "
                     "(snapc_crcp_quiesce_timeout): a rank is computing or waiting outside MPI; "
                     "the job goes on", timeout_ms / 1e3);
        else if (mine_refused) snprintf(err, errlen, "%s", why);
        else snprintf(err, errlen, "another rank cannot be saved (its own message says why)");
        return -1;
    }
    /* phase 3: the application is held; receive what is in flight, tear down */
    phase = 3;
    stat_cut = now() - t0;
    double t1 = now();
    if (!rc && drain(timeout_ms > 0 ? now() + timeout_ms / 1e3 : 0, err, errlen)) rc = -1;
    else if (rc) rc = mpi_error(rc, err, errlen, "reaching the cut");
    /* every rank learns whether all drained: one that could not must not leave the others
     * waiting for it in the teardown */
    int failed = rc != 0, any_failed = 0, e = PMPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, proto_comm);
    if (e && !rc) rc = mpi_error(e, err, errlen, "after the drain");
    else if (any_failed && !rc) {
        snprintf(err, errlen, "another rank could not receive the messages in flight (its own message says why)");
        rc = -1;
    }
    /* one-sided epochs closed, the other requests in flight completed, file pointers saved */
    if (!rc) win_close_epochs();
    if (!rc && drain_others(err, errlen)) rc = -1;
    if (!rc && (rc = file_save())) rc = mpi_error(rc, err, errlen, "saving file pointers");
    stat_drain = now() - t1;
    if (rc) {
        /* MPI is still up: the job goes on (the drained messages stay in the layer) */
        request_replay();
        phase = 0;
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&gate);
        protocol_wants_gate = 0;
        return -1;
    }
    t1 = now();
    rc = teardown();
    close_mpi_leftovers();
    stat_teardown = now() - t1;
    state = 2;
    pthread_mutex_unlock(&gate);
    protocol_wants_gate = 0;
    if (rc) return mpi_error(rc, err, errlen, "finalizing the session");
    if (verbose) fprintf(stderr, "crcp: quiesced: cut %.1f ms, drain %.1f ms (%.0f messages), teardown %.1f ms\n",
                         1e3 * stat_cut, 1e3 * stat_drain, stat_msgs, 1e3 * stat_teardown);
    return 0;
}

EXPORT int crcp_resume(int restarted, char *err, int errlen)
{
    pthread_mutex_lock(&gate);
    if (state != 2) {
        pthread_mutex_unlock(&gate);
        snprintf(err, errlen, "MPI is not torn down");
        return -1;
    }
    double t0 = now();
    if (restarted && adopt_launcher(getppid(), err, errlen)) { pthread_mutex_unlock(&gate); return -1; }
    int rc = session_up();
    if (rc) { pthread_mutex_unlock(&gate); return mpi_error(rc, err, errlen, "initializing a new session"); }
    rebuilding = 1;
    rc = rebuild();
    rebuilding = 0;
    if (rc) { pthread_mutex_unlock(&gate); return mpi_error(rc, err, errlen, "rebuilding the application's MPI objects"); }
    stat_rebuild = now() - t0;
    state = 1;
    phase = 0;
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&gate);
    if (verbose) fprintf(stderr, "crcp: resumed%s: rebuild %.1f ms\n", restarted ? " in a new job" : "", 1e3 * stat_rebuild);
    return 0;
}

EXPORT void crcp_stats(double *out)
{
    out[0] = stat_cut; out[1] = stat_drain; out[2] = stat_teardown; out[3] = stat_rebuild;
    out[4] = stat_msgs; out[5] = stat_bytes;
}
