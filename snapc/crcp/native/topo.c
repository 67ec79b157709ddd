/* topo.c: the topology queries of a Cartesian communicator of zero dimensions, which the layer
 * makes itself (commnew.c: MPICH makes one from its MPI_COMM_SELF, which a session does not
 * have). Every other communicator's queries go to MPICH. */
#include "layer.h"

#define TOPO(c, fn) \
    enter(); \
    int i = idx(c), rc = MPI_SUCCESS; \
    if (i < 0) { rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, fn); leave(); return rc; }
#define TOPO_END(fn) \
    if (rc) rc = raise_error(OBJ_COMM, i, rc, fn); \
    leave(); \
    return rc;

EXPORT int MPI_Topo_test(MPI_Comm c, int *status)
{
    TOPO(c, "MPI_Topo_test");
    if (C[i].zerod) *status = MPI_CART;
    else rc = PMPI_Topo_test(C[i].r, status);
    TOPO_END("MPI_Topo_test");
}
EXPORT int MPI_Cartdim_get(MPI_Comm c, int *ndims)
{
    TOPO(c, "MPI_Cartdim_get");
    if (C[i].zerod) *ndims = 0;
    else rc = PMPI_Cartdim_get(C[i].r, ndims);
    TOPO_END("MPI_Cartdim_get");
}
EXPORT int MPI_Cart_get(MPI_Comm c, int maxdims, int dims[], int periods[], int coords[])
{
    TOPO(c, "MPI_Cart_get");
    if (C[i].zerod) rc = maxdims < 0 ? MPI_ERR_ARG : MPI_SUCCESS;
    else rc = PMPI_Cart_get(C[i].r, maxdims, dims, periods, coords);
    TOPO_END("MPI_Cart_get");
}
EXPORT int MPI_Cart_rank(MPI_Comm c, const int coords[], int *rank)
{
    TOPO(c, "MPI_Cart_rank");
    if (C[i].zerod) *rank = 0;
    else rc = PMPI_Cart_rank(C[i].r, coords, rank);
    TOPO_END("MPI_Cart_rank");
}
EXPORT int MPI_Cart_coords(MPI_Comm c, int rank, int maxdims, int coords[])
{
    TOPO(c, "MPI_Cart_coords");
    if (C[i].zerod) rc = rank != 0 ? MPI_ERR_RANK : maxdims < 0 ? MPI_ERR_ARG : MPI_SUCCESS;
    else rc = PMPI_Cart_coords(C[i].r, rank, maxdims, coords);
    TOPO_END("MPI_Cart_coords");
}
EXPORT int MPI_Cart_shift(MPI_Comm c, int direction, int disp, int *source, int *dest)
{
    TOPO(c, "MPI_Cart_shift");
    if (C[i].zerod) rc = MPI_ERR_ARG; /* no direction to shift in */
    else rc = PMPI_Cart_shift(C[i].r, direction, disp, source, dest);
    TOPO_END("MPI_Cart_shift");
}
