/* file.c: MPI-IO files (handles.h). MPICH's files are pointers; the application holds one of the
 * layer's (with the layer's Fortran and integer conversions). A file keeps what opens it again
 * after a rebuild: its name, access mode, hints, group (its collective context in comm.c: the
 * open's collectives, collective I/O and the close are counted on it for the cut), view,
 * atomicity, and, saved at teardown, its individual and shared file pointers. It is opened again
 * with the mode less MPI_MODE_CREATE and MPI_MODE_EXCL (the file exists: it is on disk, not in
 * the image), its view set again and its pointers moved back. */
#include "layer.h"

struct vfile *F;
int nfile;
static int capfile;
/* the application's handles: an address inside this table of the layer's, never MPICH's */
static char handles[1 << 16];

MPI_File file_handle(int slot) { return (MPI_File)(void *)&handles[(slot + 1) % (int)sizeof handles]; }
int file_idx(MPI_File v)
{
    char *p = (char *)(void *)v;
    if (p <= handles || p >= handles + sizeof handles) return -1;
    int s = (int)(p - handles) - 1;
    return (s >= 0 && s < nfile && F[s].used) ? s : -1;
}

static int file_slot(void)
{
    int i = 0;
    while (i < nfile && F[i].used) i++;
    if (i == nfile) {
        if (nfile + 2 >= (int)sizeof handles) return -1;
        if (nfile == capfile) {
            capfile = capfile ? 2 * capfile : 16;
            F = realloc(F, capfile * sizeof *F);
            if (!F) { fprintf(stderr, "crcp: out of memory\n"); abort(); }
        }
        nfile++;
    }
    memset(&F[i], 0, sizeof *F);
    F[i].used = 1;
    F[i].r = MPI_FILE_NULL;
    F[i].info = F[i].view_info = -1;
    F[i].etype = F[i].filetype = MPI_BYTE;
    F[i].eh = MPI_ERRHANDLER_NULL;
    return i;
}
static void file_forget(int i)
{
    free(F[i].filename);
    free(F[i].datarep);
    info_slot_drop(F[i].info);
    info_slot_drop(F[i].view_info);
    type_hold(F[i].etype, -1);
    type_hold(F[i].filetype, -1);
    errh_ref(F[i].eh, -1);
    F[i].used = 0;
    while (nfile && !F[nfile - 1].used) nfile--;
}

/* the Fortran and integer forms: the slot, plus one (0 is MPI_FILE_NULL) */
EXPORT MPI_Fint MPI_File_c2f(MPI_File f)
{
    int s = file_idx(f);
    return s < 0 ? 0 : s + 1;
}
EXPORT MPI_File MPI_File_f2c(MPI_Fint f)
{
    return f > 0 && f <= nfile && F[f - 1].used ? file_handle(f - 1) : MPI_FILE_NULL;
}
EXPORT int MPI_File_toint(MPI_File f) { return MPI_File_c2f(f); }
EXPORT MPI_File MPI_File_fromint(int f) { return MPI_File_f2c(f); }

EXPORT int MPI_File_open(MPI_Comm comm, const char *filename, int amode, MPI_Info info, MPI_File *fh)
{
    enter();
    int p = idx(comm), rc = MPI_SUCCESS;
    if (p < 0) { rc = raise_error(OBJ_FILE, -1, MPI_ERR_COMM, "MPI_File_open"); leave(); return rc; }
    MPI_Info ri = MPI_INFO_NULL;
    MPI_File r = MPI_FILE_NULL;
    MPI_Comm real = C[p].r;
    if (!(rc = info_in(info, &ri))) {
        coll_admit(p);
        UNGATED(rc = PMPI_File_open(real, filename, amode, ri, &r));
        C[p].completed++;
    }
    info_done(&ri);
    if (!rc) {
        int ctx = ctx_new(C[p].r, K_FILECTX, &rc);
        int i = ctx < 0 ? -1 : file_slot();
        if (ctx < 0 || i < 0) {
            PMPI_File_close(&r);
            if (!rc) rc = MPI_ERR_NO_MEM;
        } else {
            F[i].r = r; F[i].ctx = ctx; F[i].amode = amode;
            F[i].filename = strdup(filename);
            F[i].datarep = strdup("native");
            F[i].info = info_slot_keep(info);
            F[i].eh = file_default_eh();
            F[i].made_by = "MPI_File_open";
            PMPI_File_set_errhandler(r, MPI_ERRORS_RETURN);
            *fh = file_handle(i);
        }
    }
    if (rc) rc = raise_error(OBJ_FILE, -1, rc, "MPI_File_open");
    leave();
    return rc;
}

