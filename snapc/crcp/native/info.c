/* info.c: info objects, kept by the layer (handles.h): ordered (key, value) pairs, with MPI's
 * rules and error classes (a key of 1 to MPI_MAX_INFO_KEY characters, a value of at most
 * MPI_MAX_INFO_VAL; deleting a missing key is MPI_ERR_INFO_NOKEY, MPI_INFO_NULL is MPI_ERR_ARG,
 * MPI_INFO_ENV cannot be changed). Nothing to make again after a rebuild. A call that takes an
 * info gets a real one made for it (info_in, freed by info_done), and an info MPI returns
 * (MPI_Comm_get_info, ...) becomes the layer's (info_got). The layer keeps copies of its own for
 * the hints of its objects and for records (info_keep, info slots). */
#include "layer.h"

struct vinfo { int used, refs, n, cap; char **keys, **vals; };
static struct table IT = {.size = sizeof(struct vinfo)};
#define I(i) ENTRY(IT, struct vinfo, i)
static int env_slot = -1;

static int slot_of(MPI_Info v)
{
    int s = layer_slot((unsigned)v, (unsigned)MPI_INFO_NULL);
    return (s >= 0 && s < IT.n && I(s)->used) ? s : -1;
}
static MPI_Info handle_of(int s) { return LAYER_HANDLE(MPI_INFO_NULL, s); }

static int find(int s, const char *key)
{
    for (int k = 0; k < I(s)->n; k++)
        if (!strcmp(I(s)->keys[k], key)) return k;
    return -1;
}
static int put(int s, const char *key, const char *val)
{
    int k = find(s, key);
    char *v = strdup(val);
    if (!v) return MPI_ERR_NO_MEM;
    if (k >= 0) { free(I(s)->vals[k]); I(s)->vals[k] = v; return MPI_SUCCESS; }
    if (I(s)->n == I(s)->cap) {
        int cap = I(s)->cap ? 2 * I(s)->cap : 8;
        char **nk = realloc(I(s)->keys, cap * sizeof *nk);
        if (nk) I(s)->keys = nk;
        char **nv = realloc(I(s)->vals, cap * sizeof *nv);
        if (nv) I(s)->vals = nv;
        if (!nk || !nv) { free(v); return MPI_ERR_NO_MEM; }
        I(s)->cap = cap;
    }
    I(s)->keys[I(s)->n] = strdup(key);
    I(s)->vals[I(s)->n++] = v;
    return I(s)->keys[I(s)->n - 1] ? MPI_SUCCESS : MPI_ERR_NO_MEM;
}
static int info_new(void)
{
    int s = table_add(&IT);
    I(s)->refs = 1;
    return s;
}
static void info_del(int s)
{
    for (int k = 0; k < I(s)->n; k++) { free(I(s)->keys[k]); free(I(s)->vals[k]); }
    free(I(s)->keys); free(I(s)->vals);
    table_del(&IT, s);
}
static int dup_of(int from)
{
    int s = info_new();
    for (int k = 0; k < I(from)->n; k++)
        if (put(s, I(from)->keys[k], I(from)->vals[k])) { info_del(s); return -1; }
    return s;
}

/* MPI_INFO_ENV: as MPICH makes it, "command" and "argv" of what MPI_Init was given (mpi4py
 * gives nothing: empty) */
static int env(void)
{
    if (env_slot < 0) env_slot = info_new();
    return env_slot;
}
static int slot_or_env(MPI_Info v) { return v == MPI_INFO_ENV ? env() : slot_of(v); }

