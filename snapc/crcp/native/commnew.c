/* commnew.c: the communicators the application makes and frees, by every constructor MPI has
 * (comm.c keeps them). A constructor that is collective over its parent communicator is counted
 * as a collective on it (the cut makes every member complete it or none); one that is collective
 * over a group only (MPI_Comm_create_group, MPI_Comm_create_from_group,
 * MPI_Intercomm_create_from_groups) is counted as a blocking call: the cut waits until no thread
 * is inside one. Either runs without the layer's lock, so that the protocol, which its peers may
 * be waiting for, goes on beside it. */
#include "layer.h"

/* entry for communicator r made by fn from parent p (MPI_COMM_NULL: none for this rank) */
static int made(int p, MPI_Comm r, const char *fn, MPI_Comm *out, int dup)
{
    int rc = MPI_SUCCESS;
    if (r == MPI_COMM_NULL) { *out = MPI_COMM_NULL; return rc; }
    int i = comm_new(r, p, K_COMM, fn, &rc);
    if (i < 0) { PMPI_Comm_free(&r); *out = MPI_COMM_NULL; return rc; }
    *out = C[i].v;
    if (dup && p >= 0 && C[p].zerod) { C[i].kind = K_CART; C[i].ndims = 0; C[i].zerod = 1; }
    if (dup && p >= 0 && (rc = attrs_copy(A_COMM, C[p].v, C[i].v))) {
        PMPI_Comm_free(&C[i].r);
        comm_dropped(i);
        *out = MPI_COMM_NULL;
    }
    return rc;
}

/* a constructor collective over parent p: counted, run without the lock */
#define COUNTED(p, call) do { coll_admit(p); UNGATED(rc = (call)); C[p].completed++; } while (0)
/* one collective over a group only: the cut waits until no thread is inside one */
#define BLOCKING(call) do { blocking_admit(); UNGATED(rc = (call)); blocking_done(); } while (0)

#define PARENT(c, fn) \
    enter(); \
    int p = idx(c), rc = MPI_SUCCESS; \
    if (p < 0) { rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, fn); leave(); return rc; } \
    MPI_Comm real = C[p].r, made_ = MPI_COMM_NULL;
#define DONE(fn, dup) \
    if (!rc) rc = made(p, made_, fn, newcomm, dup); \
    if (rc) rc = raise_error(OBJ_COMM, p, rc, fn); \
    leave(); \
    return rc;

EXPORT int MPI_Comm_dup(MPI_Comm c, MPI_Comm *newcomm)
{
    PARENT(c, "MPI_Comm_dup");
    COUNTED(p, PMPI_Comm_dup(real, &made_));
    DONE("MPI_Comm_dup", 1);
}
EXPORT int MPI_Comm_dup_with_info(MPI_Comm c, MPI_Info info, MPI_Comm *newcomm)
{
    PARENT(c, "MPI_Comm_dup_with_info");
    MPI_Info ri = MPI_INFO_NULL;
    if (!(rc = info_in(info, &ri))) COUNTED(p, PMPI_Comm_dup_with_info(real, ri, &made_));
    info_done(&ri);
    DONE("MPI_Comm_dup_with_info", 1);
}
EXPORT int MPI_Comm_split(MPI_Comm c, int color, int key, MPI_Comm *newcomm)
{
    PARENT(c, "MPI_Comm_split");
    COUNTED(p, PMPI_Comm_split(real, color, key, &made_));
    DONE("MPI_Comm_split", 0);
}
EXPORT int MPI_Comm_split_type(MPI_Comm c, int type, int key, MPI_Info info, MPI_Comm *newcomm)
{
    PARENT(c, "MPI_Comm_split_type");
    MPI_Info ri = MPI_INFO_NULL;
    if (!(rc = info_in(info, &ri))) COUNTED(p, PMPI_Comm_split_type(real, type, key, ri, &made_));
    info_done(&ri);
    DONE("MPI_Comm_split_type", 0);
}
EXPORT int MPI_Comm_create(MPI_Comm c, MPI_Group group, MPI_Comm *newcomm)
{
    PARENT(c, "MPI_Comm_create");
    MPI_Group rg = MPI_GROUP_NULL;
    if (!(rc = group_in(group, &rg))) COUNTED(p, PMPI_Comm_create(real, rg, &made_));
    group_done(&rg);
    DONE("MPI_Comm_create", 0);
}
EXPORT int MPI_Comm_create_group(MPI_Comm c, MPI_Group group, int tag, MPI_Comm *newcomm)
{
    PARENT(c, "MPI_Comm_create_group");
    MPI_Group rg = MPI_GROUP_NULL;
    if (!(rc = group_in(group, &rg))) BLOCKING(PMPI_Comm_create_group(real, rg, tag, &made_));
    group_done(&rg);
    DONE("MPI_Comm_create_group", 0);
}
/* a Cartesian communicator of zero dimensions (MPI_Cart_create with ndims 0, MPI_Cart_sub keeping
 * no dimension): MPICH makes it from its MPI_COMM_SELF, which a session does not have (it
 * crashes); the layer makes rank 0 a communicator of its own and answers for its topology
 * (topo.c) */
