/* win.c: one-sided windows (handles.h). A window keeps what makes it again after a rebuild: its
 * memory (the application's, or for MPI_Win_allocate the layer's own, mapped by the layer so that
 * the image keeps it at the same address), size, displacement unit, hints, group (its collective
 * context in comm.c, whose counts the cut agrees on: fences and the free are collectives on it),
 * the regions attached to a dynamic window, and the epochs this rank has open. At teardown every
 * epoch is closed (unlocked, completed, waited for, then one fence on every window completes what
 * was put) and the window freed; after a rebuild it is created again over the same memory and
 * the epochs are opened again. A shared-memory window (MPI_Win_allocate_shared) is MPI's
 * node-wide segment: each rank's image would hold its own copy of it, and the ranks could not
 * share it again; a checkpoint is refused while one is live. */
#include "layer.h"
#include <sys/mman.h>

struct vwin *W;
int nwin;
static int capwin;

static int win_slot(void)
{
    int i = 0;
    while (i < nwin && W[i].used) i++;
    if (i == nwin) {
        if (nwin == capwin) {
            capwin = capwin ? 2 * capwin : 16;
            W = realloc(W, capwin * sizeof *W);
            if (!W) { fprintf(stderr, "crcp: out of memory\n"); abort(); }
        }
        nwin++;
    }
    memset(&W[i], 0, sizeof *W);
    W[i].used = 1;
    W[i].v = LAYER_HANDLE(MPI_WIN_NULL, i);
    W[i].eh = MPI_ERRHANDLER_NULL;
    W[i].info = -1;
    W[i].post_group = W[i].start_group = MPI_GROUP_NULL;
    return i;
}
static void win_forget(int i)
{
    free(W[i].locks);
    free(W[i].name);
    free(W[i].attached);
    info_slot_drop(W[i].info);
    errh_ref(W[i].eh, -1);
    if (W[i].post_group != MPI_GROUP_NULL) MPI_Group_free(&W[i].post_group);
    if (W[i].start_group != MPI_GROUP_NULL) MPI_Group_free(&W[i].start_group);
    W[i].used = 0;
    while (nwin && !W[nwin - 1].used) nwin--;
}

/* the entry of window r just made over communicator p */
static int win_made(int p, MPI_Win r, int flavor, void *base, MPI_Aint size, int disp_unit, MPI_Info info,
                    const char *fn, MPI_Win *out)
{
    int rc = MPI_SUCCESS;
    int ctx = ctx_new(C[p].r, K_WINCTX, &rc);
    if (ctx < 0) { PMPI_Win_free(&r); return rc; }
    int i = win_slot();
    W[i].r = r; W[i].ctx = ctx; W[i].flavor = flavor;
    W[i].base = base; W[i].size = size; W[i].disp_unit = disp_unit;
    W[i].info = info_slot_keep(info);
    W[i].made_by = fn;
    W[i].locks = calloc(C[ctx].size + 1, sizeof(int));
    if (!W[i].locks) return MPI_ERR_NO_MEM;
    *out = W[i].v;
    return PMPI_Win_set_errhandler(r, MPI_ERRORS_RETURN);
}

#define WIN_PARENT(c, fn) \
    enter(); \
    int p = idx(c), rc = MPI_SUCCESS; \
    if (p < 0) { rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, fn); leave(); return rc; } \
    MPI_Comm real = C[p].r; \
    MPI_Win r = MPI_WIN_NULL; \
    MPI_Info ri = MPI_INFO_NULL; \
    if ((rc = info_in(info, &ri))) goto out;

static int create(void *base, MPI_Aint size, int disp_unit, MPI_Info info, MPI_Comm comm, MPI_Win *win,
                  int flavor, const char *fn)
{
    WIN_PARENT(comm, fn);
    coll_admit(p);
    if (flavor == WF_DYNAMIC) UNGATED(rc = PMPI_Win_create_dynamic(ri, real, &r));
    else UNGATED(rc = PMPI_Win_create(base, size, disp_unit, ri, real, &r));
    C[p].completed++;
    if (!rc) rc = win_made(p, r, flavor, base, size, disp_unit, info, fn, win);
out:
    info_done(&ri);
    if (rc) rc = raise_error(OBJ_COMM, p, rc, fn);
    leave();
    return rc;
}
EXPORT int MPI_Win_create(void *base, MPI_Aint size, int disp_unit, MPI_Info info, MPI_Comm comm, MPI_Win *win)
{
    return create(base, size, disp_unit, info, comm, win, WF_CREATE, "MPI_Win_create");
}
EXPORT int MPI_Win_create_c(void *base, MPI_Aint size, MPI_Aint disp_unit, MPI_Info info, MPI_Comm comm, MPI_Win *win)
{
    if (disp_unit > 0x7fffffff) return MPI_Win_create(base, size, -1, info, comm, win); /* MPI's error */
    return create(base, size, (int)disp_unit, info, comm, win, WF_CREATE, "MPI_Win_create");
}
EXPORT int MPI_Win_create_dynamic(MPI_Info info, MPI_Comm comm, MPI_Win *win)
{
    return create(NULL, 0, 1, info, comm, win, WF_DYNAMIC, "MPI_Win_create_dynamic");
}