/* ---- what other units use ---- */
int info_in(MPI_Info v, MPI_Info *r)
{
    *r = MPI_INFO_NULL;
    if (v == MPI_INFO_NULL) return MPI_SUCCESS;
    int s = slot_or_env(v);
    if (s < 0) return MPI_ERR_INFO;
    return info_real_of_slot(s, r);
}
int info_real_of_slot(int s, MPI_Info *r)
{
    int rc;
    *r = MPI_INFO_NULL;
    if (s < 0) return MPI_SUCCESS;
    if ((rc = PMPI_Info_create(r))) return rc;
    for (int k = 0; k < I(s)->n && !rc; k++) rc = PMPI_Info_set(*r, I(s)->keys[k], I(s)->vals[k]);
    if (rc) PMPI_Info_free(r);
    return rc;
}
void info_done(MPI_Info *r)
{
    if (*r != MPI_INFO_NULL && *r != MPI_INFO_ENV) PMPI_Info_free(r);
    *r = MPI_INFO_NULL;
}
int info_slot_from_real(MPI_Info r)
{
    if (r == MPI_INFO_NULL) return -1;
    int s = info_new(), n = 0;
    char key[MPI_MAX_INFO_KEY + 1];
    PMPI_Info_get_nkeys(r, &n);
    for (int k = 0; k < n; k++) {
        int len = 0, flag = 0;
        if (PMPI_Info_get_nthkey(r, k, key)) continue;
        PMPI_Info_get_valuelen(r, key, &len, &flag);
        char *val = malloc(len + 1);
        if (!val) continue;
        int buflen = len + 1;
        if (!PMPI_Info_get_string(r, key, &buflen, val, &flag) && flag) put(s, key, val);
        free(val);
    }
    PMPI_Info_free(&r);
    return s;
}
MPI_Info info_got(MPI_Info r)
{
    int s = info_slot_from_real(r);
    return s < 0 ? MPI_INFO_NULL : handle_of(s);
}
MPI_Info info_keep(MPI_Info v)
{
    int s = slot_or_env(v);
    if (s < 0) return MPI_INFO_NULL;
    int c = dup_of(s);
    return c < 0 ? MPI_INFO_NULL : handle_of(c);
}
void info_unkeep(MPI_Info kept)
{
    int s = slot_of(kept);
    if (s >= 0) info_del(s);
}
int info_slot_keep(MPI_Info v)
{
    int s = slot_or_env(v);
    return s < 0 ? -1 : dup_of(s);
}
void info_slot_drop(int s)
{
    if (s >= 0 && s < IT.n && I(s)->used && s != env_slot) info_del(s);
}
int info_slot_merge(int s, MPI_Info v)
{
    int from = slot_or_env(v);
    if (from < 0) return s;
    if (s < 0) return dup_of(from);
    for (int k = 0; k < I(from)->n; k++) put(s, I(from)->keys[k], I(from)->vals[k]);
    return s;
}
/* the application's new handle of a copy of slot s */
MPI_Info info_handle_copy(int s)
{
    if (s < 0) { int e = info_new(); return handle_of(e); }
    int c = dup_of(s);
    return c < 0 ? MPI_INFO_NULL : handle_of(c);
}

/* ---- the MPI functions ---- */
#define INFO_CHECK(v, s, fn) \
    int s = slot_or_env(v); \
    if (v == MPI_INFO_NULL) { rc = raise_error(OBJ_NONE, -1, MPI_ERR_ARG, fn); leave(); return rc; } \
    if (s < 0) { rc = raise_error(OBJ_NONE, -1, MPI_ERR_INFO, fn); leave(); return rc; }
static int key_error(const char *key)
{
    if (!key) return MPI_ERR_INFO_KEY;
    size_t l = strlen(key);
    return l == 0 || l > MPI_MAX_INFO_KEY ? MPI_ERR_INFO_KEY : MPI_SUCCESS;
}

