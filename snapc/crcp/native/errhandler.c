/* errhandler.c: error handlers, kept by the layer (handles.h), and the raising of errors.
 *
 * Every real communicator, window and file returns its errors to the layer (the layer sets
 * MPI_ERRORS_RETURN on each), and the layer raises them as MPICH would on the handler the
 * application set: on the call's communicator, window, file or session; with none (or an invalid
 * one), on the default handler, MPI_COMM_SELF's if the application set one, else
 * MPI_COMM_WORLD's, else fatal. This is also what lets an erroneous call with no object return
 * its error at all: under the layer's session MPICH has no MPI_COMM_SELF of its own, and aborts
 * on any error it raises on no object; the layer checks those calls' handles itself. A user's
 * handler is called with the application's handle, and the call then returns MPI_SUCCESS (as
 * MPICH's own raising does). Error handlers need nothing made again after a rebuild: they are
 * functions, and the handles of the layer. */
#include "layer.h"

static struct table ET = {.size = sizeof(struct verrh)};
#define E(i) ENTRY(ET, struct verrh, i)
/* MPICH's fourth predefined handler (C++ exceptions), treated as MPI_ERRORS_RETURN */
#define ERRORS_THROW ((MPI_Errhandler)0x54000002)
static MPI_Errhandler file_null_eh = MPI_ERRORS_RETURN;

static int slot_of(MPI_Errhandler e)
{
    int s = layer_slot((unsigned)e, (unsigned)MPI_ERRHANDLER_NULL);
    return (s >= 0 && s < ET.n && E(s)->used) ? s : -1;
}
static int predefined(MPI_Errhandler e)
{
    return e == MPI_ERRORS_ARE_FATAL || e == MPI_ERRORS_RETURN || e == MPI_ERRORS_ABORT || e == ERRORS_THROW;
}
/* whether e can be set on an object of kind (OBJ_COMM...) */
int errh_valid(MPI_Errhandler e, int kind)
{
    if (predefined(e)) return MPI_SUCCESS;
    int s = slot_of(e);
    if (s < 0) return MPI_ERR_ERRHANDLER;
    return E(s)->kind == kind ? MPI_SUCCESS : MPI_ERR_ARG;
}
void errh_ref(MPI_Errhandler e, int delta)
{
    int s = slot_of(e);
    if (s < 0) return;
    E(s)->refs += delta;
    if (E(s)->refs <= 0) table_del(&ET, s);
}

/* ---- raising ---- */
static void fatal(MPI_Comm real, int code, const char *fn)
{
    char s[MPI_MAX_ERROR_STRING] = "";
    int l = 0;
    PMPI_Error_string(code, s, &l);
    fprintf(stderr, "Abort(%d): Fatal error in %s: %s\n", code, fn, s);
    fflush(stderr);
    PMPI_Abort(real != MPI_COMM_NULL ? real : C[0].r, code);
    _exit(code & 0xff ? code & 0xff : 1);
}
static int apply(MPI_Errhandler eh, int obj, long handle, MPI_Comm real, int code, const char *fn)
{
    if (eh == MPI_ERRORS_RETURN || eh == ERRORS_THROW) return code;
    int s = slot_of(eh);
    if (eh == MPI_ERRHANDLER_NULL || eh == MPI_ERRORS_ARE_FATAL || s < 0) fatal(C[0].r, code, fn);
    if (eh == MPI_ERRORS_ABORT) fatal(real, code, fn);
    /* the user's handler may call MPI: the gate is recursive */
    switch (obj) {
    case OBJ_FILE: { MPI_File f = (MPI_File)handle; ((MPI_File_errhandler_function *)E(s)->fn)(&f, &code); break; }
    case OBJ_WIN: { MPI_Win w = (MPI_Win)handle; ((MPI_Win_errhandler_function *)E(s)->fn)(&w, &code); break; }
    case OBJ_SESSION: { MPI_Session x = (MPI_Session)handle; ((MPI_Session_errhandler_function *)E(s)->fn)(&x, &code); break; }
    default: { MPI_Comm c = (MPI_Comm)handle; ((MPI_Comm_errhandler_function *)E(s)->fn)(&c, &code); }
    }
    return MPI_SUCCESS;
}
static int raise_default(int code, const char *fn)
{
    if (C && C[1].eh != MPI_ERRHANDLER_NULL) return apply(C[1].eh, OBJ_COMM, MPI_COMM_SELF, C[1].r, code, fn);
    if (C && C[0].eh != MPI_ERRHANDLER_NULL) return apply(C[0].eh, OBJ_COMM, MPI_COMM_WORLD, C[0].r, code, fn);
    fatal(C ? C[0].r : MPI_COMM_NULL, code, fn);
    return code;
}
int raise_error(int obj, int slot, int code, const char *fn)
{
    if (code == MPI_SUCCESS) return code;
    switch (obj) {
    case OBJ_COMM: /* one with no handler set (world, self) raises on the default one */
        if (slot >= 0 && C[slot].eh != MPI_ERRHANDLER_NULL)
            return apply(C[slot].eh, OBJ_COMM, C[slot].v, C[slot].r, code, fn);
        break;
    case OBJ_WIN:
        if (slot >= 0 && W[slot].eh != MPI_ERRHANDLER_NULL)
            return apply(W[slot].eh, OBJ_WIN, W[slot].v, C[W[slot].ctx].r, code, fn);
        break;
    case OBJ_FILE:
        return apply(slot >= 0 ? F[slot].eh : file_null_eh, OBJ_FILE,
                     slot >= 0 ? (long)file_handle(slot) : (long)MPI_FILE_NULL,
                     slot >= 0 ? C[F[slot].ctx].r : MPI_COMM_NULL, code, fn);
    case OBJ_SESSION:
        if (slot >= 0 && session_eh(slot) != MPI_ERRHANDLER_NULL)
            return apply(session_eh(slot), OBJ_SESSION, session_handle(slot), MPI_COMM_NULL, code, fn);
        break;
    }
    return raise_default(code, fn);
}

