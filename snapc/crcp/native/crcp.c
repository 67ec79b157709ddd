/* crcp.c: the units of the MPI layer not yet in files of their own, one section each
 * (layer.h describes the layer and its units). */
#include "layer.h"

/* ---- gate (to be gate.c): the gate every wrapped call holds, the phase of a checkpoint that the application's
 * threads wait on, the Python GIL a held thread gives up, and the pause between two tests of a
 * blocking call's loop (layer.h has enter/leave and HOLD_WHILE). */
pthread_mutex_t gate = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
volatile int phase;
volatile int protocol_wants_gate;

int (*gil_held)(void);
void *(*gil_release)(void);
void (*gil_take)(void *);

void find_python(void)
{
    gil_held = (int (*)(void))dlsym(RTLD_DEFAULT, "PyGILState_Check");
    gil_release = (void *(*)(void))dlsym(RTLD_DEFAULT, "PyEval_SaveThread");
    gil_take = (void (*)(void *))dlsym(RTLD_DEFAULT, "PyEval_RestoreThread");
    int (*up)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "Py_IsInitialized");
    if (!up || !up() || !gil_release || !gil_take) gil_held = NULL;
}

/* between two tests of a blocking call's loop */
void loop_pause(void)
{
    if (phase == 3) { HOLD_WHILE(phase == 3); return; }
    static __thread unsigned spins;
    pthread_mutex_unlock(&gate);
    /* as MPICH's own blocking calls do: give the core away now and then (ranks oversubscribe
     * cores), and at once when the protocol waits for the gate */
    if (protocol_wants_gate || ++spins % 64 == 0) sched_yield();
    pthread_mutex_lock(&gate);
    HOLD_WHILE(phase == 3); /* the protocol may have torn MPI down meanwhile */
}

/* ---- init (to be init.c): the application's MPI_Init / MPI_Finalize and their queries. The world model is
 * never initialized: the application's world is a session of the layer's (session.c), made at
 * MPI_Init, always MPI_THREAD_MULTIPLE (the protocol runs beside the application's threads). */
int state; /* 0 never initialized, 1 up, 2 torn down, 3 finalized */
int thread_asked = MPI_THREAD_SINGLE;
int verbose;

static int layer_init(int required, int *provided)
{
    if (state != 0) return MPI_ERR_OTHER;
    /* mpi4py loads libmpi privately (RTLD_LOCAL): make it visible to our PMPI_* references */
    if (!dlopen("libmpi.so.12", RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD)) {
        fprintf(stderr, "crcp: MPICH's libmpi.so.12 is not loaded in this process (the layer "
                "works with MPICH only): %s\n", dlerror());
        return MPI_ERR_OTHER;
    }
    find_python();
    verbose = getenv("PYCRS_CRCP_VERBOSE") != NULL;
    thread_asked = required < MPI_THREAD_SINGLE ? MPI_THREAD_SINGLE
                 : required > MPI_THREAD_MULTIPLE ? MPI_THREAD_MULTIPLE : required;
    pthread_mutex_lock(&gate);
    int rc = session_up();
    if (!rc) state = 1;
    pthread_mutex_unlock(&gate);
    if (provided) *provided = thread_asked;
    return rc;
}
EXPORT int MPI_Init(int *argc, char ***argv) { (void)argc; (void)argv; return layer_init(MPI_THREAD_SINGLE, NULL); }
EXPORT int MPI_Init_thread(int *argc, char ***argv, int required, int *provided)
{
    (void)argc; (void)argv;
    return layer_init(required, provided);
}
EXPORT int MPI_Initialized(int *flag) { *flag = state != 0; return MPI_SUCCESS; }
EXPORT int MPI_Finalized(int *flag) { *flag = state == 3; return MPI_SUCCESS; }
EXPORT int MPI_Query_thread(int *p) { *p = thread_asked; return MPI_SUCCESS; }
EXPORT int MPI_Is_thread_main(int *flag) { *flag = 1; return MPI_SUCCESS; }

