/* wrappers.c: everything else that takes a communicator or makes an object, generated at build
 * time by snapc/crcp/generate.py from MPICH's mpi_proto.h (crcp_wrappers.inc, in the build
 * directory): every MPICH function that no other unit defines. */
#include "layer.h"

#include "crcp_wrappers.inc"
