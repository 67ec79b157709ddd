/* comm.c: communicators and the other collective contexts (handles.h). An entry keeps what it
 * takes to make its communicator again with nothing but its group(s): the world ranks of its
 * members in rank order (and of its remote group), its topology, its hints, and an id its
 * members agree on without talking (the hash of its group(s) and of how many contexts with the
 * same group(s) each member has made before: they all made the same ones, in the same order).
 * After a rebuild, every communicator the application holds is made again in creation order,
 * with MPI_Comm_create_from_group (MPI_Intercomm_create_from_groups), its topology on top,
 * tagged by its id: no parent is needed, so a communicator freed by some ranks and not by others
 * can never make the ranks disagree on what to make again. */
#include "layer.h"

struct vcomm *C;
int ncomm;
static int capcomm;
static uint64_t serial_next;
static uint64_t *serial;    /* creation order of each slot */

/* ---- ids ---- */
struct sigcount { uint64_t sig; uint64_t count; };
static struct sigcount *SC;
static int nsc, capsc;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 0x100000001b3ull; }
    return h;
}
static int ranks_cmp(const int *a, int na, const int *b, int nb)
{
    for (int i = 0; i < na && i < nb; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return na - nb;
}
/* the id of a new context with this kind and these groups: every member computes the same */
static uint64_t context_id(int kind, const int *wr, int n, const int *rwr, int rn)
{
    uint64_t h = 0xcbf29ce484222325ull;
    int tag = kind == K_WINCTX ? 3 : kind == K_FILECTX ? 4 : rwr ? 2 : 1;
    h = fnv(h, &tag, sizeof tag);
    if (rwr && ranks_cmp(rwr, rn, wr, n) < 0) { /* both sides of an intercomm: one order */
        const int *t = wr; wr = rwr; rwr = t;
        int tn = n; n = rn; rn = tn;
    }
    h = fnv(h, &n, sizeof n);
    h = fnv(h, wr, n * sizeof *wr);
    if (rwr) { h = fnv(h, &rn, sizeof rn); h = fnv(h, rwr, rn * sizeof *rwr); }
    uint64_t count = 0;
    int k;
    for (k = 0; k < nsc && SC[k].sig != h; k++) {}
    if (k == nsc) {
        if (nsc == capsc) {
            capsc = capsc ? 2 * capsc : 64;
            SC = realloc(SC, capsc * sizeof *SC);
            if (!SC) { fprintf(stderr, "crcp: out of memory\n"); abort(); }
        }
        SC[nsc++] = (struct sigcount){h, 0};
    }
    count = SC[k].count++;
    return fnv(h, &count, sizeof count);
}

/* ---- the table ---- */
static int comm_slot(void)
{
    int i = 2;
    while (i < ncomm && C[i].used) i++;
    if (i == ncomm) {
        if (ncomm == capcomm) {
            capcomm = capcomm ? 2 * capcomm : 64;
            C = realloc(C, capcomm * sizeof *C);
            serial = realloc(serial, capcomm * sizeof *serial);
            if (!C || !serial) { fprintf(stderr, "crcp: out of memory\n"); abort(); }
        }
        ncomm++;
    }
    memset(&C[i], 0, sizeof *C);
    C[i].used = 1;
    C[i].v = C[i].r = MPI_COMM_NULL;
    C[i].eh = MPI_ERRHANDLER_NULL;
    C[i].info = -1;
    serial[i] = serial_next++;
    return i;
}
uint64_t comm_serial(int i) { return serial[i]; }

MPI_Comm comm_handle(int i)
{
    return i == 0 ? MPI_COMM_WORLD : i == 1 ? MPI_COMM_SELF : LAYER_HANDLE(MPI_COMM_NULL, i);
}

static void comm_forget(int i)
{
    free(C[i].wr); free(C[i].rwr); free(C[i].sent); free(C[i].recvd);
    free(C[i].dims); free(C[i].periods); free(C[i].index); free(C[i].edges);
    free(C[i].srcs); free(C[i].sw); free(C[i].dsts); free(C[i].dw); free(C[i].name);
    info_slot_drop(C[i].info);
    errh_ref(C[i].eh, -1);
    C[i].used = 0;
    while (ncomm > 2 && !C[ncomm - 1].used) ncomm--;
}

/* MPICH's MPI_UNWEIGHTED is a variable of libmpi, which the layer does not link (it finds the
 * libmpi mpi4py loaded at run time): looked up when needed */
static int *unweighted(void)
{
    int *const *p = dlsym(RTLD_DEFAULT, "MPI_UNWEIGHTED");
    return p ? *p : NULL;
}

/* the topology of real communicator r, kept for the rebuild */
static int topology(int i)
{
    int t = MPI_UNDEFINED, rc;
    if ((rc = PMPI_Topo_test(C[i].r, &t))) return rc;
    if (t == MPI_CART) {
        C[i].kind = K_CART;
        if ((rc = PMPI_Cartdim_get(C[i].r, &C[i].ndims))) return rc;
        int n = C[i].ndims ? C[i].ndims : 1;
        C[i].dims = calloc(n, sizeof(int)); C[i].periods = calloc(n, sizeof(int));
        int *coords = calloc(n, sizeof(int));
        if (!C[i].dims || !C[i].periods || !coords) { free(coords); return MPI_ERR_NO_MEM; }
        rc = PMPI_Cart_get(C[i].r, C[i].ndims, C[i].dims, C[i].periods, coords);
        free(coords);
    } else if (t == MPI_GRAPH) {
        C[i].kind = K_GRAPH;
        if ((rc = PMPI_Graphdims_get(C[i].r, &C[i].nnodes, &C[i].nedges))) return rc;
        C[i].index = calloc(C[i].nnodes + 1, sizeof(int));
        C[i].edges = calloc(C[i].nedges + 1, sizeof(int));
        if (!C[i].index || !C[i].edges) return MPI_ERR_NO_MEM;
        rc = PMPI_Graph_get(C[i].r, C[i].nnodes, C[i].nedges, C[i].index, C[i].edges);
    } else if (t == MPI_DIST_GRAPH) {
        C[i].kind = K_DIST;
        if ((rc = PMPI_Dist_graph_neighbors_count(C[i].r, &C[i].indeg, &C[i].outdeg, &C[i].weighted)))
            return rc;
        C[i].srcs = calloc(C[i].indeg + 1, sizeof(int)); C[i].sw = calloc(C[i].indeg + 1, sizeof(int));
        C[i].dsts = calloc(C[i].outdeg + 1, sizeof(int)); C[i].dw = calloc(C[i].outdeg + 1, sizeof(int));
        if (!C[i].srcs || !C[i].sw || !C[i].dsts || !C[i].dw) return MPI_ERR_NO_MEM;
        rc = PMPI_Dist_graph_neighbors(C[i].r, C[i].indeg, C[i].srcs,
                                       C[i].weighted ? C[i].sw : unweighted(), C[i].outdeg,
                                       C[i].dsts, C[i].weighted ? C[i].dw : unweighted());
    }
    return rc;
}

/* groups, size, rank, counters of entry i whose real communicator is made */
static int comm_describe(int i)
{
    int rc;
    MPI_Group g;
    if ((rc = PMPI_Comm_test_inter(C[i].r, &C[i].inter))) return rc;
    if ((rc = PMPI_Comm_size(C[i].r, &C[i].size)) || (rc = PMPI_Comm_rank(C[i].r, &C[i].rank))) return rc;
    if ((rc = PMPI_Comm_group(C[i].r, &g))) return rc;
    int n;
    C[i].wr = group_ranks(g, &n);
    PMPI_Group_free(&g);
    if (!C[i].wr) C[i].foreign = 1;
    if (C[i].inter) {
        if ((rc = PMPI_Comm_remote_size(C[i].r, &C[i].rsize))) return rc;
        if ((rc = PMPI_Comm_remote_group(C[i].r, &g))) return rc;
        C[i].rwr = group_ranks(g, &n);
        PMPI_Group_free(&g);
        if (!C[i].rwr) C[i].foreign = 1;
    }
    int peers = C[i].inter ? C[i].rsize : C[i].size;
    C[i].sent = calloc(peers + 1, sizeof(uint64_t));
    C[i].recvd = calloc(peers + 1, sizeof(uint64_t));
    if (!C[i].sent || !C[i].recvd) return MPI_ERR_NO_MEM;
    return MPI_SUCCESS;
}

int comm_new(MPI_Comm r, int parent, int kind, const char *fn, int *rc)
{
    int i = comm_slot();
    C[i].r = r;
    C[i].kind = kind;
    C[i].made_by = fn;
    C[i].app = kind != K_WINCTX && kind != K_FILECTX;
    C[i].v = C[i].app ? comm_handle(i) : MPI_COMM_NULL;
    if (parent >= 0) { C[i].eh = C[parent].eh; errh_ref(C[i].eh, 1); }
    if ((C[i].app && (*rc = PMPI_Comm_set_errhandler(r, MPI_ERRORS_RETURN))) || (*rc = comm_describe(i))
        || (C[i].app && (*rc = topology(i)))) {
        C[i].r = MPI_COMM_NULL; /* the caller frees the real one */
        comm_forget(i);
        return -1;
    }
    if (C[i].app && !C[i].foreign) {
        MPI_Info hints = MPI_INFO_NULL;
        if (!PMPI_Comm_get_info(r, &hints)) C[i].info = info_slot_from_real(hints);
    }
    if (!C[i].foreign) C[i].id = context_id(kind, C[i].wr, C[i].size, C[i].rwr, C[i].rsize);
    return i;
}

/* MPI_Comm_idup: the entry now (the application holds its handle), the rest at completion */
int comm_pending(MPI_Comm r, int parent, const char *fn)
{
    int i = comm_slot();
    C[i].r = r;
    C[i].kind = K_COMM;
    C[i].made_by = fn;
    C[i].app = 1;
    C[i].v = comm_handle(i);
    C[i].pending = 1;
    C[i].parent = parent;
    C[i].eh = C[parent].eh;
    errh_ref(C[i].eh, 1);
    /* the id now, in call order (the group is the parent's) */
    if (!C[parent].foreign)
        C[i].id = context_id(K_COMM, C[parent].wr, C[parent].size, C[parent].rwr, C[parent].rsize);
    return i;
}
void comm_finish(int i)
{
    if (!C[i].used || !C[i].pending) return;
    C[i].pending = 0;
    int rc = PMPI_Comm_set_errhandler(C[i].r, MPI_ERRORS_RETURN);
    if (!rc) rc = comm_describe(i);
    if (!rc) rc = topology(i);
    if (rc && verbose) fprintf(stderr, "crcp: describing a communicator made by %s: error %d\n", C[i].made_by, rc);
    MPI_Info hints = MPI_INFO_NULL;
    if (!PMPI_Comm_get_info(C[i].r, &hints)) C[i].info = info_slot_from_real(hints);
    if (C[i].parent >= 0 && C[C[i].parent].used) attrs_copy(A_COMM, C[C[i].parent].v, C[i].v);
}

/* the context of a window or file made over real communicator r (not kept: MPI dups it) */
int ctx_new(MPI_Comm r, int kind, int *rc)
{
    int i = comm_new(r, -1, kind, NULL, rc);
    if (i >= 0) C[i].r = MPI_COMM_NULL;
    return i;
}

/* a context whose object is gone: its counts stay with the cut until every member is past it */
void zombie_add(int ci)
{
    static int capZ;
    if (nZ == capZ) {
        capZ = capZ ? 2 * capZ : 16;
        Z = realloc(Z, capZ * sizeof *Z);
        if (!Z) { fprintf(stderr, "crcp: out of memory\n"); abort(); }
    }
    Z[nZ++] = (struct zombie){C[ci].id, C[ci].started};
}
struct zombie *Z;
int nZ;

void ctx_free(int ci)
{
    if (C[ci].r != MPI_COMM_NULL) PMPI_Comm_free(&C[ci].r);
    zombie_add(ci);
    comm_forget(ci);
}

/* the application frees entry i (the real one is freed by the caller) */
void comm_dropped(int i)
{
    C[i].app = 0;
    zombie_add(i);
    if (!C[i].holds) comm_forget(i);
}

void comm_hold(MPI_Comm v, int delta)
{
    int i = idx_any(v);
    if (i < 2) return;
    C[i].holds += delta;
    if (!C[i].holds && !C[i].app) {
        if (C[i].r != MPI_COMM_NULL) PMPI_Comm_free(&C[i].r);
        comm_forget(i);
    }
}

int coll_peers(int ci, int neighbor, int send)
{
    if (ci < 0) return 0;
    if (neighbor) {
        if (C[ci].kind == K_DIST) return send ? C[ci].outdeg : C[ci].indeg;
        if (C[ci].kind == K_CART) return 2 * C[ci].ndims;
        if (C[ci].kind == K_GRAPH) {
            int n = 0;
            PMPI_Graph_neighbors_count(C[ci].r, C[ci].rank, &n);
            return n;
        }
        return 0;
    }
    return C[ci].inter ? C[ci].rsize : C[ci].size;
}

int comm_predefined(MPI_Comm w, MPI_Comm s)
{
    int rc;
    if (ncomm == 0) {
        capcomm = 64;
        C = calloc(capcomm, sizeof *C);
        serial = calloc(capcomm, sizeof *serial);
        if (!C || !serial) return MPI_ERR_NO_MEM;
        ncomm = 2;
        for (int i = 0; i < 2; i++) {
            C[i].used = C[i].app = 1;
            C[i].kind = i ? K_SELF : K_WORLD;
            C[i].v = i ? MPI_COMM_SELF : MPI_COMM_WORLD;
            C[i].eh = MPI_ERRHANDLER_NULL;
            C[i].info = -1;
            C[i].r = i ? s : w;
            if ((rc = PMPI_Comm_set_errhandler(C[i].r, MPI_ERRORS_RETURN)) || (rc = comm_describe(i)))
                return rc;
            C[i].id = context_id(C[i].kind, C[i].wr, C[i].size, NULL, 0);
        }
        return MPI_SUCCESS;
    }
    C[0].r = w;
    C[1].r = s;
    if ((rc = PMPI_Comm_set_errhandler(w, MPI_ERRORS_RETURN))) return rc;
    return PMPI_Comm_set_errhandler(s, MPI_ERRORS_RETURN);
}

void comm_teardown(void)
{
    for (int i = ncomm - 1; i >= 0; i--) {
        if (C[i].used && C[i].r != MPI_COMM_NULL) {
            int rc = PMPI_Comm_free(&C[i].r);
            if (rc && verbose) fprintf(stderr, "crcp: freeing communicator %d at teardown: error %d\n", i, rc);
        }
        if (C[i].used) C[i].r = MPI_COMM_NULL;
    }
}

static void tag_of(uint64_t id, char *tag, size_t n) { snprintf(tag, n, "org.pycrs.crcp.%016llx", (unsigned long long)id); }

int comm_from_ranks(const int *wr, int n, uint64_t id, const char *what, MPI_Comm *out)
{
    (void)what;
    MPI_Group g;
    char tag[64];
    int rc = group_of_ranks(wr, n, &g);
    if (rc) return rc;
    tag_of(id, tag, sizeof tag);
    rc = PMPI_Comm_create_from_group(g, tag, MPI_INFO_NULL, MPI_ERRORS_RETURN, out);
    PMPI_Group_free(&g);
    return rc;
}

/* make entry i's communicator again, in a new session */
static int comm_remake(int i)
{
    int rc;
    char tag[64];
    MPI_Info hints = MPI_INFO_NULL;
    tag_of(C[i].id, tag, sizeof tag);
    if (C[i].info >= 0 && (rc = info_real_of_slot(C[i].info, &hints))) return rc;
    if (C[i].inter) {
        MPI_Group lg, rg;
        if ((rc = group_of_ranks(C[i].wr, C[i].size, &lg))) goto out;
        if ((rc = group_of_ranks(C[i].rwr, C[i].rsize, &rg))) { PMPI_Group_free(&lg); goto out; }
        rc = PMPI_Intercomm_create_from_groups(lg, 0, rg, 0, tag, hints, MPI_ERRORS_RETURN, &C[i].r);
        PMPI_Group_free(&lg);
        PMPI_Group_free(&rg);
        goto out;
    }
    MPI_Group g;
    MPI_Comm base = MPI_COMM_NULL;
    if ((rc = group_of_ranks(C[i].wr, C[i].size, &g))) goto out;
    rc = PMPI_Comm_create_from_group(g, tag, hints, MPI_ERRORS_RETURN, &base);
    PMPI_Group_free(&g);
    if (rc) goto out;
    switch (C[i].zerod ? K_COMM : C[i].kind) {
    case K_CART:
        rc = PMPI_Cart_create(base, C[i].ndims, C[i].dims, C[i].periods, 0, &C[i].r);
        break;
    case K_GRAPH:
        rc = PMPI_Graph_create(base, C[i].nnodes, C[i].index, C[i].edges, 0, &C[i].r);
        break;
    case K_DIST:
        rc = PMPI_Dist_graph_create_adjacent(base, C[i].indeg, C[i].srcs,
                                             C[i].weighted ? C[i].sw : unweighted(), C[i].outdeg,
                                             C[i].dsts, C[i].weighted ? C[i].dw : unweighted(),
                                             hints, 0, &C[i].r);
        break;
    default:
        C[i].r = base;
        base = MPI_COMM_NULL;
    }
    if (base != MPI_COMM_NULL) PMPI_Comm_free(&base);
out:
    if (hints != MPI_INFO_NULL) PMPI_Info_free(&hints);
    if (!rc) rc = PMPI_Comm_set_errhandler(C[i].r, MPI_ERRORS_RETURN);
    return rc;
}

int comm_replay(void)
{
    /* in creation order: the order the members made them in (contexts of windows and files are
     * made with their object, in win.c and file.c) */
    int n = 0, rc = MPI_SUCCESS;
    int *order = malloc((ncomm + 1) * sizeof *order);
    if (!order) return MPI_ERR_NO_MEM;
    for (int i = 2; i < ncomm; i++)
        if (C[i].used && (C[i].app || C[i].holds) && C[i].kind != K_WINCTX && C[i].kind != K_FILECTX)
            order[n++] = i;
    for (int a = 1; a < n; a++)
        for (int b = a; b > 0 && serial[order[b - 1]] > serial[order[b]]; b--) {
            int t = order[b]; order[b] = order[b - 1]; order[b - 1] = t;
        }
    for (int k = 0; k < n && !rc; k++) {
        rc = comm_remake(order[k]);
        if (rc && verbose) fprintf(stderr, "crcp: making communicator %d again: error %d\n", order[k], rc);
    }
    free(order);
    return rc;
}

const char *comm_refusal(char *buf, int len)
{
    for (int i = 2; i < ncomm; i++)
        if (C[i].used && (C[i].app || C[i].holds) && C[i].foreign) {
            snprintf(buf, len, "a communicator made by %s reaches processes outside this job "
                     "(spawned or connected; they cannot be brought back)", C[i].made_by);
            return buf;
        }
    return NULL;
}