EXPORT int MPI_File_close(MPI_File *fh)
{
    enter();
    int i = file_idx(*fh), rc = MPI_SUCCESS;
    if (i < 0) { rc = raise_error(OBJ_FILE, -1, MPI_ERR_FILE, "MPI_File_close"); leave(); return rc; }
    int ctx = F[i].ctx;
    MPI_File r = F[i].r;
    coll_admit(ctx);
    UNGATED(rc = PMPI_File_close(&r));
    C[ctx].completed++;
    i = file_idx(*fh);
    if (rc) rc = raise_error(OBJ_FILE, i, rc, "MPI_File_close");
    else {
        ctx_free(ctx);
        file_forget(i);
        *fh = MPI_FILE_NULL;
    }
    leave();
    return rc;
}

EXPORT int MPI_File_delete(const char *filename, MPI_Info info)
{
    enter();
    MPI_Info ri = MPI_INFO_NULL;
    int rc = info_in(info, &ri);
    if (!rc) rc = PMPI_File_delete(filename, ri);
    info_done(&ri);
    if (rc) rc = raise_error(OBJ_FILE, -1, rc, "MPI_File_delete");
    leave();
    return rc;
}

/* ---- the view, atomicity, hints: kept for the reopening (collective calls, counted) ---- */
EXPORT int MPI_File_set_view(MPI_File fh, MPI_Offset disp, MPI_Datatype etype, MPI_Datatype filetype,
                             const char *datarep, MPI_Info info)
{
    enter();
    int i = file_idx(fh), rc = MPI_SUCCESS;
    if (i < 0) { rc = raise_error(OBJ_FILE, -1, MPI_ERR_FILE, "MPI_File_set_view"); leave(); return rc; }
    MPI_Datatype re, rf;
    MPI_Info ri = MPI_INFO_NULL;
    int ctx = F[i].ctx;
    MPI_File r = F[i].r;
    if (!(rc = type_in(etype, &re, 0)) && !(rc = type_in(filetype, &rf, 0)) && !(rc = info_in(info, &ri))) {
        coll_admit(ctx);
        UNGATED(rc = PMPI_File_set_view(r, disp, re, rf, datarep, ri));
        C[ctx].completed++;
    }
    info_done(&ri);
    i = file_idx(fh);
    if (!rc && i >= 0) {
        type_hold(etype, 1); type_hold(filetype, 1);
        type_hold(F[i].etype, -1); type_hold(F[i].filetype, -1);
        F[i].disp = disp; F[i].etype = etype; F[i].filetype = filetype;
        free(F[i].datarep);
        F[i].datarep = strdup(datarep ? datarep : "native");
        info_slot_drop(F[i].view_info);
        F[i].view_info = info_slot_keep(info);
    }
    if (rc) rc = raise_error(OBJ_FILE, i, rc, "MPI_File_set_view");
    leave();
    return rc;
}
EXPORT int MPI_File_get_view(MPI_File fh, MPI_Offset *disp, MPI_Datatype *etype, MPI_Datatype *filetype, char *datarep)
{
    enter();
    int i = file_idx(fh), rc = MPI_SUCCESS;
    if (i < 0) rc = raise_error(OBJ_FILE, -1, MPI_ERR_FILE, "MPI_File_get_view");
    else {
        *disp = F[i].disp;
        /* new handles of the application's types (each is freed by the program) */
        *etype = type_predefined(F[i].etype) ? F[i].etype : type_ref(F[i].etype);
        *filetype = type_predefined(F[i].filetype) ? F[i].filetype : type_ref(F[i].filetype);
        snprintf(datarep, MPI_MAX_DATAREP_STRING, "%s", F[i].datarep);
    }
    leave();
    return rc;
}
EXPORT int MPI_File_set_atomicity(MPI_File fh, int flag)
{
    enter();
    int i = file_idx(fh), rc = MPI_SUCCESS;
    if (i < 0) { rc = raise_error(OBJ_FILE, -1, MPI_ERR_FILE, "MPI_File_set_atomicity"); leave(); return rc; }
    int ctx = F[i].ctx;
    MPI_File r = F[i].r;
    coll_admit(ctx);
    UNGATED(rc = PMPI_File_set_atomicity(r, flag));
    C[ctx].completed++;
    i = file_idx(fh);
    if (!rc && i >= 0) F[i].atomic = flag;
    if (rc) rc = raise_error(OBJ_FILE, i, rc, "MPI_File_set_atomicity");
    leave();
    return rc;
}
EXPORT int MPI_File_set_info(MPI_File fh, MPI_Info info)
{
    enter();
    int i = file_idx(fh), rc = MPI_SUCCESS;
    if (i < 0) { rc = raise_error(OBJ_FILE, -1, MPI_ERR_FILE, "MPI_File_set_info"); leave(); return rc; }
    int ctx = F[i].ctx;
    MPI_File r = F[i].r;
    MPI_Info ri = MPI_INFO_NULL;
    if (!(rc = info_in(info, &ri))) {
        coll_admit(ctx);
        UNGATED(rc = PMPI_File_set_info(r, ri));
        C[ctx].completed++;
    }
    info_done(&ri);
    i = file_idx(fh);
    if (!rc && i >= 0) F[i].info = info_slot_merge(F[i].info, info);
    if (rc) rc = raise_error(OBJ_FILE, i, rc, "MPI_File_set_info");
    leave();
    return rc;
}

