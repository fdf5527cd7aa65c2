// The MPI library (Open MPI through pkg-config "ompi-c", or MPICH through "mpich"): only
// Sources/CMPIShim/mpi_shim.c includes it. Swift never imports mpi.h: MPI_COMM_WORLD, MPI_FLOAT and
// the like are macros whose values differ between implementations. The library is linked by what
// pkg-config names (-lmpi or -lmpich); the module map names none, so both can be installed.
#include <mpi.h>
