/* libvmpi.c: a minimal MPI interposition layer for transparent checkpoint (candidate (a)).
 *
 * Preloaded below mpi4py (LD_PRELOAD): the MPI_* symbols here win over libmpi's, and call
 * libmpi through PMPI_*. The application (mpi4py) only ever sees VIRTUAL communicator handles:
 *   - MPI_COMM_WORLD / MPI_COMM_SELF keep their predefined values (MPICH: the ints 0x44000000 /
 *     0x44000001 compiled into mpi4py; Open MPI: the addresses of ompi_mpi_comm_world/self, also
 *     compiled into mpi4py) but are served by communicators made from the session psets
 *     mpi://WORLD and mpi://SELF;
 *   - a communicator made by Dup/Split gets, as its virtual handle, the real handle it had when it
 *     was first made, so calls this layer does not wrap still work until the first rebuild.
 * MPI itself is used only through MPI Sessions (the world model cannot be initialized twice),
 * so the layer can tear MPI down (vmpi_teardown: free every real communicator, finalize the
 * session) and bring it back (vmpi_rebuild: new session, world/self from the psets, then every
 * live communicator made again by replaying its Dup/Split in creation order) with every handle
 * the application holds still valid. Point-to-point messages are counted per communicator and
 * peer (sent at posting, received at completion) for the bookmark exchange.
 *
 * Exported control interface (ctypes): vmpi_teardown(), vmpi_rebuild(), vmpi_counts(),
 * vmpi_adopt_parent() (after a restart: the new launcher's PMI environment and descriptor). */
#include "procstate.h"
#include <mpi.h>
#include <stdint.h>
#include <time.h>

#define MAXCOMM 256
enum kind { K_WORLD, K_SELF, K_DUP, K_SPLIT };
struct vcomm {
    MPI_Comm v, r;        /* virtual (what the app holds) and real (this incarnation) */
    int kind, parent;     /* how it was made: index of the parent entry */
    int color, key;       /* for K_SPLIT */
    int live, needed;     /* freed by the app?  (a freed parent of a live comm is replayed) */
    int nullsplit;        /* a Split that gave this rank MPI_COMM_NULL: replayed, nothing kept */
    int size;
    MPI_Errhandler eh;    /* a predefined error handler set by the app, or MPI_ERRHANDLER_NULL */
    uint64_t *sent, *recvd; /* per peer (rank in this comm) */
};
static struct vcomm C[MAXCOMM];
static int ncomm;
static MPI_Session S = MPI_SESSION_NULL;
static int state; /* 0 never initialized, 1 up, 2 torn down (between teardown and rebuild), 3 finalized */
static int thread_provided = MPI_THREAD_SINGLE;
static int verbose;

/* receive requests in flight: (request, comm index), a short array (swap-remove) */
#define RQ 65536
static struct { MPI_Request req; int comm; } RQT[RQ];
static int rq_inflight;
static void rq_put(MPI_Request r, int c)
{
    if (rq_inflight == RQ) { fprintf(stderr, "vmpi: too many receives in flight\n"); abort(); }
    RQT[rq_inflight].req = r; RQT[rq_inflight].comm = c; rq_inflight++;
}
static inline int rq_take(MPI_Request r)
{
    for (int k = rq_inflight - 1; k >= 0; k--)
        if (RQT[k].req == r) { int c = RQT[k].comm; RQT[k] = RQT[--rq_inflight]; return c; }
    return -1;
}

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

static int last_i;
static inline int idx(MPI_Comm v)
{
    if (C[last_i].v == v && C[last_i].live) return last_i;
    for (int i = 0; i < ncomm; i++)
        if (C[i].v == v && C[i].live) return last_i = i;
    return -1;
}
/* the real handle of a virtual one; an unknown handle (MPI_COMM_NULL, ...) passes unchanged */
static inline MPI_Comm R(MPI_Comm v)
{
    int i = idx(v);
    return i < 0 ? v : C[i].r;
}

static void setup_counts(int i)
{
    PMPI_Comm_size(C[i].r, &C[i].size);
    if (!C[i].sent) {
        C[i].sent = calloc(C[i].size, sizeof(uint64_t));
        C[i].recvd = calloc(C[i].size, sizeof(uint64_t));
    }
}

