/* mpich.c: what the layer changes inside MPICH itself, through functions libmpi calls on itself
 * through its PLT (so that a preloaded library's definitions are the ones called).
 *
 *  - Errors. MPICH raises an error that has no communicator on its MPI_COMM_SELF, which a
 *    session does not have: it aborts. Every error MPICH raises is returned to the layer
 *    instead (MPIR_Err_return_comm, which its other raising functions end in), and the layer
 *    raises it on the application's handler (errhandler.c); every real object already returns
 *    its errors to the layer.
 *  - MPI-IO. ROMIO, inside libmpi, is written for the world model: it asks MPI_Initialized
 *    before it starts (false under a session: "MPI not initialized"), hooks its cleanup on an
 *    attribute of MPI_COMM_SELF, and uses MPI_COMM_SELF and MPI_COMM_WORLD for its own
 *    communication (independent opens, the shared file pointer, external32). Its PMPI calls
 *    that take a communicator (generated, crcp_interpose.inc) see the layer's session world and
 *    self for MPI_COMM_WORLD and MPI_COMM_SELF, and PMPI_Initialized is true while the layer's
 *    session is up, rebuild included (re-opening a file, ROMIO opens its shared file pointer's
 *    file on MPI_COMM_SELF). Its cleanup then runs when the layer frees its self at teardown, and ROMIO
 *    starts again in the next session. */
#include "layer.h"

EXPORT int MPIR_Err_return_comm(void *comm_ptr, const char fcname[], int errcode)
{
    (void)comm_ptr; (void)fcname;
    return errcode;
}

EXPORT int PMPI_Initialized(int *flag)
{
    *flag = state == 1 || rebuilding;
    return MPI_SUCCESS;
}

/* MPI_COMM_WORLD and MPI_COMM_SELF in MPICH's own calls: the layer's session's */
static inline MPI_Comm mpich_comm(MPI_Comm c)
{
    if ((state == 1 || rebuilding) && C) {
        if (c == MPI_COMM_WORLD) return C[0].r;
        if (c == MPI_COMM_SELF) return C[1].r;
    }
    return c;
}
#define NEXT(next, name) \
    if (!next) next = (__typeof__(next))dlsym(RTLD_NEXT, name); \
    if (!next) { fprintf(stderr, "crcp: %s not found in MPICH\n", name); abort(); }

#include "crcp_interpose.inc"