EXPORT int MPI_Info_create(MPI_Info *info)
{
    enter();
    *info = handle_of(info_new());
    leave();
    return MPI_SUCCESS;
}
EXPORT int MPI_Info_create_env(int argc, char *argv[], MPI_Info *info)
{
    enter();
    int c = info_new(), rc = MPI_SUCCESS;
    if (argc > 0 && argv) rc = put(c, "command", argv[0]);
    if (argc > 1 && argv && !rc) {
        size_t len = 1;
        for (int i = 1; i < argc; i++) len += strlen(argv[i]) + 1;
        char *all = calloc(1, len);
        if (!all) rc = MPI_ERR_NO_MEM;
        for (int i = 1; i < argc && all; i++) { if (i > 1) strcat(all, " "); strcat(all, argv[i]); }
        if (all) rc = put(c, "argv", all);
        free(all);
    }
    if (rc) { info_del(c); rc = raise_error(OBJ_NONE, -1, rc, "MPI_Info_create_env"); }
    else *info = handle_of(c);
    leave();
    return rc;
}
EXPORT int MPI_Info_dup(MPI_Info info, MPI_Info *newinfo)
{
    enter();
    int rc = MPI_SUCCESS;
    INFO_CHECK(info, s, "MPI_Info_dup");
    int c = dup_of(s);
    if (c < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_NO_MEM, "MPI_Info_dup");
    else *newinfo = handle_of(c);
    leave();
    return rc;
}
EXPORT int MPI_Info_free(MPI_Info *info)
{
    enter();
    int rc = MPI_SUCCESS;
    if (*info == MPI_INFO_ENV) rc = raise_error(OBJ_NONE, -1, MPI_ERR_INFO, "MPI_Info_free");
    else {
        INFO_CHECK(*info, s, "MPI_Info_free");
        info_del(s);
        *info = MPI_INFO_NULL;
    }
    leave();
    return rc;
}
EXPORT int MPI_Info_set(MPI_Info info, const char *key, const char *value)
{
    enter();
    int rc = MPI_SUCCESS;
    INFO_CHECK(info, s, "MPI_Info_set");
    if (info == MPI_INFO_ENV) rc = MPI_ERR_INFO;
    else if ((rc = key_error(key))) {}
    else if (!value || strlen(value) > MPI_MAX_INFO_VAL) rc = MPI_ERR_INFO_VALUE;
    else rc = put(s, key, value);
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Info_set");
    leave();
    return rc;
}
EXPORT int MPI_Info_delete(MPI_Info info, const char *key)
{
    enter();
    int rc = MPI_SUCCESS;
    INFO_CHECK(info, s, "MPI_Info_delete");
    int k = -1;
    if (info == MPI_INFO_ENV) rc = MPI_ERR_INFO;
    else if ((rc = key_error(key))) {}
    else if ((k = find(s, key)) < 0) rc = MPI_ERR_INFO_NOKEY;
    else {
        free(I(s)->keys[k]); free(I(s)->vals[k]);
        memmove(&I(s)->keys[k], &I(s)->keys[k + 1], (I(s)->n - k - 1) * sizeof(char *));
        memmove(&I(s)->vals[k], &I(s)->vals[k + 1], (I(s)->n - k - 1) * sizeof(char *));
        I(s)->n--;
    }
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Info_delete");
    leave();
    return rc;
}
EXPORT int MPI_Info_get(MPI_Info info, const char *key, int valuelen, char *value, int *flag)
{
    enter();
    int rc = MPI_SUCCESS;
    INFO_CHECK(info, s, "MPI_Info_get");
    if ((rc = key_error(key))) {}
    else if (valuelen < 0) rc = MPI_ERR_ARG;
    else {
        int k = find(s, key);
        *flag = k >= 0;
        if (k >= 0) {
            size_t l = strlen(I(s)->vals[k]);
            size_t n = l < (size_t)valuelen ? l : (size_t)valuelen;
            memcpy(value, I(s)->vals[k], n);
            value[n] = 0;
            if (l > (size_t)valuelen) rc = MPI_ERR_INFO_VALUE;
        }
    }
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Info_get");
    leave();
    return rc;
}
EXPORT int MPI_Info_get_string(MPI_Info info, const char *key, int *buflen, char *value, int *flag)
{
    enter();
    int rc = MPI_SUCCESS;
    INFO_CHECK(info, s, "MPI_Info_get_string");
    if ((rc = key_error(key))) {}
    else if (*buflen > 0 && !value) rc = MPI_ERR_ARG;
    else {
        int k = find(s, key);
        *flag = k >= 0;
        if (k >= 0) {
            int l = (int)strlen(I(s)->vals[k]);
            if (*buflen > 0) {
                int n = l < *buflen - 1 ? l : *buflen - 1;
                memcpy(value, I(s)->vals[k], n);
                value[n] = 0;
            }
            *buflen = l + 1;
        }
    }
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Info_get_string");
    leave();
    return rc;
}
EXPORT int MPI_Info_get_valuelen(MPI_Info info, const char *key, int *valuelen, int *flag)
{
    enter();
    int rc = MPI_SUCCESS;
    INFO_CHECK(info, s, "MPI_Info_get_valuelen");
    if ((rc = key_error(key))) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Info_get_valuelen");
    else {
        int k = find(s, key);
        *flag = k >= 0;
        if (k >= 0) *valuelen = (int)strlen(I(s)->vals[k]);
    }
    leave();
    return rc;
}
EXPORT int MPI_Info_get_nkeys(MPI_Info info, int *nkeys)
{
    enter();
    int rc = MPI_SUCCESS;
    INFO_CHECK(info, s, "MPI_Info_get_nkeys");
    *nkeys = I(s)->n;
    leave();
    return rc;
}
EXPORT int MPI_Info_get_nthkey(MPI_Info info, int n, char *key)
{
    enter();
    int rc = MPI_SUCCESS;
    INFO_CHECK(info, s, "MPI_Info_get_nthkey");
    if (n < 0 || n >= I(s)->n) rc = raise_error(OBJ_NONE, -1, MPI_ERR_ARG, "MPI_Info_get_nthkey");
    else snprintf(key, MPI_MAX_INFO_KEY + 1, "%s", I(s)->keys[n]);
    leave();
    return rc;
}
