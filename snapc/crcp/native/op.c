/* op.c: user-defined reduction ops (handles.h). The application holds the layer's handle; the
 * generated MPI_Op_create records the function and commutativity (record.c), and the layer makes
 * the op again after a rebuild. An op the application freed is kept while a persistent
 * reduction's record needs it. */
#include "layer.h"

struct table OT = {.size = sizeof(struct vop)};
#define OP(i) ENTRY(OT, struct vop, i)

static int slot_any(MPI_Op v)
{
    int s = layer_slot((unsigned)v, (unsigned)MPI_OP_NULL);
    return (s >= 0 && s < OT.n && OP(s)->used) ? s : -1;
}
int op_in(MPI_Op v, MPI_Op *r, int strict)
{
    if (builtin_handle((unsigned)v)) { *r = v; return MPI_SUCCESS; }
    if (v == MPI_OP_NULL) { *r = v; return strict ? MPI_ERR_OP : MPI_SUCCESS; }
    int s = slot_any(v);
    if (s < 0 || OP(s)->r == MPI_OP_NULL) { *r = MPI_OP_NULL; return MPI_ERR_OP; }
    *r = OP(s)->r;
    return MPI_SUCCESS;
}
MPI_Op op_made(MPI_Op r, struct rec *rec)
{
    int s = table_add(&OT);
    OP(s)->refs = 1;
    OP(s)->r = r;
    OP(s)->v = LAYER_HANDLE(MPI_OP_NULL, s);
    OP(s)->rec = rec;
    if (rec) { rec->kind = REC_OP; rec->slot = s; }
    return OP(s)->v;
}
static void op_gone(int s)
{
    rec_forget(OP(s)->rec);
    table_del(&OT, s);
}
void op_hold(MPI_Op v, int delta)
{
    int s = slot_any(v);
    if (s < 0) return;
    OP(s)->holds += delta;
    if (OP(s)->holds <= 0 && OP(s)->refs <= 0) op_gone(s);
}

EXPORT int MPI_Op_free(MPI_Op *op)
{
    enter();
    int s = slot_any(*op), rc = MPI_SUCCESS;
    if (s < 0 || OP(s)->refs <= 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_OP, "MPI_Op_free");
    else {
        if (--OP(s)->refs == 0) {
            MPI_Op r = OP(s)->r;
            if (r != MPI_OP_NULL) rc = PMPI_Op_free(&r);
            OP(s)->real_freed = 1;
            if (OP(s)->holds <= 0) op_gone(s);
        }
        *op = MPI_OP_NULL;
        if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Op_free");
    }
    leave();
    return rc;
}

void op_teardown(void)
{
    for (int s = 0; s < OT.n; s++) {
        if (!OP(s)->used || OP(s)->r == MPI_OP_NULL) continue;
        if (!OP(s)->real_freed) { MPI_Op r = OP(s)->r; PMPI_Op_free(&r); }
        OP(s)->r = MPI_OP_NULL;
        OP(s)->real_freed = 0;
    }
}
int op_remake(struct rec *r)
{
    MPI_Op made = MPI_OP_NULL;
    int rc = r->replay(r, &made);
    if (!rc) OP(r->slot)->r = made;
    return rc;
}
void op_replayed(void)
{
    for (int s = 0; s < OT.n; s++)
        if (OP(s)->used && OP(s)->refs <= 0 && OP(s)->r != MPI_OP_NULL) {
            MPI_Op r = OP(s)->r;
            PMPI_Op_free(&r);
            OP(s)->real_freed = 1;
        }
}