static int new_entry(MPI_Comm v, MPI_Comm r, int kind, int parent, int color, int key)
{
    if (ncomm == MAXCOMM) { fprintf(stderr, "vmpi: too many communicators\n"); abort(); }
    int i = ncomm++;
    memset(&C[i], 0, sizeof C[i]);
    C[i].v = v; C[i].r = r; C[i].kind = kind; C[i].parent = parent;
    C[i].color = color; C[i].key = key; C[i].live = 1; C[i].eh = MPI_ERRHANDLER_NULL;
    setup_counts(i);
    return i;
}

static int session_up(void)
{
    MPI_Info info;
    MPI_Group g;
    int rc;
    PMPI_Info_create(&info);
    const char *tl[] = {"MPI_THREAD_SINGLE", "MPI_THREAD_FUNNELED", "MPI_THREAD_SERIALIZED", "MPI_THREAD_MULTIPLE"};
    PMPI_Info_set(info, "thread_level", tl[thread_provided]);
    rc = PMPI_Session_init(info, MPI_ERRORS_RETURN, &S);
    PMPI_Info_free(&info);
    if (rc) return rc;
    MPI_Comm w, s;
    if ((rc = PMPI_Group_from_session_pset(S, "mpi://WORLD", &g))) return rc;
    rc = PMPI_Comm_create_from_group(g, "org.pycrs.vmpi.world", MPI_INFO_NULL, MPI_ERRORS_ARE_FATAL, &w);
    PMPI_Group_free(&g);
    if (rc) return rc;
    if ((rc = PMPI_Group_from_session_pset(S, "mpi://SELF", &g))) return rc;
    rc = PMPI_Comm_create_from_group(g, "org.pycrs.vmpi.self", MPI_INFO_NULL, MPI_ERRORS_ARE_FATAL, &s);
    PMPI_Group_free(&g);
    if (rc) return rc;
    if (ncomm == 0) {
        new_entry(MPI_COMM_WORLD, w, K_WORLD, -1, 0, 0);
        new_entry(MPI_COMM_SELF, s, K_SELF, -1, 0, 0);
    } else {
        C[0].r = w; C[1].r = s;
    }
    return 0;
}

/* ---- init / finalize ---- */
static unsigned char fds_before[4096 / 8]; /* descriptors open before MPI was first initialized */
static void note_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd < 4096) fds_before[fd / 8] |= 1 << (fd % 8);
    }
    if (d) closedir(d);
}
static int vinit(int required, int *provided)
{
    if (state != 0) return MPI_ERR_OTHER;
    note_fds();
    verbose = getenv("VMPI_VERBOSE") != NULL;
    thread_provided = required < MPI_THREAD_SINGLE ? MPI_THREAD_SINGLE : required > MPI_THREAD_MULTIPLE ? MPI_THREAD_MULTIPLE : required;
    int rc = session_up();
    if (rc) return rc;
    if (provided) *provided = thread_provided;
    state = 1;
    return MPI_SUCCESS;
}
int MPI_Init(int *argc, char ***argv) { (void)argc; (void)argv; return vinit(MPI_THREAD_SINGLE, NULL); }
int MPI_Init_thread(int *argc, char ***argv, int required, int *provided) { (void)argc; (void)argv; return vinit(required, provided); }
int MPI_Initialized(int *flag) { *flag = state != 0; return MPI_SUCCESS; }
int MPI_Finalized(int *flag) { *flag = state == 3; return MPI_SUCCESS; }
int MPI_Query_thread(int *p) { *p = thread_provided; return MPI_SUCCESS; }
int MPI_Is_thread_main(int *flag) { *flag = 1; return MPI_SUCCESS; }

/* MPICH 5.0.2: a session's node-shared segment /dev/shm/mpich_shm_<kvs hash>_0 has the same name
 * in every session of a job; a rank that initializes again while the segment of the previous
 * session is still linked hangs in MPI_Comm_create_from_group (or UCX fails to unpack an
 * address). Measured: 4 ranks x 10 cycles, 2-4 of 8 runs complete without this wait, 16 of 16
 * with it. Wait (at most 2 s) until no descriptor MPI left names a linked segment. */
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

