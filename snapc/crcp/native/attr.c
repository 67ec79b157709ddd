/* attr.c: keyvals and attributes, kept in the layer, never on the real communicators.
 * The application's keyvals and values are its own state and must survive a teardown; the real
 * communicators freed at teardown must not run its delete callbacks (mpi4py frees its cached
 * duplicates from one). Predefined attributes (MPI_TAG_UB, ...) are read from the real one. */
#include "layer.h"

#define MAXKV 256
struct keyval { int used; MPI_Comm_copy_attr_function *copy; MPI_Comm_delete_attr_function *del; void *extra; };
static struct keyval KV[MAXKV];
#define KVBASE 0x3a000000
struct attr { int comm, kv; void *val; };
static struct attr *AT;
static int nattr, capattr;
static inline int kvi(int k) { k -= KVBASE; return (k >= 0 && k < MAXKV && KV[k].used) ? k : -1; }
static void attr_add(int c, int k, void *v)
{
    if (nattr == capattr) {
        capattr = capattr ? 2 * capattr : 64;
        AT = realloc(AT, capattr * sizeof *AT);
        if (!AT) { fprintf(stderr, "crcp: out of memory\n"); abort(); }
    }
    AT[nattr++] = (struct attr){c, k, v};
}
EXPORT int MPI_Comm_create_keyval(MPI_Comm_copy_attr_function *cp, MPI_Comm_delete_attr_function *dl, int *k, void *extra)
{
    enter();
    int rc = MPI_ERR_KEYVAL;
    for (int i = 0; i < MAXKV; i++)
        if (!KV[i].used) { KV[i] = (struct keyval){1, cp, dl, extra}; *k = KVBASE + i; rc = MPI_SUCCESS; break; }
    leave();
    return rc;
}
EXPORT int MPI_Comm_free_keyval(int *k)
{
    enter();
    int i = kvi(*k), rc = MPI_SUCCESS;
    if (i < 0) rc = PMPI_Comm_free_keyval(k);
    else { KV[i].used = 0; *k = MPI_KEYVAL_INVALID; }
    leave();
    return rc;
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
EXPORT int MPI_Comm_set_attr(MPI_Comm c, int k, void *v)
{
    enter();
    int i = idx(c), ki = kvi(k), rc = MPI_SUCCESS;
    if (i < 0 || ki < 0) rc = PMPI_Comm_set_attr(R(c), k, v);
    else {
        int a = attr_find(i, ki);
        if (a >= 0) rc = attr_del(i, a);
        attr_add(i, ki, v);
    }
    leave();
    return rc;
}
EXPORT int MPI_Comm_get_attr(MPI_Comm c, int k, void *v, int *f)
{
    enter();
    int i = idx(c), ki = kvi(k), rc = MPI_SUCCESS;
    if (i < 0 || ki < 0) rc = PMPI_Comm_get_attr(R(c), k, v, f);
    else {
        int a = attr_find(i, ki);
        *f = a >= 0;
        if (a >= 0) *(void **)v = AT[a].val;
    }
    leave();
    return rc;
}
EXPORT int MPI_Comm_delete_attr(MPI_Comm c, int k)
{
    enter();
    int i = idx(c), ki = kvi(k), rc;
    if (i < 0 || ki < 0) rc = PMPI_Comm_delete_attr(R(c), k);
    else {
        int a = attr_find(i, ki);
        rc = a < 0 ? MPI_ERR_KEYVAL : attr_del(i, a);
    }
    leave();
    return rc;
}

void attrs_copy(int from, int to)
{
    for (int a = 0; a < nattr; a++) {
        if (AT[a].comm != from) continue;
        int k = AT[a].kv, flag = 0;
        void *nv = NULL;
        if (KV[k].copy && KV[k].copy(C[from].v, KVBASE + k, KV[k].extra, AT[a].val, &nv, &flag) == MPI_SUCCESS && flag)
            attr_add(to, k, nv);
    }
}
void attrs_delete_all(int c) { for (int a = nattr - 1; a >= 0; a--) if (a < nattr && AT[a].comm == c) attr_del(c, a); }
void attrs_delete_everywhere(void)
{
    attrs_delete_all(1); /* SELF first, as MPI_Finalize does */
    for (int i = ncomm - 1; i >= 0; i--) attrs_delete_all(i);
}

void attrs_split_drop(int c) { for (int a = nattr - 1; a >= 0; a--) if (AT[a].comm == c) attr_del(c, a); }
