/* comm.c: virtual communicators. The application holds the handle a communicator first had
 * (MPI_COMM_WORLD/SELF their predefined values); the layer keeps how each was made (Dup, Split,
 * from which parent) and makes them again, in creation order, on every new session, with the
 * layer's twin of each (a Dup the protocol's collectives use) and the counters of the cut. */
#include "layer.h"

struct vcomm *C;
int ncomm;
static int capcomm;
int last_i;

int add_comm(void)
{
    if (ncomm == capcomm) {
        capcomm = capcomm ? 2 * capcomm : 64;
        C = realloc(C, capcomm * sizeof *C);
        if (!C) { fprintf(stderr, "crcp: out of memory\n"); abort(); }
    }
    memset(&C[ncomm], 0, sizeof *C);
    C[ncomm].v = C[ncomm].r = C[ncomm].shadow = MPI_COMM_NULL;
    C[ncomm].eh = MPI_ERRHANDLER_NULL;
    C[ncomm].parent = -1;
    return ncomm++;
}

/* size, counters and the layer's twin of a communicator just made (collective over it) */
int comm_ready(int i)
{
    PMPI_Comm_size(C[i].r, &C[i].size);
    PMPI_Comm_rank(C[i].r, &C[i].rank);
    if (!C[i].sent) {
        C[i].sent = calloc(C[i].size, sizeof(uint64_t));
        C[i].recvd = calloc(C[i].size, sizeof(uint64_t));
        if (!C[i].sent || !C[i].recvd) return MPI_ERR_NO_MEM;
    }
    if (C[i].kind == K_SELF) return MPI_SUCCESS;
    int rc = PMPI_Comm_dup(C[i].r, &C[i].shadow);
    if (!rc) PMPI_Comm_set_errhandler(C[i].shadow, MPI_ERRORS_RETURN);
    return rc;
}

int comm_predefined(MPI_Comm w, MPI_Comm s)
{
    int rc;
    if (ncomm == 0) {
        int i = add_comm();
        C[i].v = MPI_COMM_WORLD; C[i].kind = K_WORLD; C[i].live = 1;
        i = add_comm();
        C[i].v = MPI_COMM_SELF; C[i].kind = K_SELF; C[i].live = 1;
    }
    C[0].r = w;
    C[1].r = s;
    if ((rc = comm_ready(0))) return rc;
    return comm_ready(1);
}

void comm_teardown(void)
{
    for (int i = ncomm - 1; i >= 0; i--) {
        if (C[i].shadow != MPI_COMM_NULL) PMPI_Comm_free(&C[i].shadow);
        if (C[i].r != MPI_COMM_NULL) PMPI_Comm_free(&C[i].r);
        C[i].shadow = C[i].r = MPI_COMM_NULL;
    }
}

int comm_replay(void)
{
    int rc = MPI_SUCCESS;
    /* communicators made again in creation order (the same collective order as the original
     * run, on every member): the live ones, and every freed ancestor of a live one */
    for (int i = 0; i < ncomm; i++) C[i].needed = C[i].live || C[i].nullsplit;
    for (int i = ncomm - 1; i >= 2; i--)
        if (C[i].needed && C[i].parent >= 0) C[C[i].parent].needed = 1;
    for (int i = 2; i < ncomm && !rc; i++) {
        if (!C[i].needed) continue;
        MPI_Comm p = C[C[i].parent].r;
        rc = C[i].kind == K_DUP ? PMPI_Comm_dup(p, &C[i].r) : PMPI_Comm_split(p, C[i].color, C[i].key, &C[i].r);
        if (!rc && C[i].r != MPI_COMM_NULL) rc = comm_ready(i);
    }
    for (int i = 0; i < ncomm && !rc; i++) {
        if (C[i].r != MPI_COMM_NULL && C[i].eh != MPI_ERRHANDLER_NULL) PMPI_Comm_set_errhandler(C[i].r, C[i].eh);
        if (!C[i].live && C[i].r != MPI_COMM_NULL) {
            if (C[i].shadow != MPI_COMM_NULL) PMPI_Comm_free(&C[i].shadow);
            PMPI_Comm_free(&C[i].r);
        }
    }
    return rc;
}