/* ---- MPI_*_create_errhandler, MPI_Errhandler_free ---- */
static int create(int kind, void (*fn)(void), MPI_Errhandler *e)
{
    enter();
    int s = table_add(&ET);
    E(s)->refs = 1;
    E(s)->kind = kind;
    E(s)->fn = fn;
    *e = LAYER_HANDLE(MPI_ERRHANDLER_NULL, s);
    leave();
    return MPI_SUCCESS;
}
EXPORT int MPI_Comm_create_errhandler(MPI_Comm_errhandler_function *fn, MPI_Errhandler *e) { return create(OBJ_COMM, (void (*)(void))fn, e); }
EXPORT int MPI_Win_create_errhandler(MPI_Win_errhandler_function *fn, MPI_Errhandler *e) { return create(OBJ_WIN, (void (*)(void))fn, e); }
EXPORT int MPI_File_create_errhandler(MPI_File_errhandler_function *fn, MPI_Errhandler *e) { return create(OBJ_FILE, (void (*)(void))fn, e); }
EXPORT int MPI_Session_create_errhandler(MPI_Session_errhandler_function *fn, MPI_Errhandler *e) { return create(OBJ_SESSION, (void (*)(void))fn, e); }

EXPORT int MPI_Errhandler_free(MPI_Errhandler *e)
{
    enter();
    int rc = MPI_SUCCESS;
    if (predefined(*e)) *e = MPI_ERRHANDLER_NULL;
    else if (slot_of(*e) < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_ERRHANDLER, "MPI_Errhandler_free");
    else { errh_ref(*e, -1); *e = MPI_ERRHANDLER_NULL; }
    leave();
    return rc;
}

/* ---- set / get on each kind of object ---- */
static int set(MPI_Errhandler *where, MPI_Errhandler e, int kind)
{
    int rc = errh_valid(e, kind);
    if (rc) return rc;
    errh_ref(e, 1);
    errh_ref(*where, -1);
    *where = e;
    return MPI_SUCCESS;
}
static void get(MPI_Errhandler have, MPI_Errhandler dflt, MPI_Errhandler *e)
{
    *e = have == MPI_ERRHANDLER_NULL ? dflt : have;
    errh_ref(*e, 1);
}