/* MPI_Win_allocate: memory of the layer's (mapped here, so the image keeps it where the
 * application was given it), a window created over it */
static int allocate(MPI_Aint size, int disp_unit, MPI_Info info, MPI_Comm comm, void *baseptr, MPI_Win *win)
{
    WIN_PARENT(comm, "MPI_Win_allocate");
    void *base = NULL;
    if (size < 0) rc = MPI_ERR_SIZE;
    else if (size > 0) {
        base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) { base = NULL; rc = MPI_ERR_NO_MEM; }
    }
    coll_admit(p);
    if (!rc) UNGATED(rc = PMPI_Win_create(base, size, disp_unit, ri, real, &r));
    C[p].completed++;
    if (!rc) rc = win_made(p, r, WF_ALLOCATE, base, size, disp_unit, info, "MPI_Win_allocate", win);
    if (!rc) *(void **)baseptr = base;
    else if (base) munmap(base, (size_t)size);
out:
    info_done(&ri);
    if (rc) rc = raise_error(OBJ_COMM, p, rc, "MPI_Win_allocate");
    leave();
    return rc;
}
EXPORT int MPI_Win_allocate(MPI_Aint size, int disp_unit, MPI_Info info, MPI_Comm comm, void *baseptr, MPI_Win *win)
{
    return allocate(size, disp_unit, info, comm, baseptr, win);
}
EXPORT int MPI_Win_allocate_c(MPI_Aint size, MPI_Aint disp_unit, MPI_Info info, MPI_Comm comm, void *baseptr, MPI_Win *win)
{
    return allocate(size, disp_unit > 0x7fffffff ? -1 : (int)disp_unit, info, comm, baseptr, win);
}
/* MPI_Win_allocate_shared: MPI's segment, shared by the node's ranks (refused at checkpoint) */
static int allocate_shared(MPI_Aint size, MPI_Aint disp_unit, MPI_Info info, MPI_Comm comm, void *baseptr,
                           MPI_Win *win, int large)
{
    WIN_PARENT(comm, "MPI_Win_allocate_shared");
    coll_admit(p);
    if (large) UNGATED(rc = PMPI_Win_allocate_shared_c(size, disp_unit, ri, real, baseptr, &r));
    else UNGATED(rc = PMPI_Win_allocate_shared(size, (int)disp_unit, ri, real, baseptr, &r));
    C[p].completed++;
    if (!rc) rc = win_made(p, r, WF_SHARED, *(void **)baseptr, size, (int)disp_unit, info,
                           "MPI_Win_allocate_shared", win);
out:
    info_done(&ri);
    if (rc) rc = raise_error(OBJ_COMM, p, rc, "MPI_Win_allocate_shared");
    leave();
    return rc;
}
EXPORT int MPI_Win_allocate_shared(MPI_Aint size, int disp_unit, MPI_Info info, MPI_Comm comm, void *baseptr, MPI_Win *win)
{
    return allocate_shared(size, disp_unit, info, comm, baseptr, win, 0);
}
EXPORT int MPI_Win_allocate_shared_c(MPI_Aint size, MPI_Aint disp_unit, MPI_Info info, MPI_Comm comm, void *baseptr, MPI_Win *win)
{
    return allocate_shared(size, disp_unit, info, comm, baseptr, win, 1);
}