static int teardown(void)
{
    if (state == 1 && rq_inflight) { fprintf(stderr, "vmpi: teardown with %d receive(s) in flight refused\n", rq_inflight); return MPI_ERR_PENDING; }
    for (int i = ncomm - 1; i >= 0; i--)
        if (C[i].r != MPI_COMM_NULL) {
            if (verbose) fprintf(stderr, "vmpi: teardown frees entry %d real %#lx\n", i, (unsigned long)(uintptr_t)C[i].r);
            PMPI_Comm_free(&C[i].r); C[i].r = MPI_COMM_NULL;
        }
    int rc = PMPI_Session_finalize(&S);
    if (!getenv("VMPI_NO_SHM_WAIT")) wait_shm_unlinked(); /* (the variable: for the experiment) */
    return rc;
}
static void attrs_delete_everywhere(void);
int MPI_Finalize(void)
{
    attrs_delete_everywhere();
    if (state == 2) { state = 3; return MPI_SUCCESS; }
    int rc = teardown();
    state = 3;
    return rc;
}
int MPI_Abort(MPI_Comm comm, int code) { return PMPI_Abort(R(comm), code); }

/* ---- the control interface ---- */
double vmpi_last_teardown, vmpi_last_rebuild;
int vmpi_teardown(void)
{
    if (state != 1) return -1;
    double t0 = now();
    int rc = teardown();
    vmpi_last_teardown = now() - t0;
    if (!rc) state = 2;
    return rc;
}
int vmpi_rebuild(void)
{
    if (state != 2) return -1;
    double t0 = now();
    int rc = session_up();
    if (rc) return rc;
    /* which freed communicators must be made again because a live one descends from them */
    for (int i = 0; i < ncomm; i++) C[i].needed = C[i].live || C[i].nullsplit;
    for (int i = ncomm - 1; i >= 2; i--)
        if (C[i].needed && C[i].parent >= 0) C[C[i].parent].needed = 1;
    for (int i = 2; i < ncomm; i++) {
        if (!C[i].needed) continue;
        MPI_Comm p = C[C[i].parent].r;
        if (C[i].kind == K_DUP) rc = PMPI_Comm_dup(p, &C[i].r);
        else rc = PMPI_Comm_split(p, C[i].color, C[i].key, &C[i].r);
        if (rc) return rc;
    }
    for (int i = 0; i < ncomm; i++) {
        if (C[i].r != MPI_COMM_NULL && C[i].eh != MPI_ERRHANDLER_NULL) PMPI_Comm_set_errhandler(C[i].r, C[i].eh);
        if (!C[i].live && C[i].r != MPI_COMM_NULL) PMPI_Comm_free(&C[i].r);
    }
    vmpi_last_rebuild = now() - t0;
    state = 1;
    return 0;
}
/* after a restart into a new job: take the launcher environment and PMI descriptor from the
 * parent (rankshim or opal-restart); closing our own PMI descriptor before the image is taken */
int vmpi_adopt_parent(void) { return procstate_adopt(getppid(), verbose); }
int vmpi_close_launcher_fds(void)
{
    /* the PMI descriptor, and whatever MPI opened and left open after finalizing (MPICH 5.0.2
     * leaks one /dev/shm/mpich_shm_* descriptor per session) */
    if (state != 2 && state != 3) return -1;
    if (getenv("PMI_FD")) close(atoi(getenv("PMI_FD")));
    DIR *d = opendir("/proc/self/fd");
    int dfd = d ? dirfd(d) : -1, fds[1024], n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && n < 1024) fds[n++] = atoi(e->d_name);
    for (int i = 0; i < n; i++)
        if (fds[i] != dfd && fds[i] < 4096 && !(fds_before[fds[i] / 8] & (1 << (fds[i] % 8)))) {
            if (verbose) fprintf(stderr, "vmpi: closing descriptor %d left by MPI\n", fds[i]);
            close(fds[i]);
        }
    if (d) closedir(d);
    return 0;
}
/* counts: fills sent[i], recvd[i] for communicator `v` (size entries); returns its size */
int vmpi_counts(MPI_Comm v, uint64_t *sent, uint64_t *recvd)
{
    int i = idx(v);
    if (i < 0) return -1;
    memcpy(sent, C[i].sent, C[i].size * sizeof(uint64_t));
    memcpy(recvd, C[i].recvd, C[i].size * sizeof(uint64_t));
    return C[i].size;
}
int vmpi_state(void) { return state; }
int vmpi_ncomm(void) { return ncomm; }


