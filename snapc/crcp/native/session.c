/* session.c: the MPI session under the application's world: made (world and self from its
 * process sets), finalized at teardown, and what MPICH leaves behind (its shared-memory
 * descriptors, and the segment a next session must wait to see unlinked). */
#include "layer.h"

static MPI_Session S = MPI_SESSION_NULL;
MPI_Session layer_session = MPI_SESSION_NULL;
/* the protocol's own duplicate of the world: every agreement of the cut runs on it */
MPI_Comm proto_comm = MPI_COMM_NULL;

int session_up(void)
{
    MPI_Info info;
    MPI_Group g;
    MPI_Comm w, s;
    int rc;
    PMPI_Info_create(&info);
    /* always MULTIPLE: the protocol runs on the coordinator's thread beside the application's */
    PMPI_Info_set(info, "thread_level", "MPI_THREAD_MULTIPLE");
    rc = PMPI_Session_init(info, MPI_ERRORS_RETURN, &S);
    PMPI_Info_free(&info);
    if (rc) return rc;
    if ((rc = PMPI_Group_from_session_pset(S, "mpi://WORLD", &g))) return rc;
    rc = PMPI_Comm_create_from_group(g, "org.pycrs.crcp.world", MPI_INFO_NULL, MPI_ERRORS_ARE_FATAL, &w);
    PMPI_Group_free(&g);
    if (rc) return rc;
    if ((rc = PMPI_Group_from_session_pset(S, "mpi://SELF", &g))) return rc;
    rc = PMPI_Comm_create_from_group(g, "org.pycrs.crcp.self", MPI_INFO_NULL, MPI_ERRORS_ARE_FATAL, &s);
    PMPI_Group_free(&g);
    if (rc) return rc;
    layer_session = S;
    if ((rc = comm_predefined(w, s))) return rc;
    if ((rc = PMPI_Comm_dup(w, &proto_comm))) return rc;
    return PMPI_Comm_set_errhandler(proto_comm, MPI_ERRORS_RETURN);
}

/* What MPI leaves open after a session is finalized (MPICH 5.0.2: one /dev/shm/mpich_shm_* per
 * session) is closed at teardown: the image could not hold it. */
static int mpi_leftover(const char *link)
{
    return !strncmp(link, "/dev/shm/mpich_shm", 18) || !strncmp(link, "/dev/shm/ucx_", 13);
}
void close_mpi_leftovers(void)
{
    DIR *d = opendir("/proc/self/fd");
    int dfd = d ? dirfd(d) : -1;
    struct dirent *e;
    int fds[1024], n = 0;
    while (d && (e = readdir(d))) {
        char p[64], t[300];
        if (e->d_name[0] == '.' || atoi(e->d_name) == dfd) continue;
        snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(p, t, sizeof t - 1);
        if (k <= 0) continue;
        t[k] = 0;
        if (mpi_leftover(t) && n < 1024) fds[n++] = atoi(e->d_name);
    }
    if (d) closedir(d);
    for (int i = 0; i < n; i++) close(fds[i]);
}

/* MPICH 5.0.2: the next session hangs in MPI_Comm_create_from_group while the previous one's
 * node segment (same name in every session of a job) is still linked; wait (at most 2 s) until
 * no descriptor names a linked one. Measured with the prototypes (docs/design/transparent-mpi.md, "The prototypes"). */
static void wait_shm_unlinked(void)
{
    double t0 = now();
    for (int left = 1; left && now() - t0 < 2.0;) {
        left = 0;
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            char p[300], t[300];
            snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
            ssize_t k = readlink(p, t, sizeof t - 1);
            if (k <= 0) continue;
            t[k] = 0;
            if (!strncmp(t, "/dev/shm/mpich_shm", 18) && !strstr(t, "(deleted)")) left++;
        }
        if (d) closedir(d);
        if (left) usleep(500);
    }
}

/* every real object freed, then the session: the image holds no MPI state */
int teardown(void)
{
    request_teardown();
    win_teardown();
    file_teardown();
    type_teardown();
    op_teardown();
    group_teardown();
    if (proto_comm != MPI_COMM_NULL) PMPI_Comm_free(&proto_comm);
    comm_teardown();
    int rc = PMPI_Session_finalize(&S);
    layer_session = MPI_SESSION_NULL;
    if (!rc) finalize_stack_empty();
    wait_shm_unlinked();
    return rc;
}

/* after a new session: the application's objects made again, in creation order within each
 * kind; communicators first (every other kind may use them), then what records made
 * (datatypes, ops, persistent requests), then windows and files */
int rebuild(void)
{
    int rc = comm_replay();
    if (!rc) rc = rec_replay_all();
    if (!rc) rc = objects_replay();
    if (!rc) rc = request_replay();
    return rc;
}

/* windows and files, in the order their contexts were made (the order their members made them) */
int objects_replay(void)
{
    int n = 0, rc = MPI_SUCCESS;
    struct { uint64_t serial; int win, slot; } *order = malloc((nwin + nfile + 1) * sizeof *order);
    if (!order) return MPI_ERR_NO_MEM;
    for (int i = 0; i < nwin; i++)
        if (W[i].used) { order[n].serial = comm_serial(W[i].ctx); order[n].win = 1; order[n++].slot = i; }
    for (int i = 0; i < nfile; i++)
        if (F[i].used) { order[n].serial = comm_serial(F[i].ctx); order[n].win = 0; order[n++].slot = i; }
    for (int a = 1; a < n; a++)
        for (int b = a; b > 0 && order[b - 1].serial > order[b].serial; b--) {
            __typeof__(*order) t = order[b]; order[b] = order[b - 1]; order[b - 1] = t;
        }
    for (int k = 0; k < n && !rc; k++) {
        rc = order[k].win ? win_remake(order[k].slot) : file_remake(order[k].slot);
        if (rc && verbose) fprintf(stderr, "crcp: making a %s again: error %d\n", order[k].win ? "window" : "file", rc);
    }
    free(order);
    return rc;
}
