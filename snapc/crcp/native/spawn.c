/* spawn.c: communicators to processes outside the job (MPI_Comm_spawn, MPI_Comm_spawn_multiple,
 * MPI_Comm_accept/connect, MPI_Comm_join, MPI_Comm_get_parent). Join, accept/connect (given a
 * port from elsewhere) and get_parent work under the layer as without it; a process image cannot
 * bring the other job's processes back, so a checkpoint is refused while one is live (comm.c:
 * comm_refusal). MPICH's spawn and MPI_Open_port crash under the layer's session: refused below
 * with MPI_ERR_UNSUPPORTED_OPERATION. */
#include "layer.h"

static int foreign(MPI_Comm r, int parent, const char *fn, MPI_Comm *out)
{
    int rc = MPI_SUCCESS;
    if (r == MPI_COMM_NULL) { *out = MPI_COMM_NULL; return rc; }
    for (int i = 2; i < ncomm; i++)
        if (C[i].used && C[i].app && C[i].r == r) { *out = C[i].v; return rc; }
    int i = comm_new(r, parent, K_COMM, fn, &rc);
    if (i < 0) return rc;
    C[i].foreign = 1;
    *out = C[i].v;
    return rc;
}

/* MPI_Comm_spawn, MPI_Comm_spawn_multiple: MPICH's reach for its world communicator (as
 * MPI_Open_port below), which the layer's session does not have, and crash the process. Until
 * the layer can give it one, both fail on every rank of the communicator with
 * MPI_ERR_UNSUPPORTED_OPERATION, raised on its error handler. */
EXPORT int MPI_Comm_spawn(const char *command, char *argv[], int maxprocs, MPI_Info info, int root, MPI_Comm comm,
                          MPI_Comm *intercomm, int array_of_errcodes[])
{
    (void)command; (void)argv; (void)maxprocs; (void)info; (void)root; (void)array_of_errcodes;
    enter();
    int p = idx(comm);
    if (intercomm) *intercomm = MPI_COMM_NULL;
    int rc = raise_error(p < 0 ? OBJ_NONE : OBJ_COMM, p, p < 0 ? MPI_ERR_COMM : MPI_ERR_UNSUPPORTED_OPERATION,
                         "MPI_Comm_spawn");
    leave();
    return rc;
}
EXPORT int MPI_Comm_spawn_multiple(int count, char *array_of_commands[], char **array_of_argv[],
                                   const int array_of_maxprocs[], const MPI_Info array_of_info[], int root,
                                   MPI_Comm comm, MPI_Comm *intercomm, int array_of_errcodes[])
{
    (void)count; (void)array_of_commands; (void)array_of_argv; (void)array_of_maxprocs; (void)array_of_info;
    (void)root; (void)array_of_errcodes;
    enter();
    int p = idx(comm);
    if (intercomm) *intercomm = MPI_COMM_NULL;
    int rc = raise_error(p < 0 ? OBJ_NONE : OBJ_COMM, p, p < 0 ? MPI_ERR_COMM : MPI_ERR_UNSUPPORTED_OPERATION,
                         "MPI_Comm_spawn_multiple");
    leave();
    return rc;
}
static int accept_connect(const char *port, MPI_Info info, int root, MPI_Comm comm, MPI_Comm *newcomm, int connect)
{
    const char *fn = connect ? "MPI_Comm_connect" : "MPI_Comm_accept";
    enter();
    int p = idx(comm), rc = MPI_SUCCESS;
    if (p < 0) { rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, fn); leave(); return rc; }
    MPI_Info ri = MPI_INFO_NULL;
    MPI_Comm real = C[p].r, r = MPI_COMM_NULL;
    if (!(rc = info_in(info, &ri))) {
        coll_admit(p);
        if (connect) UNGATED(rc = PMPI_Comm_connect(port, ri, root, real, &r));
        else UNGATED(rc = PMPI_Comm_accept(port, ri, root, real, &r));
        C[p].completed++;
    }
    info_done(&ri);
    if (!rc) rc = foreign(r, p, fn, newcomm);
    if (rc) rc = raise_error(OBJ_COMM, p, rc, fn);
    leave();
    return rc;
}
EXPORT int MPI_Comm_accept(const char *port, MPI_Info info, int root, MPI_Comm comm, MPI_Comm *newcomm)
{
    return accept_connect(port, info, root, comm, newcomm, 0);
}
EXPORT int MPI_Comm_connect(const char *port, MPI_Info info, int root, MPI_Comm comm, MPI_Comm *newcomm)
{
    return accept_connect(port, info, root, comm, newcomm, 1);
}
EXPORT int MPI_Comm_join(int fd, MPI_Comm *intercomm)
{
    enter();
    MPI_Comm r = MPI_COMM_NULL;
    int rc;
    blocking_admit();
    UNGATED(rc = PMPI_Comm_join(fd, &r));
    blocking_done();
    if (!rc) rc = foreign(r, 1, "MPI_Comm_join", intercomm);
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Comm_join");
    leave();
    return rc;
}
EXPORT int MPI_Comm_get_parent(MPI_Comm *parent)
{
    enter();
    MPI_Comm r = MPI_COMM_NULL;
    int rc = PMPI_Comm_get_parent(&r);
    if (!rc) rc = foreign(r, -1, "MPI_Comm_get_parent", parent);
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Comm_get_parent");
    leave();
    return rc;
}
/* MPI_Open_port: MPICH's reaches for its world communicator, which the layer's session does not
 * have, and crashes the process. Until the layer can give it one, the call fails with
 * MPI_ERR_UNSUPPORTED_OPERATION on the default error handler, as an MPI without ports would
 * (MPI_Comm_accept/connect then have no port to use; MPI_Comm_join and spawn still work). */
EXPORT int MPI_Open_port(MPI_Info info, char *port_name)
{
    (void)info;
    enter();
    if (port_name) port_name[0] = '\0';
    int rc = raise_error(OBJ_NONE, -1, MPI_ERR_UNSUPPORTED_OPERATION, "MPI_Open_port");
    leave();
    return rc;
}
