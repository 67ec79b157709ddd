/* appsession.c: the application's own MPI sessions (handles.h). They are the layer's: the
 * processes, process sets and groups are those of the layer's session (session.c), so a session
 * of the application has nothing of MPI's to make again; it keeps its error handler, its hints
 * and the thread level it asked for. Groups made from its process sets are the layer's groups,
 * communicators made from them the layer's communicators. */
#include "layer.h"

struct table ST = {.size = sizeof(struct vsession)};
#define SE(i) ENTRY(ST, struct vsession, i)

int session_idx(MPI_Session v)
{
    int s = layer_slot((unsigned)v, (unsigned)MPI_SESSION_NULL);
    return (s >= 0 && s < ST.n && SE(s)->used) ? s : -1;
}
MPI_Session session_handle(int s) { return LAYER_HANDLE(MPI_SESSION_NULL, s); }
MPI_Errhandler session_eh(int s) { return SE(s)->eh; }
MPI_Errhandler *session_eh_ptr(int s) { return &SE(s)->eh; }

static int level_of(const char *v)
{
    static const char *names[] = {"MPI_THREAD_SINGLE", "MPI_THREAD_FUNNELED", "MPI_THREAD_SERIALIZED",
                                  "MPI_THREAD_MULTIPLE"};
    for (int k = 0; k < 4; k++) if (!strcmp(v, names[k])) return k;
    return MPI_THREAD_SINGLE;
}

EXPORT int MPI_Session_init(MPI_Info info, MPI_Errhandler eh, MPI_Session *session)
{
    enter();
    int rc = state == 1 ? MPI_SUCCESS : MPI_ERR_OTHER;
    if (!rc && eh != MPI_ERRHANDLER_NULL) rc = errh_valid(eh, OBJ_SESSION);
    if (!rc) {
        int s = table_add(&ST);
        SE(s)->eh = eh;
        errh_ref(eh, 1);
        SE(s)->info = info_slot_keep(info);
        SE(s)->thread = MPI_THREAD_SINGLE;
        MPI_Info ri = MPI_INFO_NULL;
        if (info != MPI_INFO_NULL && !info_in(info, &ri)) {
            char v[64];
            int len = sizeof v, flag = 0;
            if (!PMPI_Info_get_string(ri, "thread_level", &len, v, &flag) && flag) SE(s)->thread = level_of(v);
            info_done(&ri);
        }
        *session = session_handle(s);
    }
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Session_init");
    leave();
    return rc;
}
EXPORT int MPI_Session_finalize(MPI_Session *session)
{
    enter();
    int s = session_idx(*session), rc = MPI_SUCCESS;
    if (s < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_SESSION, "MPI_Session_finalize");
    else {
        errh_ref(SE(s)->eh, -1);
        info_slot_drop(SE(s)->info);
        table_del(&ST, s);
        *session = MPI_SESSION_NULL;
    }
    leave();
    return rc;
}

#define SESSION(x, fn) \
    enter(); \
    int s = session_idx(x), rc = MPI_SUCCESS; \
    if (s < 0) { rc = raise_error(OBJ_NONE, -1, MPI_ERR_SESSION, fn); leave(); return rc; }
#define SESSION_END(fn) \
    if (rc) rc = raise_error(OBJ_SESSION, s, rc, fn); \
    leave(); \
    return rc;

EXPORT int MPI_Session_get_num_psets(MPI_Session x, MPI_Info info, int *n)
{
    SESSION(x, "MPI_Session_get_num_psets");
    (void)info;
    rc = PMPI_Session_get_num_psets(layer_session, MPI_INFO_NULL, n);
    SESSION_END("MPI_Session_get_num_psets");
}
EXPORT int MPI_Session_get_nth_pset(MPI_Session x, MPI_Info info, int n, int *len, char *name)
{
    SESSION(x, "MPI_Session_get_nth_pset");
    (void)info;
    rc = PMPI_Session_get_nth_pset(layer_session, MPI_INFO_NULL, n, len, name);
    SESSION_END("MPI_Session_get_nth_pset");
}
EXPORT int MPI_Session_get_pset_info(MPI_Session x, const char *pset, MPI_Info *info)
{
    SESSION(x, "MPI_Session_get_pset_info");
    MPI_Info r = MPI_INFO_NULL;
    if (!(rc = PMPI_Session_get_pset_info(layer_session, pset, &r))) *info = info_got(r);
    SESSION_END("MPI_Session_get_pset_info");
}
EXPORT int MPI_Session_get_info(MPI_Session x, MPI_Info *info)
{
    SESSION(x, "MPI_Session_get_info");
    static const char *names[] = {"MPI_THREAD_SINGLE", "MPI_THREAD_FUNNELED", "MPI_THREAD_SERIALIZED",
                                  "MPI_THREAD_MULTIPLE"};
    MPI_Info mine = info_handle_copy(SE(s)->info);
    rc = MPI_Info_set(mine, "thread_level", names[SE(s)->thread]);
    *info = mine;
    SESSION_END("MPI_Session_get_info");
}
EXPORT int MPI_Group_from_session_pset(MPI_Session x, const char *pset, MPI_Group *group)
{
    SESSION(x, "MPI_Group_from_session_pset");
    MPI_Group r = MPI_GROUP_NULL;
    if (!(rc = PMPI_Group_from_session_pset(layer_session, pset, &r))) *group = group_got(r);
    SESSION_END("MPI_Group_from_session_pset");
}
/* buffers for buffered sends of a session's communicators: those of the layer's session */
EXPORT int MPI_Session_attach_buffer(MPI_Session x, void *buffer, int size)
{
    SESSION(x, "MPI_Session_attach_buffer");
    rc = PMPI_Session_attach_buffer(layer_session, buffer, size);
    SESSION_END("MPI_Session_attach_buffer");
}
EXPORT int MPI_Session_attach_buffer_c(MPI_Session x, void *buffer, MPI_Count size)
{
    SESSION(x, "MPI_Session_attach_buffer");
    rc = PMPI_Session_attach_buffer_c(layer_session, buffer, size);
    SESSION_END("MPI_Session_attach_buffer");
}
EXPORT int MPI_Session_detach_buffer(MPI_Session x, void *buffer_addr, int *size)
{
    SESSION(x, "MPI_Session_detach_buffer");
    rc = PMPI_Session_detach_buffer(layer_session, buffer_addr, size);
    SESSION_END("MPI_Session_detach_buffer");
}
EXPORT int MPI_Session_detach_buffer_c(MPI_Session x, void *buffer_addr, MPI_Count *size)
{
    SESSION(x, "MPI_Session_detach_buffer");
    rc = PMPI_Session_detach_buffer_c(layer_session, buffer_addr, size);
    SESSION_END("MPI_Session_detach_buffer");
}
EXPORT int MPI_Session_flush_buffer(MPI_Session x)
{
    SESSION(x, "MPI_Session_flush_buffer");
    rc = PMPI_Session_flush_buffer(layer_session);
    SESSION_END("MPI_Session_flush_buffer");
}
EXPORT int MPI_Session_iflush_buffer(MPI_Session x, MPI_Request *req)
{
    SESSION(x, "MPI_Session_iflush_buffer");
    MPI_Request r = MPI_REQUEST_NULL;
    if (!(rc = PMPI_Session_iflush_buffer(layer_session, &r))) *req = request_made(RQ_OTHER, -1, r, NULL, "MPI_Session_iflush_buffer");
    SESSION_END("MPI_Session_iflush_buffer");
}
