// OpenBLAS through its CBLAS interface. Only Sources/CKernels/gemm.c includes this.
#include <cblas.h>
