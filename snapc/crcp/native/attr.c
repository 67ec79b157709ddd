/* attr.c: keyvals and attributes of communicators, datatypes and windows, kept in the layer,
 * never on the real objects. The application's keyvals and values are its own state and must
 * survive a teardown; the real objects freed at teardown must not run its delete callbacks
 * (mpi4py frees its cached duplicates from one). Attributes are kept by the application's
 * handle of their object, and are copied (MPI_Comm_dup, MPI_Type_dup) and deleted (at free) by
 * the application's callbacks, which get the application's handles. Predefined attributes
 * (MPI_TAG_UB, MPI_WIN_BASE, ...) are read from the real object, except a window's
 * MPI_WIN_CREATE_FLAVOR when the layer allocated its memory. */
#include "layer.h"

typedef int (copy_fn)(long obj, int keyval, void *extra, void *in, void *out, int *flag);
typedef int (delete_fn)(long obj, int keyval, void *val, void *extra);
struct keyval { int used, kind, freed; copy_fn *copy; delete_fn *del; void *extra; };
static struct keyval *KV;
static int nKV;
/* the application's keyvals: 0x3a000000 + kind << 20 + slot (MPICH's are 0x24...., 0x64...) */
#define KVBASE 0x3a000000
#define KVALUE(kind, s) (KVBASE + ((kind) << 20) + (s))
struct attr { int kind; long obj; int kv; void *val; };
static struct attr *AT;
static int nattr, capattr;

static int kvi(int kind, int k)
{
    int s = k - KVBASE - (kind << 20);
    return (s >= 0 && s < nKV && KV[s].used && KV[s].kind == kind) ? s : -1;
}
static int kv_ours(int k) { return k >= KVBASE && k < KVBASE + (3 << 20); }

static int create_keyval(int kind, copy_fn *cp, delete_fn *dl, int *k, void *extra)
{
    enter();
    int s = 0;
    while (s < nKV && KV[s].used) s++;
    if (s == nKV) {
        struct keyval *n = realloc(KV, (nKV + 1) * sizeof *KV);
        if (!n) { leave(); return raise_error(OBJ_NONE, -1, MPI_ERR_NO_MEM, "MPI_Comm_create_keyval"); }
        KV = n;
        nKV++;
    }
    KV[s] = (struct keyval){1, kind, 0, cp, dl, extra};
    *k = KVALUE(kind, s);
    leave();
    return MPI_SUCCESS;
}
static int free_keyval(int kind, int *k, const char *fn)
{
    enter();
    int s = kvi(kind, *k), rc = MPI_SUCCESS;
    if (s < 0 || KV[s].freed) rc = raise_error(OBJ_NONE, -1, MPI_ERR_KEYVAL, fn);
    else {
        /* attributes set with it stay until deleted; the keyval is gone when they are */
        KV[s].freed = 1;
        int used = 0;
        for (int a = 0; a < nattr; a++) used |= AT[a].kv == s;
        if (!used) KV[s].used = 0;
        *k = MPI_KEYVAL_INVALID;
    }
    leave();
    return rc;
}

static int attr_find(int kind, long obj, int s)
{
    for (int a = 0; a < nattr; a++)
        if (AT[a].kind == kind && AT[a].obj == obj && AT[a].kv == s) return a;
    return -1;
}
static void attr_add(int kind, long obj, int s, void *v)
{
    if (nattr == capattr) {
        capattr = capattr ? 2 * capattr : 64;
        AT = realloc(AT, capattr * sizeof *AT);
        if (!AT) { fprintf(stderr, "crcp: out of memory\n"); abort(); }
    }
    AT[nattr++] = (struct attr){kind, obj, s, v};
}
/* delete attribute a (its callback first; on error it stays) */
static int attr_del(int a)
{
    struct attr at = AT[a];
    int rc = MPI_SUCCESS;
    if (KV[at.kv].del) rc = KV[at.kv].del(at.obj, KVALUE(at.kind, at.kv), at.val, KV[at.kv].extra);
    if (rc) return rc;
    a = attr_find(at.kind, at.obj, at.kv); /* the callback may have changed the table */
    if (a >= 0) { memmove(&AT[a], &AT[a + 1], (nattr - a - 1) * sizeof *AT); nattr--; }
    if (KV[at.kv].freed) {
        int used = 0;
        for (int b = 0; b < nattr; b++) used |= AT[b].kv == at.kv;
        if (!used) KV[at.kv].used = 0;
    }
    return MPI_SUCCESS;
}

