/* datatype.c: derived datatypes (handles.h). The application holds the layer's handle; the
 * generated wrapper of every constructor records its arguments (record.c), and the layer makes
 * the type again from them after a rebuild, in creation order, committed again if it was. A
 * type the application freed is kept as long as the record of a live one needs it (it is made
 * again, used, and freed again). Names are kept by the layer (of predefined types too: MPICH
 * gives them their names again at every initialization); attributes are in attr.c. */
#include "layer.h"

struct table TT = {.size = sizeof(struct vtype)};
#define TY(i) ENTRY(TT, struct vtype, i)

int type_predefined(MPI_Datatype v)
{
    return builtin_handle((unsigned)v) || (v >= MPI_FLOAT_INT && v <= MPI_LONG_DOUBLE_INT);
}
int type_slot(MPI_Datatype v)
{
    int s = layer_slot((unsigned)v, (unsigned)MPI_DATATYPE_NULL);
    return (s >= 0 && s < TT.n && TY(s)->used && TY(s)->refs > 0) ? s : -1;
}
/* also one the application freed that a record still needs */
static int slot_any(MPI_Datatype v)
{
    int s = layer_slot((unsigned)v, (unsigned)MPI_DATATYPE_NULL);
    return (s >= 0 && s < TT.n && TY(s)->used) ? s : -1;
}

int type_in(MPI_Datatype v, MPI_Datatype *r, int strict)
{
    if (type_predefined(v)) { *r = v; return MPI_SUCCESS; }
    if (v == MPI_DATATYPE_NULL) { *r = v; return strict ? MPI_ERR_TYPE : MPI_SUCCESS; }
    int s = slot_any(v);
    if (s < 0 || TY(s)->r == MPI_DATATYPE_NULL) { *r = MPI_DATATYPE_NULL; return MPI_ERR_TYPE; }
    *r = TY(s)->r;
    return MPI_SUCCESS;
}
int types_in(const MPI_Datatype *v, int n, MPI_Datatype **r)
{
    *r = NULL;
    if (!v) return MPI_SUCCESS;
    *r = malloc((n > 0 ? n : 1) * sizeof **r);
    if (!*r) return MPI_ERR_NO_MEM;
    for (int i = 0; i < n; i++) {
        int rc = type_in(v[i], &(*r)[i], 0);
        if (rc) { free(*r); *r = NULL; return rc; }
    }
    return MPI_SUCCESS;
}

static void type_gone(int s)
{
    rec_forget(TY(s)->rec);
    free(TY(s)->name);
    table_del(&TT, s);
}
void type_hold(MPI_Datatype v, int delta)
{
    int s = slot_any(v);
    if (s < 0) return;
    TY(s)->holds += delta;
    if (TY(s)->holds <= 0 && TY(s)->refs <= 0) type_gone(s);
}

MPI_Datatype type_made(MPI_Datatype r, struct rec *rec, int flags)
{
    if (flags & TYPE_PREDEFINED) {
        if (type_predefined(r)) { rec_forget(rec); return r; }
        for (int s = 0; s < TT.n; s++)
            if (TY(s)->used && TY(s)->r == r && (TY(s)->flags & TYPE_PREDEFINED)) {
                TY(s)->refs++;
                rec_forget(rec);
                return TY(s)->v;
            }
    }
    int s = table_add(&TT);
    TY(s)->refs = 1;
    TY(s)->flags = flags;
    TY(s)->r = r;
    TY(s)->v = LAYER_HANDLE(MPI_DATATYPE_NULL, s);
    TY(s)->rec = rec;
    if (rec) { rec->kind = REC_TYPE; rec->slot = s; }
    return TY(s)->v;
}

/* a type MPI returned for one the layer knows (MPI_Type_get_contents adds a reference) */
MPI_Datatype type_got(MPI_Datatype r)
{
    if (r == MPI_DATATYPE_NULL || type_predefined(r)) return r;
    for (int s = 0; s < TT.n; s++)
        if (TY(s)->used && TY(s)->r == r) {
            if (TY(s)->real_freed) TY(s)->real_freed = 0; /* MPI's reference is the layer's again */
            else PMPI_Type_free(&r);
            TY(s)->refs++;
            return TY(s)->v;
        }
    return type_made(r, NULL, 0); /* unknown to the layer: it could not be made again */
}

/* one more reference of the application's to a type it holds (a new handle for it) */
MPI_Datatype type_ref(MPI_Datatype v)
{
    int s = slot_any(v);
    if (s >= 0) TY(s)->refs++;
    return v;
}