EXPORT int MPI_Finalize(void)
{
    enter();
    coll_admit(0); /* a finalize waits for a checkpoint under way, which needs this rank */
    attrs_delete_everywhere();
    int rc = MPI_SUCCESS;
    if (state == 1) rc = teardown();
    state = 3;
    leave();
    return rc;
}
EXPORT int MPI_Abort(MPI_Comm comm, int code) { return PMPI_Abort(R(comm), code); }

/* ---- cut (to be cut.c): the rounds of the cut. The ranks agree, on the communicators' twins, on how many
 * collectives each communicator must have completed, run on to exactly that, and agree again
 * until every rank is there (or one is refused, or waited too long). */
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

/* ---- drain (to be drain.c): the bookmark exchange, with the application held at the cut: matched probes
 * received into the layer, the per-peer sent counts exchanged, every message still missing
 * received (posted receives first), the sends completed, the receives still posted cancelled
 * to be posted again after the rebuild. */
int drain(char *err, int errlen)
{
    int rc;
    /* matched probes the application holds: received into the layer now */
    for (int h = 0; h < nH; h++) {
        if (!H[h].used || H[h].stored >= 0 || H[h].real == MPI_MESSAGE_NULL) continue;
        MPI_Count len = status_bytes(&H[h].st);
        char *data = malloc(len ? len : 1);
        MPI_Status st = FRESH_STATUS;
        if (!data) return snprintf(err, errlen, "out of memory"), -1;
        if ((rc = PMPI_Mrecv_c(data, len, MPI_BYTE, &H[h].real, &st))) return mpi_error(rc, err, errlen, "receiving a probed message");
        int m = store_add(-1, H[h].st.MPI_SOURCE, H[h].st.MPI_TAG, data, len);
        H[h].stored = m;
        stat_msgs++; stat_bytes += len;
    }
    /* the bookmark exchange: what every peer sent me on every communicator */
    uint64_t **expect = calloc(ncomm, sizeof *expect);
    MPI_Request *rs = calloc(ncomm, sizeof *rs);
    int nr = 0;
    for (int i = 0; i < ncomm; i++) {
        if (!C[i].live || C[i].shadow == MPI_COMM_NULL) continue;
        expect[i] = calloc(C[i].size, sizeof(uint64_t));
        if ((rc = PMPI_Ialltoall(C[i].sent, 1, MPI_UINT64_T, expect[i], 1, MPI_UINT64_T, C[i].shadow, &rs[nr++])))
            return mpi_error(rc, err, errlen, "exchanging message counts");
    }
    if ((rc = PMPI_Waitall(nr, rs, MPI_STATUSES_IGNORE))) return mpi_error(rc, err, errlen, "exchanging message counts");
    /* receive until every count is met: a posted receive first (MPI matches those first), the
     * rest into the layer, oldest first */
    for (int missing = 1; missing;) {
        missing = 0;
        for (int k = 0; k < nT; k++)
            if (T[k].used && T[k].kind == RQ_RECV && !T[k].done && T[k].real != MPI_REQUEST_NULL) poll_one(k, &rc);
        for (int i = 0; i < ncomm; i++) {
            if (!expect[i]) continue;
            int short_of = 0;
            for (int p = 0; p < C[i].size; p++) short_of |= C[i].recvd[p] < expect[i][p];
            if (!short_of) continue;
            missing = 1;
            int flag = 0;
            MPI_Message msg;
            MPI_Status st = FRESH_STATUS;
            if ((rc = PMPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, C[i].r, &flag, &msg, &st))) return mpi_error(rc, err, errlen, "draining");
            if (!flag) continue;
            MPI_Count len = status_bytes(&st);
            char *data = malloc(len ? len : 1);
            if (!data) return snprintf(err, errlen, "out of memory"), -1;
            if ((rc = PMPI_Mrecv_c(data, len, MPI_BYTE, &msg, &st))) return mpi_error(rc, err, errlen, "draining");
            store_add(i, st.MPI_SOURCE, st.MPI_TAG, data, len);
            count_recv(i, &st);
            stat_msgs++; stat_bytes += len;
        }
    }
    for (int i = 0; i < ncomm; i++) free(expect[i]);
    free(expect);
    free(rs);
    /* every message sent is received: the sends complete */
    for (int k = 0; k < nT; k++)
        if (T[k].used && T[k].kind == RQ_SEND && !T[k].done) {
            MPI_Status st = FRESH_STATUS;
            if ((rc = PMPI_Wait(&T[k].real, &st))) return mpi_error(rc, err, errlen, "completing a send");
            completed(k, &st);
        }
    /* and receives still posted match nothing in flight: taken back, posted again later */
    for (int k = 0; k < nT; k++)
        if (T[k].used && T[k].kind == RQ_RECV && !T[k].done && T[k].real != MPI_REQUEST_NULL) {
            MPI_Status st = FRESH_STATUS;
            int cancelled = 0;
            PMPI_Cancel(&T[k].real);
            PMPI_Wait(&T[k].real, &st);
            cancelled = status_cancelled(&st);
            if (cancelled) { T[k].repost = 1; T[k].real = MPI_REQUEST_NULL; }
            else completed(k, &st);
        }
    return 0;
}