EXPORT int MPI_Win_free(MPI_Win *win)
{
    enter();
    int i = win_idx(*win), rc = MPI_SUCCESS;
    if (i < 0) { rc = raise_error(OBJ_NONE, -1, MPI_ERR_WIN, "MPI_Win_free"); leave(); return rc; }
    int ctx = W[i].ctx;
    coll_admit(ctx);
    MPI_Win r = W[i].r;
    if ((rc = attrs_delete_all(A_WIN, *win))) {
        C[ctx].completed++;
        rc = raise_error(OBJ_WIN, i, rc, "MPI_Win_free");
        leave();
        return rc;
    }
    UNGATED(rc = PMPI_Win_free(&r));
    C[ctx].completed++;
    i = win_idx(*win);
    if (rc) rc = raise_error(OBJ_WIN, i, rc, "MPI_Win_free");
    else {
        if (W[i].flavor == WF_ALLOCATE && W[i].base) munmap(W[i].base, (size_t)W[i].size);
        ctx_free(ctx);
        win_forget(i);
        *win = MPI_WIN_NULL;
    }
    leave();
    return rc;
}

/* ---- dynamic windows: attached regions, attached again after a rebuild ---- */
EXPORT int MPI_Win_attach(MPI_Win win, void *base, MPI_Aint size)
{
    enter();
    int i = win_idx(win), rc;
    if (i < 0) rc = MPI_ERR_WIN;
    else if (!(rc = PMPI_Win_attach(W[i].r, base, size))) {
        void *n = realloc(W[i].attached, (W[i].nattached + 1) * sizeof *W[i].attached);
        if (!n) rc = MPI_ERR_NO_MEM;
        else { W[i].attached = n; W[i].attached[W[i].nattached].base = base; W[i].attached[W[i].nattached++].size = size; }
    }
    if (rc) rc = raise_error(OBJ_WIN, i, rc, "MPI_Win_attach");
    leave();
    return rc;
}
EXPORT int MPI_Win_detach(MPI_Win win, const void *base)
{
    enter();
    int i = win_idx(win), rc;
    if (i < 0) rc = MPI_ERR_WIN;
    else if (!(rc = PMPI_Win_detach(W[i].r, base)))
        for (int k = 0; k < W[i].nattached; k++)
            if (W[i].attached[k].base == base) { W[i].attached[k] = W[i].attached[--W[i].nattached]; break; }
    if (rc) rc = raise_error(OBJ_WIN, i, rc, "MPI_Win_detach");
    leave();
    return rc;
}

/* ---- synchronization: the epochs this rank has open ---- */
#define WIN_CALL(win, fn) \
    enter(); \
    int i = win_idx(win), rc = MPI_SUCCESS; \
    if (i < 0) { rc = raise_error(OBJ_NONE, -1, MPI_ERR_WIN, fn); leave(); return rc; } \
    MPI_Win r = W[i].r;
#define WIN_END(fn) \
    if (rc) rc = raise_error(OBJ_WIN, win_idx(win), rc, fn); \
    leave(); \
    return rc;

