// OpenBLAS through its CBLAS interface: only Sources/CKernels/gemm.c calls it.
#include <cblas.h>

// LAPACK (Fortran ABI: every argument by pointer, the lengths of character arguments appended as
// size_t), from the same library. Only Sources/Engine/Core/Linalg.swift calls it.
#include <stddef.h>
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info,
             size_t jobz_len, size_t uplo_len);