/* ---- session (to be session.c): the MPI session under the application's world: made (world and self from its
 * process sets), finalized at teardown, and what MPICH leaves behind (its shared-memory
 * descriptors, and the segment a next session must wait to see unlinked). */
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
 * no descriptor names a linked one. Measured in benchmarks/transparent_mpi/reinit/README.md. */
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

/* ---- launcher (to be launcher.c): the launcher's side of a rank. What hydra leaked into the rank is closed when the
 * layer is loaded; its PMI descriptor stays open and is named to the image (crcp_launcher_fd) to
 * be left out; after a restart the rank adopts its new launcher's environment and descriptor. */
/* Descriptors: what the launcher leaked into the rank is closed at load (hydra passes its own
 * pipes and sockets on, which the image could not hold); what MPI leaves open after a session
 * is finalized is closed at teardown (session.c). The PMI descriptor stays open (a rebuild in
 * the same job talks to the same launcher): the image leaves it out (crcp_launcher_fd), and a
 * restored rank takes its new launcher's instead. */
static int is_rank(void) { return getenv("PYCRS_CRCP") && getenv("PMI_FD"); }
__attribute__((constructor)) static void at_load(void)
{
    if (!is_rank()) return;
    int keep = atoi(getenv("PMI_FD"));
    DIR *d = opendir("/proc/self/fd");
    int dfd = d ? dirfd(d) : -1, fds[1024], n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && n < 1024) fds[n++] = atoi(e->d_name);
    /* inherited across the exec means not close-on-exec: one with the flag was made in this
     * process already (the mtcp kernel's socket, when its constructor ran first) */
    for (int i = 0; i < n; i++)
        if (fds[i] > 2 && fds[i] != keep && fds[i] != dfd && !(fcntl(fds[i], F_GETFD) & FD_CLOEXEC))
            close(fds[i]);
    if (d) closedir(d);
    /* children of the rank (the image dumper, any tool) are not ranks */
    unsetenv("LD_PRELOAD");
}

/* the launcher's descriptor, which the image must leave out (-1: none) */
EXPORT int crcp_launcher_fd(void) { return getenv("PMI_FD") ? atoi(getenv("PMI_FD")) : -1; }