EXPORT int MPI_Win_fence(int assert_, MPI_Win win)
{
    WIN_CALL(win, "MPI_Win_fence");
    int ctx = W[i].ctx;
    coll_admit(ctx);
    UNGATED(rc = PMPI_Win_fence(assert_, r));
    C[ctx].completed++;
    if (!rc && (i = win_idx(win)) >= 0) W[i].fence = !(assert_ & MPI_MODE_NOSUCCEED);
    WIN_END("MPI_Win_fence");
}
EXPORT int MPI_Win_lock(int type, int rank, int assert_, MPI_Win win)
{
    WIN_CALL(win, "MPI_Win_lock");
    blocking_admit();
    UNGATED(rc = PMPI_Win_lock(type, rank, assert_, r));
    blocking_done();
    if (!rc && (i = win_idx(win)) >= 0 && rank >= 0 && rank < C[W[i].ctx].size) W[i].locks[rank] = type + 1;
    WIN_END("MPI_Win_lock");
}
EXPORT int MPI_Win_unlock(int rank, MPI_Win win)
{
    WIN_CALL(win, "MPI_Win_unlock");
    blocking_admit();
    UNGATED(rc = PMPI_Win_unlock(rank, r));
    blocking_done();
    if (!rc && (i = win_idx(win)) >= 0 && rank >= 0 && rank < C[W[i].ctx].size) W[i].locks[rank] = 0;
    WIN_END("MPI_Win_unlock");
}
EXPORT int MPI_Win_lock_all(int assert_, MPI_Win win)
{
    WIN_CALL(win, "MPI_Win_lock_all");
    blocking_admit();
    UNGATED(rc = PMPI_Win_lock_all(assert_, r));
    blocking_done();
    if (!rc && (i = win_idx(win)) >= 0) W[i].lock_all = 1;
    WIN_END("MPI_Win_lock_all");
}
EXPORT int MPI_Win_unlock_all(MPI_Win win)
{
    WIN_CALL(win, "MPI_Win_unlock_all");
    blocking_admit();
    UNGATED(rc = PMPI_Win_unlock_all(r));
    blocking_done();
    if (!rc && (i = win_idx(win)) >= 0) W[i].lock_all = 0;
    WIN_END("MPI_Win_unlock_all");
}
static int keep_group(MPI_Group g, MPI_Group *where)
{
    if (*where != MPI_GROUP_NULL) MPI_Group_free(where);
    group_ref(g);
    *where = g;
    return MPI_SUCCESS;
}
EXPORT int MPI_Win_post(MPI_Group group, int assert_, MPI_Win win)
{
    WIN_CALL(win, "MPI_Win_post");
    MPI_Group rg = MPI_GROUP_NULL;
    if (!(rc = group_in(group, &rg))) {
        blocking_admit();
        UNGATED(rc = PMPI_Win_post(rg, assert_, r));
        blocking_done();
    }
    group_done(&rg);
    if (!rc && (i = win_idx(win)) >= 0) rc = keep_group(group, &W[i].post_group);
    WIN_END("MPI_Win_post");
}
EXPORT int MPI_Win_start(MPI_Group group, int assert_, MPI_Win win)
{
    WIN_CALL(win, "MPI_Win_start");
    MPI_Group rg = MPI_GROUP_NULL;
    if (!(rc = group_in(group, &rg))) {
        blocking_admit();
        UNGATED(rc = PMPI_Win_start(rg, assert_, r));
        blocking_done();
    }
    group_done(&rg);
    if (!rc && (i = win_idx(win)) >= 0) rc = keep_group(group, &W[i].start_group);
    WIN_END("MPI_Win_start");
}
EXPORT int MPI_Win_complete(MPI_Win win)
{
    WIN_CALL(win, "MPI_Win_complete");
    blocking_admit();
    UNGATED(rc = PMPI_Win_complete(r));
    blocking_done();
    if (!rc && (i = win_idx(win)) >= 0 && W[i].start_group != MPI_GROUP_NULL) MPI_Group_free(&W[i].start_group);
    WIN_END("MPI_Win_complete");
}
EXPORT int MPI_Win_wait(MPI_Win win)
{
    WIN_CALL(win, "MPI_Win_wait");
    blocking_admit();
    UNGATED(rc = PMPI_Win_wait(r));
    blocking_done();
    if (!rc && (i = win_idx(win)) >= 0 && W[i].post_group != MPI_GROUP_NULL) MPI_Group_free(&W[i].post_group);
    WIN_END("MPI_Win_wait");
}
EXPORT int MPI_Win_test(MPI_Win win, int *flag)
{
    WIN_CALL(win, "MPI_Win_test");
    rc = PMPI_Win_test(r, flag);
    if (!rc && *flag && W[i].post_group != MPI_GROUP_NULL) MPI_Group_free(&W[i].post_group);
    WIN_END("MPI_Win_test");
}

/* ---- names, hints ---- */
EXPORT int MPI_Win_set_name(MPI_Win win, const char *name)
{
    WIN_CALL(win, "MPI_Win_set_name");
    (void)r;
    if (!name) rc = MPI_ERR_ARG;
    else {
        char *n = strndup(name, MPI_MAX_OBJECT_NAME - 1);
        if (!n) rc = MPI_ERR_NO_MEM;
        else { free(W[i].name); W[i].name = n; }
    }
    WIN_END("MPI_Win_set_name");
}
EXPORT int MPI_Win_get_name(MPI_Win win, char *name, int *len)
{
    if (win == MPI_WIN_NULL && name && len) { /* MPICH names the null window too */
        *len = snprintf(name, MPI_MAX_OBJECT_NAME, "MPI_WIN_NULL");
        return MPI_SUCCESS;
    }
    WIN_CALL(win, "MPI_Win_get_name");
    if (W[i].name) { snprintf(name, MPI_MAX_OBJECT_NAME, "%s", W[i].name); *len = (int)strlen(name); }
    else rc = PMPI_Win_get_name(r, name, len);
    WIN_END("MPI_Win_get_name");
}
EXPORT int MPI_Win_set_info(MPI_Win win, MPI_Info info)
{
    WIN_CALL(win, "MPI_Win_set_info");
    MPI_Info ri = MPI_INFO_NULL;
    if (!(rc = info_in(info, &ri)) && !(rc = PMPI_Win_set_info(r, ri))) W[i].info = info_slot_merge(W[i].info, info);
    info_done(&ri);
    WIN_END("MPI_Win_set_info");
}