static int cart_zero(int p, MPI_Comm real, MPI_Comm *newcomm, const char *fn)
{
    int rc = MPI_SUCCESS;
    MPI_Comm made_ = MPI_COMM_NULL;
    COUNTED(p, PMPI_Comm_split(real, C[p].rank == 0 ? 0 : MPI_UNDEFINED, 0, &made_));
    if (!rc) rc = made(p, made_, fn, newcomm, 0);
    int i = idx(*newcomm);
    if (!rc && i >= 0) { C[i].kind = K_CART; C[i].ndims = 0; C[i].zerod = 1; }
    return rc;
}
EXPORT int MPI_Cart_create(MPI_Comm c, int ndims, const int dims[], const int periods[], int reorder, MPI_Comm *newcomm)
{
    PARENT(c, "MPI_Cart_create");
    if (ndims == 0 && !C[p].inter) rc = cart_zero(p, real, newcomm, "MPI_Cart_create");
    else {
        COUNTED(p, PMPI_Cart_create(real, ndims, dims, periods, reorder, &made_));
        if (!rc) rc = made(p, made_, "MPI_Cart_create", newcomm, 0);
    }
    if (rc) rc = raise_error(OBJ_COMM, p, rc, "MPI_Cart_create");
    leave();
    return rc;
}
EXPORT int MPI_Cart_sub(MPI_Comm c, const int remain_dims[], MPI_Comm *newcomm)
{
    PARENT(c, "MPI_Cart_sub");
    int keep = 0;
    for (int d = 0; C[p].kind == K_CART && d < C[p].ndims; d++) keep |= remain_dims[d];
    if (C[p].kind == K_CART && !keep) rc = cart_zero(p, real, newcomm, "MPI_Cart_sub");
    else {
        COUNTED(p, PMPI_Cart_sub(real, remain_dims, &made_));
        if (!rc) rc = made(p, made_, "MPI_Cart_sub", newcomm, 0);
    }
    if (rc) rc = raise_error(OBJ_COMM, p, rc, "MPI_Cart_sub");
    leave();
    return rc;
}
EXPORT int MPI_Graph_create(MPI_Comm c, int nnodes, const int index[], const int edges[], int reorder, MPI_Comm *newcomm)
{
    PARENT(c, "MPI_Graph_create");
    COUNTED(p, PMPI_Graph_create(real, nnodes, index, edges, reorder, &made_));
    DONE("MPI_Graph_create", 0);
}
EXPORT int MPI_Dist_graph_create(MPI_Comm c, int n, const int sources[], const int degrees[], const int destinations[],
                                 const int weights[], MPI_Info info, int reorder, MPI_Comm *newcomm)
{
    PARENT(c, "MPI_Dist_graph_create");
    MPI_Info ri = MPI_INFO_NULL;
    if (!(rc = info_in(info, &ri)))
        COUNTED(p, PMPI_Dist_graph_create(real, n, sources, degrees, destinations, weights, ri, reorder, &made_));
    info_done(&ri);
    DONE("MPI_Dist_graph_create", 0);
}
EXPORT int MPI_Dist_graph_create_adjacent(MPI_Comm c, int indegree, const int sources[], const int sourceweights[],
                                          int outdegree, const int destinations[], const int destweights[],
                                          MPI_Info info, int reorder, MPI_Comm *newcomm)
{
    PARENT(c, "MPI_Dist_graph_create_adjacent");
    MPI_Info ri = MPI_INFO_NULL;
    if (!(rc = info_in(info, &ri)))
        COUNTED(p, PMPI_Dist_graph_create_adjacent(real, indegree, sources, sourceweights, outdegree, destinations,
                                                   destweights, ri, reorder, &made_));
    info_done(&ri);
    DONE("MPI_Dist_graph_create_adjacent", 0);
}
EXPORT int MPI_Intercomm_merge(MPI_Comm c, int high, MPI_Comm *newcomm)
{
    PARENT(c, "MPI_Intercomm_merge");
    COUNTED(p, PMPI_Intercomm_merge(real, high, &made_));
    DONE("MPI_Intercomm_merge", 0);
}
EXPORT int MPI_Intercomm_create(MPI_Comm c, int local_leader, MPI_Comm peer, int remote_leader, int tag,
                                MPI_Comm *newcomm)
{
    PARENT(c, "MPI_Intercomm_create");
    MPI_Comm rpeer = MPI_COMM_NULL;
    if (!(rc = comm_in(peer, &rpeer)))
        COUNTED(p, PMPI_Intercomm_create(real, local_leader, rpeer, remote_leader, tag, &made_));
    DONE("MPI_Intercomm_create", 0);
}