/* ---- teardown and rebuild ---- */
/* the file pointers, before the files are closed */
int file_save(void)
{
    int rc = MPI_SUCCESS;
    for (int i = 0; i < nfile && !rc; i++) {
        if (!F[i].used || F[i].r == MPI_FILE_NULL) continue;
        if (F[i].amode & MPI_MODE_SEQUENTIAL) F[i].pos = 0;
        else rc = PMPI_File_get_position(F[i].r, &F[i].pos);
        if (!rc) rc = PMPI_File_get_position_shared(F[i].r, &F[i].shared_pos);
    }
    return rc;
}
void file_teardown(void)
{
    for (int i = 0; i < nfile; i++)
        if (F[i].used && F[i].r != MPI_FILE_NULL) {
            int rc = PMPI_File_close(&F[i].r);
            if (rc && verbose) fprintf(stderr, "crcp: closing a file at teardown: error %d\n", rc);
            F[i].r = MPI_FILE_NULL;
        }
}
int file_remake(int i)
{
    int rc, ctx = F[i].ctx;
    MPI_Comm comm = MPI_COMM_NULL;
    MPI_Info hints = MPI_INFO_NULL;
    if ((rc = comm_from_ranks(C[ctx].wr, C[ctx].size, C[ctx].id, "file", &comm))) return rc;
    if (F[i].info >= 0 && (rc = info_real_of_slot(F[i].info, &hints))) goto out;
    int amode = F[i].amode & ~(MPI_MODE_CREATE | MPI_MODE_EXCL);
    if ((rc = PMPI_File_open(comm, F[i].filename, amode, hints, &F[i].r))) goto out;
    PMPI_File_set_errhandler(F[i].r, MPI_ERRORS_RETURN);
    if (hints != MPI_INFO_NULL) PMPI_Info_free(&hints);
    MPI_Datatype re, rf;
    if (!(rc = type_in(F[i].etype, &re, 0)) && !(rc = type_in(F[i].filetype, &rf, 0))
        && !(rc = info_real_of_slot(F[i].view_info, &hints)))
        rc = PMPI_File_set_view(F[i].r, F[i].disp, re, rf, F[i].datarep, hints);
    if (!rc && F[i].atomic) rc = PMPI_File_set_atomicity(F[i].r, 1);
    if (!rc && !(F[i].amode & MPI_MODE_SEQUENTIAL)) rc = PMPI_File_seek(F[i].r, F[i].pos, MPI_SEEK_SET);
    if (!rc) rc = PMPI_File_seek_shared(F[i].r, F[i].shared_pos, MPI_SEEK_SET);
out:
    if (hints != MPI_INFO_NULL) PMPI_Info_free(&hints);
    if (comm != MPI_COMM_NULL) PMPI_Comm_free(&comm);
    return rc;
}