/* ---- attributes: kept in the layer, never on the real communicators ----
 * The application's keyvals and attribute values are its own state: they must survive a
 * teardown (a keyval handle of the library would not), and the real communicators freed at
 * teardown must not run the application's delete callbacks (mpi4py frees its cached duplicate
 * communicators from one). Predefined attributes (MPI_TAG_UB, ...) are read from the real one. */
#define MAXKV 64
#define MAXATTR 1024
struct keyval { int used; MPI_Comm_copy_attr_function *copy; MPI_Comm_delete_attr_function *del; void *extra; };
static struct keyval KV[MAXKV];
#define KVBASE 0x3a000000
static struct { int comm, kv; void *val; } AT[MAXATTR];
static int nattr;
static inline int kvi(int k) { k -= KVBASE; return (k >= 0 && k < MAXKV && KV[k].used) ? k : -1; }
int MPI_Comm_create_keyval(MPI_Comm_copy_attr_function *cp, MPI_Comm_delete_attr_function *dl, int *k, void *extra)
{
    for (int i = 0; i < MAXKV; i++)
        if (!KV[i].used) { KV[i] = (struct keyval){1, cp, dl, extra}; *k = KVBASE + i; return MPI_SUCCESS; }
    return MPI_ERR_OTHER;
}
int MPI_Comm_free_keyval(int *k)
{
    int i = kvi(*k);
    if (i < 0) return PMPI_Comm_free_keyval(k);
    KV[i].used = 0; /* attributes still set keep their callbacks until deleted (simplification) */
    *k = MPI_KEYVAL_INVALID;
    return MPI_SUCCESS;
}
static int attr_find(int c, int k) { for (int a = 0; a < nattr; a++) if (AT[a].comm == c && AT[a].kv == k) return a; return -1; }
static int attr_del(int c, int a)
{
    int k = AT[a].kv, rc = MPI_SUCCESS;
    void *v = AT[a].val;
    AT[a] = AT[--nattr];
    if (KV[k].del) rc = KV[k].del(C[c].v, KVBASE + k, v, KV[k].extra);
    return rc;
}
int MPI_Comm_set_attr(MPI_Comm c, int k, void *v)
{
    int i = idx(c), ki = kvi(k);
    if (i < 0 || ki < 0) return PMPI_Comm_set_attr(R(c), k, v);
    int a = attr_find(i, ki);
    if (a >= 0) attr_del(i, a);
    if (nattr == MAXATTR) return MPI_ERR_OTHER;
    AT[nattr].comm = i; AT[nattr].kv = ki; AT[nattr].val = v; nattr++;
    return MPI_SUCCESS;
}
int MPI_Comm_get_attr(MPI_Comm c, int k, void *v, int *f)
{
    int i = idx(c), ki = kvi(k);
    if (i < 0 || ki < 0) return PMPI_Comm_get_attr(R(c), k, v, f);
    int a = attr_find(i, ki);
    *f = a >= 0;
    if (a >= 0) *(void **)v = AT[a].val;
    return MPI_SUCCESS;
}
int MPI_Comm_delete_attr(MPI_Comm c, int k)
{
    int i = idx(c), ki = kvi(k);
    if (i < 0 || ki < 0) return PMPI_Comm_delete_attr(R(c), k);
    int a = attr_find(i, ki);
    return a < 0 ? MPI_ERR_KEYVAL : attr_del(i, a);
}
static void attrs_copy(int from, int to)
{
    for (int a = 0; a < nattr; a++) {
        if (AT[a].comm != from) continue;
        int k = AT[a].kv, flag = 0;
        void *nv = NULL;
        if (KV[k].copy && KV[k].copy(C[from].v, KVBASE + k, KV[k].extra, AT[a].val, &nv, &flag) == MPI_SUCCESS && flag && nattr < MAXATTR) {
            AT[nattr].comm = to; AT[nattr].kv = k; AT[nattr].val = nv; nattr++;
        }
    }
}
static void attrs_delete_all(int c) { for (int a = nattr - 1; a >= 0; a--) if (a < nattr && AT[a].comm == c) attr_del(c, a); }