/* ---- teardown and rebuild ---- */
/* every epoch closed, collectively over each window's group, in creation order */
void win_close_epochs(void)
{
    for (int i = 0; i < nwin; i++) {
        if (!W[i].used || W[i].r == MPI_WIN_NULL) continue;
        if (W[i].lock_all) PMPI_Win_unlock_all(W[i].r);
        for (int t = 0; t < C[W[i].ctx].size; t++)
            if (W[i].locks[t]) PMPI_Win_unlock(t, W[i].r);
        if (W[i].start_group != MPI_GROUP_NULL) PMPI_Win_complete(W[i].r);
    }
    for (int i = 0; i < nwin; i++)
        if (W[i].used && W[i].r != MPI_WIN_NULL && W[i].post_group != MPI_GROUP_NULL) PMPI_Win_wait(W[i].r);
    for (int i = 0; i < nwin; i++)
        if (W[i].used && W[i].r != MPI_WIN_NULL) PMPI_Win_fence(MPI_MODE_NOSUCCEED, W[i].r);
}
void win_teardown(void)
{
    for (int i = 0; i < nwin; i++)
        if (W[i].used && W[i].r != MPI_WIN_NULL) {
            int rc = PMPI_Win_free(&W[i].r);
            if (rc && verbose) fprintf(stderr, "crcp: freeing a window at teardown: error %d\n", rc);
            W[i].r = MPI_WIN_NULL;
        }
}
/* window i made again (its context's turn in creation order, from file_replay's merge) */
int win_remake(int i)
{
    int rc, ctx = W[i].ctx;
    MPI_Comm comm = MPI_COMM_NULL;
    MPI_Info hints = MPI_INFO_NULL;
    if ((rc = comm_from_ranks(C[ctx].wr, C[ctx].size, C[ctx].id, "window", &comm))) return rc;
    if (W[i].info >= 0 && (rc = info_real_of_slot(W[i].info, &hints))) goto out;
    if (W[i].flavor == WF_DYNAMIC) {
        if (!(rc = PMPI_Win_create_dynamic(hints, comm, &W[i].r)))
            for (int k = 0; k < W[i].nattached && !rc; k++)
                rc = PMPI_Win_attach(W[i].r, W[i].attached[k].base, W[i].attached[k].size);
    } else rc = PMPI_Win_create(W[i].base, W[i].size, W[i].disp_unit, hints, comm, &W[i].r);
    if (!rc) rc = PMPI_Win_set_errhandler(W[i].r, MPI_ERRORS_RETURN);
    /* the epochs this rank had open: fences first (collective), then the others */
    if (!rc && W[i].fence) rc = PMPI_Win_fence(0, W[i].r);
    if (!rc && W[i].post_group != MPI_GROUP_NULL) {
        MPI_Group g;
        if (!(rc = group_in(W[i].post_group, &g))) { rc = PMPI_Win_post(g, 0, W[i].r); group_done(&g); }
    }
    if (!rc && W[i].start_group != MPI_GROUP_NULL) {
        MPI_Group g;
        if (!(rc = group_in(W[i].start_group, &g))) { rc = PMPI_Win_start(g, 0, W[i].r); group_done(&g); }
    }
    if (!rc && W[i].lock_all) rc = PMPI_Win_lock_all(0, W[i].r);
    for (int t = 0; t < C[ctx].size && !rc; t++)
        if (W[i].locks[t]) rc = PMPI_Win_lock(W[i].locks[t] - 1, t, 0, W[i].r);
out:
    if (hints != MPI_INFO_NULL) PMPI_Info_free(&hints);
    if (comm != MPI_COMM_NULL) PMPI_Comm_free(&comm);
    return rc;
}
const char *win_refusal(void)
{
    for (int i = 0; i < nwin; i++)
        if (W[i].used && W[i].flavor == WF_SHARED)
            return "a shared-memory window (MPI_Win_allocate_shared) is live: its memory is MPI's segment shared "
                   "by the node's ranks, which their images cannot share again";
    return NULL;
}