/* ---- the application's objects, by kind ---- */
static int object(int kind, long h, MPI_Comm *rc_, MPI_Datatype *rt, MPI_Win *rw)
{
    if (kind == A_COMM) { int i = idx((MPI_Comm)h); if (i < 0) return MPI_ERR_COMM; *rc_ = C[i].r; }
    else if (kind == A_TYPE) { if (type_in((MPI_Datatype)h, rt, 1)) return MPI_ERR_TYPE; }
    else { int i = win_idx((MPI_Win)h); if (i < 0) return MPI_ERR_WIN; *rw = W[i].r; }
    return MPI_SUCCESS;
}
static int raise_on(int kind, long h, int rc, const char *fn)
{
    if (kind == A_COMM) { int i = idx((MPI_Comm)h); return raise_error(i < 0 ? OBJ_NONE : OBJ_COMM, i, rc, fn); }
    if (kind == A_WIN) { int i = win_idx((MPI_Win)h); return raise_error(i < 0 ? OBJ_NONE : OBJ_WIN, i, rc, fn); }
    return raise_error(OBJ_NONE, -1, rc, fn);
}

static int set_attr(int kind, long h, int k, void *v, const char *fn)
{
    enter();
    MPI_Comm c = MPI_COMM_NULL; MPI_Datatype t = MPI_DATATYPE_NULL; MPI_Win w = MPI_WIN_NULL;
    int rc = object(kind, h, &c, &t, &w), s = kvi(kind, k);
    if (!rc) {
        if (s < 0) rc = kind == A_COMM ? PMPI_Comm_set_attr(c, k, v) : kind == A_TYPE ? PMPI_Type_set_attr(t, k, v)
                      : PMPI_Win_set_attr(w, k, v);
        else if (KV[s].freed) rc = MPI_ERR_KEYVAL;
        else {
            int a = attr_find(kind, h, s);
            if (a >= 0) rc = attr_del(a);
            if (!rc) attr_add(kind, h, s, v);
        }
    }
    if (rc) rc = raise_on(kind, h, rc, fn);
    leave();
    return rc;
}
static int flavor_allocate = MPI_WIN_FLAVOR_ALLOCATE;
static int get_attr(int kind, long h, int k, void *v, int *f, const char *fn)
{
    enter();
    MPI_Comm c = MPI_COMM_NULL; MPI_Datatype t = MPI_DATATYPE_NULL; MPI_Win w = MPI_WIN_NULL;
    int rc = object(kind, h, &c, &t, &w), s = kvi(kind, k);
    if (!rc) {
        if (s >= 0) {
            int a = attr_find(kind, h, s);
            *f = a >= 0;
            if (a >= 0) *(void **)v = AT[a].val;
        } else if (kv_ours(k)) rc = MPI_ERR_KEYVAL;
        else if (kind == A_WIN && k == MPI_WIN_CREATE_FLAVOR && W[win_idx((MPI_Win)h)].flavor == WF_ALLOCATE) {
            *(int **)v = &flavor_allocate;
            *f = 1;
        } else rc = kind == A_COMM ? PMPI_Comm_get_attr(c, k, v, f) : kind == A_TYPE ? PMPI_Type_get_attr(t, k, v, f)
                    : PMPI_Win_get_attr(w, k, v, f);
    }
    if (rc) rc = raise_on(kind, h, rc, fn);
    leave();
    return rc;
}
static int delete_attr(int kind, long h, int k, const char *fn)
{
    enter();
    MPI_Comm c = MPI_COMM_NULL; MPI_Datatype t = MPI_DATATYPE_NULL; MPI_Win w = MPI_WIN_NULL;
    int rc = object(kind, h, &c, &t, &w), s = kvi(kind, k);
    if (!rc) {
        if (s < 0) rc = kind == A_COMM ? PMPI_Comm_delete_attr(c, k) : kind == A_TYPE ? PMPI_Type_delete_attr(t, k)
                      : PMPI_Win_delete_attr(w, k);
        else {
            int a = attr_find(kind, h, s);
            rc = a < 0 ? MPI_ERR_KEYVAL : attr_del(a);
        }
    }
    if (rc) rc = raise_on(kind, h, rc, fn);
    leave();
    return rc;
}