EXPORT int MPI_Comm_set_errhandler(MPI_Comm c, MPI_Errhandler e)
{
    enter();
    int i = idx(c), rc;
    rc = i < 0 ? MPI_ERR_COMM : set(&C[i].eh, e, OBJ_COMM);
    if (rc) rc = raise_error(OBJ_COMM, i, rc, "MPI_Comm_set_errhandler");
    leave();
    return rc;
}
EXPORT int MPI_Comm_get_errhandler(MPI_Comm c, MPI_Errhandler *e)
{
    enter();
    int i = idx(c), rc = MPI_SUCCESS;
    if (i < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, "MPI_Comm_get_errhandler");
    else get(C[i].eh, MPI_ERRORS_ARE_FATAL, e);
    leave();
    return rc;
}
EXPORT int MPI_Comm_call_errhandler(MPI_Comm c, int code)
{
    enter();
    int i = idx(c), rc;
    if (i < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, "MPI_Comm_call_errhandler");
    else {
        rc = apply(C[i].eh, OBJ_COMM, C[i].v, C[i].r, code, "MPI_Comm_call_errhandler");
        if (rc == code) rc = MPI_SUCCESS; /* MPI_ERRORS_RETURN: the call itself succeeded */
    }
    leave();
    return rc;
}
EXPORT int MPI_Win_set_errhandler(MPI_Win w, MPI_Errhandler e)
{
    enter();
    int i = win_idx(w), rc;
    rc = i < 0 ? MPI_ERR_WIN : set(&W[i].eh, e, OBJ_WIN);
    if (rc) rc = raise_error(OBJ_WIN, i, rc, "MPI_Win_set_errhandler");
    leave();
    return rc;
}
EXPORT int MPI_Win_get_errhandler(MPI_Win w, MPI_Errhandler *e)
{
    enter();
    int i = win_idx(w), rc = MPI_SUCCESS;
    if (i < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_WIN, "MPI_Win_get_errhandler");
    else get(W[i].eh, MPI_ERRORS_ARE_FATAL, e);
    leave();
    return rc;
}
EXPORT int MPI_Win_call_errhandler(MPI_Win w, int code)
{
    enter();
    int i = win_idx(w), rc;
    if (i < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_WIN, "MPI_Win_call_errhandler");
    else {
        rc = apply(W[i].eh == MPI_ERRHANDLER_NULL ? MPI_ERRORS_ARE_FATAL : W[i].eh, OBJ_WIN, W[i].v,
                   C[W[i].ctx].r, code, "MPI_Win_call_errhandler");
        if (rc == code) rc = MPI_SUCCESS;
    }
    leave();
    return rc;
}
EXPORT int MPI_File_set_errhandler(MPI_File f, MPI_Errhandler e)
{
    enter();
    int rc, i = -1;
    if (f == MPI_FILE_NULL) rc = set(&file_null_eh, e, OBJ_FILE);
    else rc = (i = file_idx(f)) < 0 ? MPI_ERR_FILE : set(&F[i].eh, e, OBJ_FILE);
    if (rc) rc = raise_error(OBJ_FILE, i, rc, "MPI_File_set_errhandler");
    leave();
    return rc;
}
EXPORT int MPI_File_get_errhandler(MPI_File f, MPI_Errhandler *e)
{
    enter();
    int rc = MPI_SUCCESS, i = -1;
    if (f == MPI_FILE_NULL) get(file_null_eh, MPI_ERRORS_RETURN, e);
    else if ((i = file_idx(f)) < 0) rc = raise_error(OBJ_FILE, -1, MPI_ERR_FILE, "MPI_File_get_errhandler");
    else get(F[i].eh, MPI_ERRORS_RETURN, e);
    leave();
    return rc;
}
EXPORT int MPI_File_call_errhandler(MPI_File f, int code)
{
    enter();
    int i = f == MPI_FILE_NULL ? -1 : file_idx(f), rc;
    if (f != MPI_FILE_NULL && i < 0) rc = raise_error(OBJ_FILE, -1, MPI_ERR_FILE, "MPI_File_call_errhandler");
    else {
        rc = apply(i >= 0 ? F[i].eh : file_null_eh, OBJ_FILE, (long)f, i >= 0 ? C[F[i].ctx].r : MPI_COMM_NULL,
                   code, "MPI_File_call_errhandler");
        if (rc == code) rc = MPI_SUCCESS;
    }
    leave();
    return rc;
}
/* the errhandler new files start with */
MPI_Errhandler file_default_eh(void) { errh_ref(file_null_eh, 1); return file_null_eh; }

EXPORT int MPI_Session_set_errhandler(MPI_Session x, MPI_Errhandler e)
{
    enter();
    int i = session_idx(x), rc;
    rc = i < 0 ? MPI_ERR_SESSION : set(session_eh_ptr(i), e, OBJ_SESSION);
    if (rc) rc = raise_error(OBJ_SESSION, i, rc, "MPI_Session_set_errhandler");
    leave();
    return rc;
}
EXPORT int MPI_Session_get_errhandler(MPI_Session x, MPI_Errhandler *e)
{
    enter();
    int i = session_idx(x), rc = MPI_SUCCESS;
    if (i < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_SESSION, "MPI_Session_get_errhandler");
    else get(session_eh(i), MPI_ERRORS_ARE_FATAL, e);
    leave();
    return rc;
}
EXPORT int MPI_Session_call_errhandler(MPI_Session x, int code)
{
    enter();
    int i = session_idx(x), rc;
    if (i < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_SESSION, "MPI_Session_call_errhandler");
    else {
        MPI_Errhandler eh = session_eh(i);
        rc = apply(eh == MPI_ERRHANDLER_NULL ? MPI_ERRORS_ARE_FATAL : eh, OBJ_SESSION, x, MPI_COMM_NULL,
                   code, "MPI_Session_call_errhandler");
        if (rc == code) rc = MPI_SUCCESS;
    }
    leave();
    return rc;
}

/* the MPI-1 names */
EXPORT int MPI_Errhandler_create(MPI_Comm_errhandler_function *fn, MPI_Errhandler *e) { return MPI_Comm_create_errhandler(fn, e); }
EXPORT int MPI_Errhandler_get(MPI_Comm c, MPI_Errhandler *e) { return MPI_Comm_get_errhandler(c, e); }
EXPORT int MPI_Errhandler_set(MPI_Comm c, MPI_Errhandler e) { return MPI_Comm_set_errhandler(c, e); }
