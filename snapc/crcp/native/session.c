/* session.c: the MPI session under the application's world: made (world and self from its
 * process sets), finalized at teardown, and what MPICH leaves behind (its shared-memory
 * descriptors, and the segment a next session must wait to see unlinked). */
#include "layer.h"

static MPI_Session S = MPI_SESSION_NULL;

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
    return comm_predefined(w, s);
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

int teardown(void)
{
    comm_teardown();
    int rc = PMPI_Session_finalize(&S);
    wait_shm_unlinked();
    return rc;
}