/* copied by the keyvals' copy callbacks (MPI_Comm_dup, MPI_Type_dup); an error fails the copy */
int attrs_copy(int kind, long from, long to)
{
    for (int a = 0; a < nattr; a++) {
        if (AT[a].kind != kind || AT[a].obj != from) continue;
        int s = AT[a].kv, flag = 0;
        void *nv = NULL;
        if (!KV[s].copy) continue;
        int rc = KV[s].copy(from, KVALUE(kind, s), KV[s].extra, AT[a].val, &nv, &flag);
        if (rc) { attrs_delete_all(kind, to); return rc; }
        if (flag) attr_add(kind, to, s, nv);
    }
    return MPI_SUCCESS;
}
/* deleted (last set first) when their object is freed */
int attrs_delete_all(int kind, long obj)
{
    for (int a = nattr - 1; a >= 0; a--) {
        if (a >= nattr || AT[a].kind != kind || AT[a].obj != obj) continue;
        int rc = attr_del(a);
        if (rc) return rc;
    }
    return MPI_SUCCESS;
}
/* MPI_Finalize: MPI_COMM_SELF's first, then MPI_COMM_WORLD's */
void attrs_delete_everywhere(void)
{
    attrs_delete_all(A_COMM, MPI_COMM_SELF);
    attrs_delete_all(A_COMM, MPI_COMM_WORLD);
}

/* ---- the MPI functions ---- */
EXPORT int MPI_Comm_create_keyval(MPI_Comm_copy_attr_function *cp, MPI_Comm_delete_attr_function *dl, int *k, void *extra)
{ return create_keyval(A_COMM, (copy_fn *)cp, (delete_fn *)dl, k, extra); }
EXPORT int MPI_Type_create_keyval(MPI_Type_copy_attr_function *cp, MPI_Type_delete_attr_function *dl, int *k, void *extra)
{ return create_keyval(A_TYPE, (copy_fn *)cp, (delete_fn *)dl, k, extra); }
EXPORT int MPI_Win_create_keyval(MPI_Win_copy_attr_function *cp, MPI_Win_delete_attr_function *dl, int *k, void *extra)
{ return create_keyval(A_WIN, (copy_fn *)cp, (delete_fn *)dl, k, extra); }
EXPORT int MPI_Keyval_create(MPI_Copy_function *cp, MPI_Delete_function *dl, int *k, void *extra)
{ return create_keyval(A_COMM, (copy_fn *)cp, (delete_fn *)dl, k, extra); }
EXPORT int MPI_Comm_free_keyval(int *k) { return free_keyval(A_COMM, k, "MPI_Comm_free_keyval"); }
EXPORT int MPI_Type_free_keyval(int *k) { return free_keyval(A_TYPE, k, "MPI_Type_free_keyval"); }
EXPORT int MPI_Win_free_keyval(int *k) { return free_keyval(A_WIN, k, "MPI_Win_free_keyval"); }
EXPORT int MPI_Keyval_free(int *k) { return free_keyval(A_COMM, k, "MPI_Keyval_free"); }

EXPORT int MPI_Comm_set_attr(MPI_Comm c, int k, void *v) { return set_attr(A_COMM, c, k, v, "MPI_Comm_set_attr"); }
EXPORT int MPI_Attr_put(MPI_Comm c, int k, void *v) { return set_attr(A_COMM, c, k, v, "MPI_Attr_put"); }
EXPORT int MPI_Type_set_attr(MPI_Datatype t, int k, void *v) { return set_attr(A_TYPE, t, k, v, "MPI_Type_set_attr"); }
EXPORT int MPI_Win_set_attr(MPI_Win w, int k, void *v) { return set_attr(A_WIN, w, k, v, "MPI_Win_set_attr"); }
EXPORT int MPI_Comm_get_attr(MPI_Comm c, int k, void *v, int *f) { return get_attr(A_COMM, c, k, v, f, "MPI_Comm_get_attr"); }
EXPORT int MPI_Attr_get(MPI_Comm c, int k, void *v, int *f) { return get_attr(A_COMM, c, k, v, f, "MPI_Attr_get"); }
EXPORT int MPI_Type_get_attr(MPI_Datatype t, int k, void *v, int *f) { return get_attr(A_TYPE, t, k, v, f, "MPI_Type_get_attr"); }
EXPORT int MPI_Win_get_attr(MPI_Win w, int k, void *v, int *f) { return get_attr(A_WIN, w, k, v, f, "MPI_Win_get_attr"); }
EXPORT int MPI_Comm_delete_attr(MPI_Comm c, int k) { return delete_attr(A_COMM, c, k, "MPI_Comm_delete_attr"); }
EXPORT int MPI_Attr_delete(MPI_Comm c, int k) { return delete_attr(A_COMM, c, k, "MPI_Attr_delete"); }
EXPORT int MPI_Type_delete_attr(MPI_Datatype t, int k) { return delete_attr(A_TYPE, t, k, "MPI_Type_delete_attr"); }
EXPORT int MPI_Win_delete_attr(MPI_Win w, int k) { return delete_attr(A_WIN, w, k, "MPI_Win_delete_attr"); }