static void attrs_delete_everywhere(void)
{
    attrs_delete_all(1);
    for (int i = ncomm - 1; i >= 0; i--) attrs_delete_all(i);
}

/* ---- communicators ---- */
int MPI_Comm_rank(MPI_Comm c, int *r) { return PMPI_Comm_rank(R(c), r); }
int MPI_Comm_size(MPI_Comm c, int *s) { return PMPI_Comm_size(R(c), s); }
int MPI_Comm_dup(MPI_Comm c, MPI_Comm *n)
{
    int p = idx(c);
    int rc = PMPI_Comm_dup(R(c), n);
    if (rc || p < 0) return rc;
    attrs_copy(p, new_entry(*n, *n, K_DUP, p, 0, 0));
    return rc;
}
int MPI_Comm_split(MPI_Comm c, int color, int key, MPI_Comm *n)
{
    int p = idx(c);
    int rc = PMPI_Comm_split(R(c), color, key, n);
    if (rc || p < 0) return rc;
    if (*n == MPI_COMM_NULL) {  /* still a participant when replayed */
        if (ncomm == MAXCOMM) abort();
        int i = ncomm++;
        memset(&C[i], 0, sizeof C[i]);
        C[i].v = C[i].r = MPI_COMM_NULL; C[i].kind = K_SPLIT; C[i].parent = p;
        C[i].color = color; C[i].key = key; C[i].nullsplit = 1; C[i].eh = MPI_ERRHANDLER_NULL;
        return rc;
    }
    new_entry(*n, *n, K_SPLIT, p, color, key);
    return rc;
}
int MPI_Comm_free(MPI_Comm *c)
{
    int i = idx(*c);
    if (verbose) fprintf(stderr, "vmpi: MPI_Comm_free(%#lx) entry %d\n", (unsigned long)(uintptr_t)*c, i);
    if (i < 2) return PMPI_Comm_free(c);
    attrs_delete_all(i);
    int rc = PMPI_Comm_free(&C[i].r);
    C[i].live = 0;
    *c = MPI_COMM_NULL;
    return rc;
}
int MPI_Comm_set_errhandler(MPI_Comm c, MPI_Errhandler e)
{
    int i = idx(c);
    if (i >= 0) C[i].eh = e;
    return PMPI_Comm_set_errhandler(R(c), e);
}
int MPI_Comm_get_errhandler(MPI_Comm c, MPI_Errhandler *e) { return PMPI_Comm_get_errhandler(R(c), e); }
int MPI_Comm_test_inter(MPI_Comm c, int *f) { return PMPI_Comm_test_inter(R(c), f); }
int MPI_Comm_group(MPI_Comm c, MPI_Group *g) { return PMPI_Comm_group(R(c), g); }
int MPI_Comm_get_name(MPI_Comm c, char *n, int *l) { return PMPI_Comm_get_name(R(c), n, l); }
int MPI_Comm_set_name(MPI_Comm c, const char *n) { return PMPI_Comm_set_name(R(c), n); }
int MPI_Comm_compare(MPI_Comm a, MPI_Comm b, int *res)
{
    if (a == b) { *res = MPI_IDENT; return MPI_SUCCESS; }
    return PMPI_Comm_compare(R(a), R(b), res);
}
int MPI_Comm_get_info(MPI_Comm c, MPI_Info *i) { return PMPI_Comm_get_info(R(c), i); }
int MPI_Comm_call_errhandler(MPI_Comm c, int e) { return PMPI_Comm_call_errhandler(R(c), e); }