EXPORT int MPI_Type_free(MPI_Datatype *t)
{
    enter();
    int s = type_slot(*t), rc = MPI_SUCCESS;
    if (s < 0 || (TY(s)->flags & TYPE_PREDEFINED)) rc = raise_error(OBJ_NONE, -1, MPI_ERR_TYPE, "MPI_Type_free");
    else {
        if (TY(s)->refs == 1) rc = attrs_delete_all(A_TYPE, *t);
        if (rc) { rc = raise_error(OBJ_NONE, -1, rc, "MPI_Type_free"); leave(); return rc; }
        if (--TY(s)->refs == 0) {
            if (TY(s)->r != MPI_DATATYPE_NULL) {
                MPI_Datatype r = TY(s)->r;
                rc = PMPI_Type_free(&r);
                TY(s)->real_freed = 1;
            }
            free(TY(s)->name);
            TY(s)->name = NULL;
            if (TY(s)->holds <= 0) type_gone(s);
        }
        *t = MPI_DATATYPE_NULL;
        if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Type_free");
    }
    leave();
    return rc;
}

EXPORT int MPI_Type_commit(MPI_Datatype *t)
{
    enter();
    int rc;
    MPI_Datatype r;
    if ((rc = type_in(*t, &r, 1)) == MPI_SUCCESS && (rc = PMPI_Type_commit(&r)) == MPI_SUCCESS) {
        int s = type_slot(*t);
        if (s >= 0) TY(s)->committed = 1;
    }
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Type_commit");
    leave();
    return rc;
}

/* ---- names ---- */
struct pname { MPI_Datatype t; char *name; };
static struct pname *PN;
static int nPN;
EXPORT int MPI_Type_set_name(MPI_Datatype t, const char *name)
{
    enter();
    int rc = MPI_SUCCESS, s = type_slot(t);
    char **where = NULL;
    if (s >= 0) where = &TY(s)->name;
    else if (type_predefined(t)) {
        for (int k = 0; k < nPN; k++) if (PN[k].t == t) where = &PN[k].name;
        if (!where) {
            struct pname *n = realloc(PN, (nPN + 1) * sizeof *PN);
            if (n) { PN = n; PN[nPN] = (struct pname){t, NULL}; where = &PN[nPN++].name; }
            else rc = MPI_ERR_NO_MEM;
        }
    } else rc = MPI_ERR_TYPE;
    if (!rc && !name) rc = MPI_ERR_ARG;
    if (!rc) {
        char *n = strndup(name, MPI_MAX_OBJECT_NAME - 1);
        if (!n) rc = MPI_ERR_NO_MEM;
        else { free(*where); *where = n; }
    }
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Type_set_name");
    leave();
    return rc;
}
EXPORT int MPI_Type_get_name(MPI_Datatype t, char *name, int *len)
{
    enter();
    int rc = MPI_SUCCESS, s = type_slot(t);
    const char *mine = NULL;
    if (s >= 0) mine = TY(s)->name;
    else if (type_predefined(t)) { for (int k = 0; k < nPN; k++) if (PN[k].t == t) mine = PN[k].name; }
    else if (t != MPI_DATATYPE_NULL) rc = MPI_ERR_TYPE; /* MPICH names MPI_DATATYPE_NULL */
    if (!rc && mine) { snprintf(name, MPI_MAX_OBJECT_NAME, "%s", mine); *len = (int)strlen(name); }
    else if (!rc) rc = PMPI_Type_get_name(s >= 0 ? TY(s)->r : t, name, len);
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Type_get_name");
    leave();
    return rc;
}

/* ---- teardown and rebuild ---- */
void type_teardown(void)
{
    for (int s = 0; s < TT.n; s++) {
        if (!TY(s)->used || TY(s)->r == MPI_DATATYPE_NULL) continue;
        if (!TY(s)->real_freed && !(TY(s)->flags & TYPE_PREDEFINED)) {
            MPI_Datatype r = TY(s)->r;
            PMPI_Type_free(&r);
        }
        TY(s)->r = MPI_DATATYPE_NULL;
        TY(s)->real_freed = 0;
    }
}
int type_remake(struct rec *r)
{
    int s = r->slot, rc;
    MPI_Datatype made = MPI_DATATYPE_NULL;
    if ((rc = r->replay(r, &made))) return rc;
    TY(s)->r = made;
    if (TY(s)->committed && !type_predefined(made)) rc = PMPI_Type_commit(&TY(s)->r);
    return rc;
}
void type_replayed(void)
{
    for (int s = 0; s < TT.n; s++)
        if (TY(s)->used && TY(s)->refs <= 0 && TY(s)->r != MPI_DATATYPE_NULL) {
            MPI_Datatype r = TY(s)->r;
            PMPI_Type_free(&r);
            TY(s)->real_freed = 1;
        }
}
const char *type_refusal(void)
{
    for (int s = 0; s < TT.n; s++)
        if (TY(s)->used && !TY(s)->rec)
            return "a datatype MPI returned that the layer does not know is live";
    return NULL;
}