/* ---- from groups: no parent ---- */
static int from_groups(MPI_Comm r, MPI_Errhandler eh, const char *fn, MPI_Comm *newcomm)
{
    int rc = MPI_SUCCESS;
    if (r == MPI_COMM_NULL) { *newcomm = MPI_COMM_NULL; return rc; }
    int i = comm_new(r, -1, K_COMM, fn, &rc);
    if (i < 0) { PMPI_Comm_free(&r); return rc; }
    C[i].eh = eh == MPI_ERRHANDLER_NULL ? MPI_ERRHANDLER_NULL : eh;
    errh_ref(C[i].eh, 1);
    *newcomm = C[i].v;
    return rc;
}
EXPORT int MPI_Comm_create_from_group(MPI_Group group, const char *stringtag, MPI_Info info, MPI_Errhandler eh,
                                      MPI_Comm *newcomm)
{
    enter();
    MPI_Group rg = MPI_GROUP_NULL;
    MPI_Info ri = MPI_INFO_NULL;
    MPI_Comm r = MPI_COMM_NULL;
    int rc = eh == MPI_ERRHANDLER_NULL ? MPI_SUCCESS : errh_valid(eh, OBJ_COMM);
    if (!rc && !(rc = group_in(group, &rg)) && !(rc = info_in(info, &ri)))
        BLOCKING(PMPI_Comm_create_from_group(rg, stringtag, ri, MPI_ERRORS_RETURN, &r));
    group_done(&rg);
    info_done(&ri);
    if (!rc) rc = from_groups(r, eh, "MPI_Comm_create_from_group", newcomm);
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Comm_create_from_group");
    leave();
    return rc;
}
EXPORT int MPI_Intercomm_create_from_groups(MPI_Group lg, int local_leader, MPI_Group rg, int remote_leader,
                                            const char *stringtag, MPI_Info info, MPI_Errhandler eh,
                                            MPI_Comm *newcomm)
{
    enter();
    MPI_Group rl = MPI_GROUP_NULL, rr = MPI_GROUP_NULL;
    MPI_Info ri = MPI_INFO_NULL;
    MPI_Comm r = MPI_COMM_NULL;
    int rc = eh == MPI_ERRHANDLER_NULL ? MPI_SUCCESS : errh_valid(eh, OBJ_COMM);
    if (!rc && !(rc = group_in(lg, &rl)) && !(rc = group_in(rg, &rr)) && !(rc = info_in(info, &ri)))
        BLOCKING(PMPI_Intercomm_create_from_groups(rl, local_leader, rr, remote_leader, stringtag, ri,
                                                   MPI_ERRORS_RETURN, &r));
    group_done(&rl);
    group_done(&rr);
    info_done(&ri);
    if (!rc) rc = from_groups(r, eh, "MPI_Intercomm_create_from_groups", newcomm);
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Intercomm_create_from_groups");
    leave();
    return rc;
}

/* ---- nonblocking duplicates: the entry is made now, described when the request completes ---- */
static int idup(MPI_Comm c, MPI_Info info, MPI_Comm *newcomm, MPI_Request *req, const char *fn)
{
    PARENT(c, fn);
    MPI_Info ri = MPI_INFO_NULL;
    MPI_Request r = MPI_REQUEST_NULL;
    if ((rc = info_in(info, &ri))) goto out;
    coll_admit(p);
    rc = info == MPI_INFO_NULL ? PMPI_Comm_idup(real, &made_, &r) : PMPI_Comm_idup_with_info(real, ri, &made_, &r);
    if (rc) { C[p].completed++; goto out; }
    int i = comm_pending(made_, p, fn);
    *newcomm = C[i].v;
    *req = request_made(RQ_COLL, p, r, NULL, fn);
    T[treq_find(*req)].newcomm = i;
out:
    info_done(&ri);
    if (rc) rc = raise_error(OBJ_COMM, p, rc, fn);
    leave();
    return rc;
}
EXPORT int MPI_Comm_idup(MPI_Comm c, MPI_Comm *newcomm, MPI_Request *req) { return idup(c, MPI_INFO_NULL, newcomm, req, "MPI_Comm_idup"); }
EXPORT int MPI_Comm_idup_with_info(MPI_Comm c, MPI_Info info, MPI_Comm *newcomm, MPI_Request *req)
{
    return idup(c, info, newcomm, req, "MPI_Comm_idup_with_info");
}