/* ---- point to point (counted) ---- */
#define CNT_SEND(c, dest) do { int i_ = idx(c); if (i_ >= 0 && (dest) >= 0) C[i_].sent[dest]++; } while (0)
int MPI_Send(const void *b, int n, MPI_Datatype t, int d, int tag, MPI_Comm c)
{
    CNT_SEND(c, d);
    return PMPI_Send(b, n, t, d, tag, R(c));
}
int MPI_Ssend(const void *b, int n, MPI_Datatype t, int d, int tag, MPI_Comm c)
{
    CNT_SEND(c, d);
    return PMPI_Ssend(b, n, t, d, tag, R(c));
}
int MPI_Recv(void *b, int n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Status *st)
{
    MPI_Status mine;
    if (st == MPI_STATUS_IGNORE) st = &mine;
    int i = idx(c);
    int rc = PMPI_Recv(b, n, t, s, tag, i < 0 ? c : C[i].r, st);
    if (!rc && i >= 0 && st->MPI_SOURCE >= 0) C[i].recvd[st->MPI_SOURCE]++;
    return rc;
}
int MPI_Sendrecv(const void *sb, int sn, MPI_Datatype st_, int d, int stag, void *rb, int rn, MPI_Datatype rt,
                 int s, int rtag, MPI_Comm c, MPI_Status *st)
{
    MPI_Status mine;
    if (st == MPI_STATUS_IGNORE) st = &mine;
    int i = idx(c);
    if (i >= 0 && d >= 0) C[i].sent[d]++;
    int rc = PMPI_Sendrecv(sb, sn, st_, d, stag, rb, rn, rt, s, rtag, i < 0 ? c : C[i].r, st);
    if (!rc && i >= 0 && st->MPI_SOURCE >= 0) C[i].recvd[st->MPI_SOURCE]++;
    return rc;
}
int MPI_Isend(const void *b, int n, MPI_Datatype t, int d, int tag, MPI_Comm c, MPI_Request *r)
{
    CNT_SEND(c, d);
    return PMPI_Isend(b, n, t, d, tag, R(c), r);
}
int MPI_Irecv(void *b, int n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Request *r)
{
    int i = idx(c);
    int rc = PMPI_Irecv(b, n, t, s, tag, i < 0 ? c : C[i].r, r);
    if (!rc && i >= 0) rq_put(*r, i);
    return rc;
}
static inline void done_recv(int i, MPI_Status *st) { if (i >= 0 && st->MPI_SOURCE >= 0) C[i].recvd[st->MPI_SOURCE]++; }
int MPI_Wait(MPI_Request *r, MPI_Status *st)
{
    MPI_Status mine;
    if (st == MPI_STATUS_IGNORE) st = &mine;
    MPI_Request q = *r;
    int rc = PMPI_Wait(r, st);
    if (!rc) done_recv(rq_take(q), st);
    return rc;
}
int MPI_Test(MPI_Request *r, int *flag, MPI_Status *st)
{
    MPI_Status mine;
    if (st == MPI_STATUS_IGNORE) st = &mine;
    MPI_Request q = *r;
    int rc = PMPI_Test(r, flag, st);
    if (!rc && *flag) done_recv(rq_take(q), st);
    return rc;
}
int MPI_Waitall(int n, MPI_Request *rs, MPI_Status *sts)
{
    MPI_Request qs[n > 0 ? n : 1];
    MPI_Status mine[n > 0 ? n : 1];
    int ign = sts == MPI_STATUSES_IGNORE;
    if (ign) sts = mine;
    memcpy(qs, rs, n * sizeof *rs);
    int rc = PMPI_Waitall(n, rs, sts);
    if (!rc && rq_inflight)
        for (int k = 0; k < n; k++) done_recv(rq_take(qs[k]), &sts[k]);
    return rc;
}

/* ---- collectives ---- */
int MPI_Barrier(MPI_Comm c) { return PMPI_Barrier(R(c)); }
int MPI_Bcast(void *b, int n, MPI_Datatype t, int root, MPI_Comm c) { return PMPI_Bcast(b, n, t, root, R(c)); }
int MPI_Allreduce(const void *s, void *r, int n, MPI_Datatype t, MPI_Op op, MPI_Comm c) { return PMPI_Allreduce(s, r, n, t, op, R(c)); }
int MPI_Reduce(const void *s, void *r, int n, MPI_Datatype t, MPI_Op op, int root, MPI_Comm c) { return PMPI_Reduce(s, r, n, t, op, root, R(c)); }
int MPI_Allgather(const void *s, int sn, MPI_Datatype st, void *r, int rn, MPI_Datatype rt, MPI_Comm c) { return PMPI_Allgather(s, sn, st, r, rn, rt, R(c)); }
int MPI_Gather(const void *s, int sn, MPI_Datatype st, void *r, int rn, MPI_Datatype rt, int root, MPI_Comm c) { return PMPI_Gather(s, sn, st, r, rn, rt, root, R(c)); }
int MPI_Scatter(const void *s, int sn, MPI_Datatype st, void *r, int rn, MPI_Datatype rt, int root, MPI_Comm c) { return PMPI_Scatter(s, sn, st, r, rn, rt, root, R(c)); }
int MPI_Alltoall(const void *s, int sn, MPI_Datatype st, void *r, int rn, MPI_Datatype rt, MPI_Comm c) { return PMPI_Alltoall(s, sn, st, r, rn, rt, R(c)); }

