// The MPI library (Open MPI through pkg-config "ompi-c", or MPICH through "mpich"): only
// Sources/CMPIShim/mpi_shim.c includes it. Swift never imports mpi.h: MPI_COMM_WORLD, MPI_FLOAT and
// the like are macros whose values differ between implementations.
#include <mpi.h>
