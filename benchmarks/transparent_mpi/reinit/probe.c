/* probe.c: can MPI be finalized and initialized again in one process, and what is left behind?
 *   probe world                 MPI_Init, Allreduce, MPI_Finalize, MPI_Init again
 *   probe sessions N [M]        N rounds of Session_init / comm from mpi://WORLD / Allreduce +
 *                               ring Sendrecv / free / Session_finalize, /proc state after each;
 *                               with M: then SIGSTOP itself (to be checkpointed), and when
 *                               continued (or restored in a new job: parent changed -> adopt the
 *                               new launcher's PMI env and descriptor from the parent) M more rounds */
#include "procstate.h"
#include <mpi.h>
#include <signal.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
#define CHK(call) do { int rc_ = (call); if (rc_ != MPI_SUCCESS) { char s[MPI_MAX_ERROR_STRING]; int l; \
    MPI_Error_string(rc_, s, &l); fprintf(stderr, "%s failed: %s\n", #call, s); exit(3); } } while (0)

static int round_(int it, int dump)
{
    MPI_Session s; MPI_Group g; MPI_Comm c;
    int rank, size, sum, tok, got;
    double t0 = now();
    CHK(MPI_Session_init(MPI_INFO_NULL, MPI_ERRORS_RETURN, &s));
    CHK(MPI_Group_from_session_pset(s, "mpi://WORLD", &g));
    CHK(MPI_Comm_create_from_group(g, "org.pycrs.reinit", MPI_INFO_NULL, MPI_ERRORS_RETURN, &c));
    double t1 = now();
    MPI_Comm_rank(c, &rank); MPI_Comm_size(c, &size);
    CHK(MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, c));
    tok = 1000 * it + rank;
    CHK(MPI_Sendrecv(&tok, 1, MPI_INT, (rank + 1) % size, 7, &got, 1, MPI_INT, (rank + size - 1) % size, 7, c, MPI_STATUS_IGNORE));
    double t2 = now();
    if (getenv("PROBE_VERBOSE")) fprintf(stderr, "[%d] round %d communicated (sum %d, got %d), finalizing\n", rank, it, sum, got);
    if (getenv("PROBE_BARRIER")) MPI_Barrier(c); /* everyone done before anyone finalizes */
    MPI_Comm_free(&c); MPI_Group_free(&g);
    CHK(MPI_Session_finalize(&s));
    if (getenv("PROBE_WAIT_UNLINK")) { /* wait until no descriptor we hold names a /dev/shm file that still exists */
        double w0 = now(); int left = 1;
        while (left && now() - w0 < 2.0) {
            left = 0;
            DIR *d = opendir("/proc/self/fd"); struct dirent *e;
            while (d && (e = readdir(d))) {
                char p[300], t[300]; snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
                ssize_t k = readlink(p, t, sizeof t - 1); if (k <= 0) continue; t[k] = 0;
                if (!strncmp(t, "/dev/shm/mpich_shm", 18) && !strstr(t, "(deleted)")) left++;
            }
            if (d) closedir(d);
            if (left) usleep(1000);
        }
        fprintf(stderr, "[%d] waited %.1f ms for the shm segment to be unlinked (%s)\n", rank, 1e3 * (now() - w0), left ? "still there" : "gone");
    }
    if (getenv("PROBE_SLEEP_MS")) usleep(1000 * atoi(getenv("PROBE_SLEEP_MS")));
    double t3 = now();
    printf("[%d] round %d: size %d allreduce %d (want %d) ring got %d (want %d)  init+comm %.1f ms  finalize %.1f ms\n",
           rank, it, size, sum, size * (size - 1) / 2, got, 1000 * it + (rank + size - 1) % size,
           1e3 * (t1 - t0), 1e3 * (t3 - t2));
    fflush(stdout);
    if (dump) procstate_dump("after MPI_Session_finalize", rank);
    return rank;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && !strcmp(argv[1], "world")) {
        int rank, sum, flag;
        MPI_Init(&argc, &argv);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        printf("[%d] first init: allreduce %d\n", rank, sum);
        MPI_Finalize();
        MPI_Initialized(&flag);
        int fin; MPI_Finalized(&fin);
        printf("[%d] after MPI_Finalize: initialized=%d finalized=%d; calling MPI_Init again\n", rank, flag, fin);
        int rc = MPI_Init(&argc, &argv);
        printf("[%d] second MPI_Init returned %d\n", rank, rc);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        printf("[%d] second init: allreduce %d\n", rank, sum);
        MPI_Finalize();
        return 0;
    }
    int n = argc > 2 ? atoi(argv[2]) : 3, m = argc > 3 ? atoi(argv[3]) : -1, rank = 0;
    procstate_dump("before any MPI call", -1);
    for (int i = 0; i < n; i++) rank = round_(i, i == n - 1);
    if (m < 0) return 0;
    pid_t ppid = getppid();
    /* the image must hold no socket to the launcher: drop the PMI descriptor (the parent,
     * rankshim or opal-restart, holds one for us) */
    if (getenv("PMI_FD")) close(atoi(getenv("PMI_FD")));
    if (getenv("PROBE_CLOSE_SHM")) procstate_close_leaked(-1);
    procstate_dump("ready for a checkpoint (PMI descriptor closed)", rank);
    char go[128];
    snprintf(go, sizeof go, "/tmp/reinit_go.%d", (int)getpid());
    fprintf(stderr, "[%d] MPI torn down; pid %d waits for %s or a new parent\n", rank, (int)getpid(), go);
    while (access(go, F_OK) && getppid() == ppid) usleep(20000);
    double t0 = now();
    if (getppid() != ppid)
        fprintf(stderr, "[%d] restored: parent %d -> %d, adopting its launcher environment\n", rank, (int)ppid, (int)getppid());
    else
        fprintf(stderr, "[%d] continued in the same job\n", rank), unlink(go);
    if (procstate_adopt(getppid(), 1)) return 4;
    fprintf(stderr, "[%d] adopt took %.2f ms\n", rank, 1e3 * (now() - t0));
    for (int i = 0; i < m; i++) round_(100 + i, i == m - 1);
    return 0;
}