int MPI_Gatherv(const void *s, int sn, MPI_Datatype st, void *r, const int rc[], const int dp[], MPI_Datatype rt, int root, MPI_Comm c) { return PMPI_Gatherv(s, sn, st, r, rc, dp, rt, root, R(c)); }
int MPI_Allgatherv(const void *s, int sn, MPI_Datatype st, void *r, const int rc[], const int dp[], MPI_Datatype rt, MPI_Comm c) { return PMPI_Allgatherv(s, sn, st, r, rc, dp, rt, R(c)); }
int MPI_Scatterv(const void *s, const int sc[], const int dp[], MPI_Datatype st, void *r, int rn, MPI_Datatype rt, int root, MPI_Comm c) { return PMPI_Scatterv(s, sc, dp, st, r, rn, rt, root, R(c)); }
int MPI_Alltoallv(const void *s, const int sc[], const int sd[], MPI_Datatype st, void *r, const int rc[], const int rd[], MPI_Datatype rt, MPI_Comm c) { return PMPI_Alltoallv(s, sc, sd, st, r, rc, rd, rt, R(c)); }

/* ---- MPI-4 large-count variants: mpi4py 4 calls these when libmpi has them (MPICH 4+; Open
 * MPI 5.0 declares none of the PMPI_*_c and exports no MPI_*_c) ---- */