/* ---- the launcher of a new job (after a restart) ---- */
static int is_launcher_var(const char *kv)
{
    static const char *pfx[] = {"PMI_", "PMIX_", "HYDRA_", "MPIR_CVAR_", NULL};
    for (int i = 0; pfx[i]; i++)
        if (!strncmp(kv, pfx[i], strlen(pfx[i]))) return 1;
    return 0;
}
/* Take the launcher environment (PMI_*) of process `from` (the opal-restart the new launcher
 * started, our parent) in place of the old job's, and its PMI descriptor with pidfd_getfd(2),
 * at the number MPICH will read from PMI_FD. */
int adopt_launcher(pid_t from, char *err, int errlen)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)from);
    FILE *f = fopen(path, "r");
    if (!f) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
    size_t cap = 1 << 16, len = 0;
    char *env = malloc(cap + 1);
    for (size_t k; env && (k = fread(env + len, 1, cap - len, f)) > 0;) {
        len += k;
        if (len == cap) { cap *= 2; env = realloc(env, cap + 1); }
    }
    fclose(f);
    if (!env) { snprintf(err, errlen, "out of memory"); return -1; }
    env[len] = 0;
    extern char **environ;
    for (int removed = 1; removed;) {
        removed = 0;
        for (char **p = environ; *p; p++)
            if (is_launcher_var(*p)) {
                char name[256];
                size_t l = strcspn(*p, "=");
                if (l >= sizeof name) continue;
                memcpy(name, *p, l);
                name[l] = 0;
                unsetenv(name);
                removed = 1;
                break;
            }
    }
    int rc = 0;
    for (char *kv = env; kv < env + len; kv += strlen(kv) + 1) {
        char *eq = strchr(kv, '=');
        if (!is_launcher_var(kv) || !eq) continue;
        *eq = 0;
        if (!strcmp(kv, "PMI_FD")) {
            int pidfd = syscall(SYS_pidfd_open, from, 0);
            int fd = pidfd < 0 ? -1 : syscall(SYS_pidfd_getfd, pidfd, atoi(eq + 1), 0);
            if (fd < 0) {
                snprintf(err, errlen, "cannot take the launcher's PMI descriptor %s from process "
                         "%d: %s", eq + 1, (int)from, strerror(errno));
                rc = -1;
            } else {
                fcntl(fd, F_SETFD, 0);
                char v[16];
                snprintf(v, sizeof v, "%d", fd);
                setenv("PMI_FD", v, 1);
            }
            if (pidfd >= 0) close(pidfd);
        } else {
            setenv(kv, eq + 1, 1);
        }
        *eq = '=';
    }
    free(env);
    return rc;
}

/* ---- control (to be control.c): what the rank's app coordinator calls through ctypes (snapc/crcp/__init__.py):
 * crcp_quiesce (the cut, the drain, the teardown), crcp_resume (a new session, the objects made
 * again, the receives posted again), crcp_active and crcp_stats. */
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
    if (!rc && drain(err, errlen)) rc = -1;
    else if (rc) rc = mpi_error(rc, err, errlen, "reaching the cut");
    if (!rc && (rc = PMPI_Barrier(C[0].shadow))) rc = mpi_error(rc, err, errlen, "after the drain");
    stat_drain = now() - t1;
    if (rc) {
        /* MPI is still up: the job goes on (the drained messages stay in the layer) */
        for (int k = 0; k < nT; k++)
            if (T[k].used && T[k].repost) { T[k].repost = 0; post_recv(k); }
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
    rc = comm_replay();
    for (int k = 0; k < nT && !rc; k++)
        if (T[k].used && T[k].repost) { T[k].repost = 0; rc = post_recv(k); }
    if (rc) { pthread_mutex_unlock(&gate); return mpi_error(rc, err, errlen, "rebuilding the communicators"); }
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

/* ---- wrappers (to be wrappers.c): everything else that takes a communicator or makes an object, generated at build
 * time by snapc/crcp/generate.py from MPICH's mpi_proto.h (crcp_wrappers.inc, in the build
 * directory): every MPICH function that no other unit defines. */
#include "crcp_wrappers.inc"