/* ---- freeing (collective: counted on the communicator itself) ---- */
static int comm_release(MPI_Comm *c, int disconnect, const char *fn)
{
    enter();
    int i = idx(*c), rc = MPI_SUCCESS;
    if (i < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, fn);
    else if (i < 2) rc = raise_error(OBJ_COMM, i, MPI_ERR_COMM, fn);
    else {
        coll_admit(i);
        rc = attrs_delete_all(A_COMM, C[i].v);
        if (!rc && !C[i].holds) {
            /* MPI_Comm_disconnect waits for the communication on it, the requests the
             * application freed too */
            if (disconnect) while (reap_freed(i)) loop_pause();
            if (disconnect) UNGATED(rc = PMPI_Comm_disconnect(&C[i].r));
            else rc = PMPI_Comm_free(&C[i].r);
        }
        C[i].completed++;
        if (rc) rc = raise_error(OBJ_COMM, i, rc, fn);
        else { comm_dropped(i); *c = MPI_COMM_NULL; }
    }
    leave();
    return rc;
}
EXPORT int MPI_Comm_free(MPI_Comm *c) { return comm_release(c, 0, "MPI_Comm_free"); }
EXPORT int MPI_Comm_disconnect(MPI_Comm *c) { return comm_release(c, 1, "MPI_Comm_disconnect"); }

/* ---- names, hints, comparison ---- */
EXPORT int MPI_Comm_set_name(MPI_Comm c, const char *name)
{
    enter();
    int i = idx(c), rc = MPI_SUCCESS;
    if (i < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, "MPI_Comm_set_name");
    else if (!name) rc = raise_error(OBJ_COMM, i, MPI_ERR_ARG, "MPI_Comm_set_name");
    else {
        char *n = strndup(name, MPI_MAX_OBJECT_NAME - 1);
        if (!n) rc = raise_error(OBJ_COMM, i, MPI_ERR_NO_MEM, "MPI_Comm_set_name");
        else { free(C[i].name); C[i].name = n; }
    }
    leave();
    return rc;
}
EXPORT int MPI_Comm_get_name(MPI_Comm c, char *name, int *len)
{
    if (c == MPI_COMM_NULL && name && len) { /* MPICH names the null communicator too */
        *len = snprintf(name, MPI_MAX_OBJECT_NAME, "MPI_COMM_NULL");
        return MPI_SUCCESS;
    }
    enter();
    int i = idx(c), rc = MPI_SUCCESS;
    if (i < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, "MPI_Comm_get_name");
    else {
        const char *n = C[i].name ? C[i].name : i == 0 ? "MPI_COMM_WORLD" : i == 1 ? "MPI_COMM_SELF" : "";
        snprintf(name, MPI_MAX_OBJECT_NAME, "%s", n);
        *len = (int)strlen(name);
    }
    leave();
    return rc;
}
EXPORT int MPI_Comm_set_info(MPI_Comm c, MPI_Info info)
{
    enter();
    int i = idx(c), rc;
    MPI_Info ri = MPI_INFO_NULL;
    if (i < 0) rc = MPI_ERR_COMM;
    else if (!(rc = info_in(info, &ri)) && !(rc = PMPI_Comm_set_info(C[i].r, ri)))
        C[i].info = info_slot_merge(C[i].info, info);
    info_done(&ri);
    if (rc) rc = raise_error(OBJ_COMM, i, rc, "MPI_Comm_set_info");
    leave();
    return rc;
}
EXPORT int MPI_Comm_compare(MPI_Comm a, MPI_Comm b, int *result)
{
    enter();
    int i = idx(a), j = idx(b), rc = MPI_SUCCESS;
    if (i < 0 || j < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, "MPI_Comm_compare");
    else if (i == j) *result = MPI_IDENT;
    else if ((rc = PMPI_Comm_compare(C[i].r, C[j].r, result))) rc = raise_error(OBJ_COMM, i, rc, "MPI_Comm_compare");
    leave();
    return rc;
}