#ifdef MPICH_VERSION
int MPI_Send_c(const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm c)
{
    CNT_SEND(c, d);
    return PMPI_Send_c(b, n, t, d, tag, R(c));
}
int MPI_Ssend_c(const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm c)
{
    CNT_SEND(c, d);
    return PMPI_Ssend_c(b, n, t, d, tag, R(c));
}
int MPI_Recv_c(void *b, MPI_Count n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Status *st)
{
    MPI_Status mine;
    if (st == MPI_STATUS_IGNORE) st = &mine;
    int i = idx(c);
    int rc = PMPI_Recv_c(b, n, t, s, tag, i < 0 ? c : C[i].r, st);
    if (!rc && i >= 0 && st->MPI_SOURCE >= 0) C[i].recvd[st->MPI_SOURCE]++;
    return rc;
}
int MPI_Sendrecv_c(const void *sb, MPI_Count sn, MPI_Datatype st_, int d, int stag, void *rb, MPI_Count rn, MPI_Datatype rt,
                   int s, int rtag, MPI_Comm c, MPI_Status *st)
{
    MPI_Status mine;
    if (st == MPI_STATUS_IGNORE) st = &mine;
    int i = idx(c);
    if (i >= 0 && d >= 0) C[i].sent[d]++;
    int rc = PMPI_Sendrecv_c(sb, sn, st_, d, stag, rb, rn, rt, s, rtag, i < 0 ? c : C[i].r, st);
    if (!rc && i >= 0 && st->MPI_SOURCE >= 0) C[i].recvd[st->MPI_SOURCE]++;
    return rc;
}
int MPI_Isend_c(const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm c, MPI_Request *r)
{
    CNT_SEND(c, d);
    return PMPI_Isend_c(b, n, t, d, tag, R(c), r);
}
int MPI_Irecv_c(void *b, MPI_Count n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Request *r)
{
    int i = idx(c);
    int rc = PMPI_Irecv_c(b, n, t, s, tag, i < 0 ? c : C[i].r, r);
    if (!rc && i >= 0) rq_put(*r, i);
    return rc;
}
int MPI_Bcast_c(void *b, MPI_Count n, MPI_Datatype t, int root, MPI_Comm c) { return PMPI_Bcast_c(b, n, t, root, R(c)); }
int MPI_Allreduce_c(const void *s, void *r, MPI_Count n, MPI_Datatype t, MPI_Op op, MPI_Comm c) { return PMPI_Allreduce_c(s, r, n, t, op, R(c)); }
int MPI_Reduce_c(const void *s, void *r, MPI_Count n, MPI_Datatype t, MPI_Op op, int root, MPI_Comm c) { return PMPI_Reduce_c(s, r, n, t, op, root, R(c)); }
int MPI_Allgather_c(const void *s, MPI_Count sn, MPI_Datatype st, void *r, MPI_Count rn, MPI_Datatype rt, MPI_Comm c) { return PMPI_Allgather_c(s, sn, st, r, rn, rt, R(c)); }
int MPI_Gather_c(const void *s, MPI_Count sn, MPI_Datatype st, void *r, MPI_Count rn, MPI_Datatype rt, int root, MPI_Comm c) { return PMPI_Gather_c(s, sn, st, r, rn, rt, root, R(c)); }
int MPI_Scatter_c(const void *s, MPI_Count sn, MPI_Datatype st, void *r, MPI_Count rn, MPI_Datatype rt, int root, MPI_Comm c) { return PMPI_Scatter_c(s, sn, st, r, rn, rt, root, R(c)); }
int MPI_Alltoall_c(const void *s, MPI_Count sn, MPI_Datatype st, void *r, MPI_Count rn, MPI_Datatype rt, MPI_Comm c) { return PMPI_Alltoall_c(s, sn, st, r, rn, rt, R(c)); }
int MPI_Gatherv_c(const void *s, MPI_Count sn, MPI_Datatype st, void *r, const MPI_Count rc[], const MPI_Aint dp[], MPI_Datatype rt, int root, MPI_Comm c) { return PMPI_Gatherv_c(s, sn, st, r, rc, dp, rt, root, R(c)); }
int MPI_Allgatherv_c(const void *s, MPI_Count sn, MPI_Datatype st, void *r, const MPI_Count rc[], const MPI_Aint dp[], MPI_Datatype rt, MPI_Comm c) { return PMPI_Allgatherv_c(s, sn, st, r, rc, dp, rt, R(c)); }
int MPI_Scatterv_c(const void *s, const MPI_Count sc[], const MPI_Aint dp[], MPI_Datatype st, void *r, MPI_Count rn, MPI_Datatype rt, int root, MPI_Comm c) { return PMPI_Scatterv_c(s, sc, dp, st, r, rn, rt, root, R(c)); }
int MPI_Alltoallv_c(const void *s, const MPI_Count sc[], const MPI_Aint sd[], MPI_Datatype st, void *r, const MPI_Count rc[], const MPI_Aint rd[], MPI_Datatype rt, MPI_Comm c) { return PMPI_Alltoallv_c(s, sc, sd, st, r, rc, rd, rt, R(c)); }
#endif
/* matched probe: mpi4py's lowercase recv uses MPI_Mprobe/Mrecv; counted at Mrecv? the message
 * handle carries no communicator, so count at the probe (the message is then ours) */
int MPI_Mprobe(int s, int tag, MPI_Comm c, MPI_Message *m, MPI_Status *st)
{
    MPI_Status mine;
    if (st == MPI_STATUS_IGNORE) st = &mine;
    int i = idx(c);
    int rc = PMPI_Mprobe(s, tag, i < 0 ? c : C[i].r, m, st);
    if (!rc && i >= 0 && st->MPI_SOURCE >= 0) C[i].recvd[st->MPI_SOURCE]++;
    return rc;
}
int MPI_Improbe(int s, int tag, MPI_Comm c, int *f, MPI_Message *m, MPI_Status *st)
{
    MPI_Status mine;
    if (st == MPI_STATUS_IGNORE) st = &mine;
    int i = idx(c);
    int rc = PMPI_Improbe(s, tag, i < 0 ? c : C[i].r, f, m, st);
    if (!rc && *f && i >= 0 && st->MPI_SOURCE >= 0) C[i].recvd[st->MPI_SOURCE]++;
    return rc;
}
int MPI_Probe(int s, int tag, MPI_Comm c, MPI_Status *st) { return PMPI_Probe(s, tag, R(c), st); }
int MPI_Iprobe(int s, int tag, MPI_Comm c, int *f, MPI_Status *st) { return PMPI_Iprobe(s, tag, R(c), f, st); }