static int comm_made(int parent, MPI_Comm r, int kind, int color, int key, MPI_Comm *out)
{
    int rc = MPI_SUCCESS;
    int i = add_comm();
    C[i].kind = kind; C[i].parent = parent; C[i].color = color; C[i].key = key;
    if (r == MPI_COMM_NULL) { C[i].nullsplit = 1; *out = MPI_COMM_NULL; return rc; }
    C[i].v = C[i].r = r; C[i].live = 1;
    UNGATED(rc = comm_ready(i));
    *out = r;
    attrs_copy(parent, i);
    if (kind == K_SPLIT) { /* attributes are not copied by a split */
        attrs_split_drop(i);
    }
    return rc;
}
EXPORT int MPI_Comm_dup(MPI_Comm c, MPI_Comm *n)
{
    enter();
    int p = idx(c), rc;
    if (p < 0) { rc = PMPI_Comm_dup(c, n); leave(); return rc; }
    coll_admit(p);
    MPI_Comm real = C[p].r, made = MPI_COMM_NULL;
    UNGATED(rc = PMPI_Comm_dup(real, &made));
    if (!rc) rc = comm_made(p, made, K_DUP, 0, 0, n);
    C[p].completed++;
    leave();
    return rc;
}
EXPORT int MPI_Comm_dup_with_info(MPI_Comm c, MPI_Info info, MPI_Comm *n)
{
    (void)info; /* hints only; the replay makes a plain duplicate */
    return MPI_Comm_dup(c, n);
}
EXPORT int MPI_Comm_split(MPI_Comm c, int color, int key, MPI_Comm *n)
{
    enter();
    int p = idx(c), rc;
    if (p < 0) { rc = PMPI_Comm_split(c, color, key, n); leave(); return rc; }
    coll_admit(p);
    MPI_Comm real = C[p].r, made = MPI_COMM_NULL;
    UNGATED(rc = PMPI_Comm_split(real, color, key, &made));
    if (!rc) rc = comm_made(p, made, K_SPLIT, color, key, n);
    C[p].completed++;
    leave();
    return rc;
}
EXPORT int MPI_Comm_free(MPI_Comm *c)
{
    enter();
    int i = idx(*c), rc = MPI_SUCCESS;
    if (i < 0) {
        MPI_Comm before = *c;
        rc = PMPI_Comm_free(c);
        if (!rc) unsupported_gone("communicator", (long)before);
    } else if (i < 2) {
        rc = MPI_ERR_COMM;
    } else {
        attrs_delete_all(i);
        if (C[i].shadow != MPI_COMM_NULL) PMPI_Comm_free(&C[i].shadow);
        rc = PMPI_Comm_free(&C[i].r);
        C[i].live = 0;
        *c = MPI_COMM_NULL;
    }
    leave();
    return rc;
}
EXPORT int MPI_Comm_disconnect(MPI_Comm *c)
{
    enter();
    int tracked = idx(*c) >= 0;
    leave();
    if (tracked) return MPI_Comm_free(c);
    enter();
    MPI_Comm before = *c;
    int rc = PMPI_Comm_disconnect(c);
    if (!rc) unsupported_gone("communicator", (long)before);
    leave();
    return rc;
}
EXPORT int MPI_Comm_set_errhandler(MPI_Comm c, MPI_Errhandler e)
{
    enter();
    int i = idx(c);
    if (i >= 0) C[i].eh = e;
    int rc = PMPI_Comm_set_errhandler(R(c), e);
    leave();
    return rc;
}
EXPORT int MPI_Comm_compare(MPI_Comm a, MPI_Comm b, int *res)
{
    if (a == b) { *res = MPI_IDENT; return MPI_SUCCESS; }
    enter();
    int rc = PMPI_Comm_compare(R(a), R(b), res);
    leave();
    return rc;
}
