#pragma once
#include <stdint.h>

/// Threads used by the kernels' OpenMP regions and by the BLAS. Sets both, so they always agree.
void ck_set_num_threads(int n);
/// Threads the next parallel region will use (1 when built without OpenMP).
int ck_get_num_threads(void);
/// 1 when the kernels were compiled with OpenMP.
int ck_has_openmp(void);
/// The instruction set the dispatched row kernels run on: "avx512f", "avx2" or "baseline" (in a
/// TESSERA_CPU build, the one it was compiled for).
const char *ck_cpu_level(void);
/// 1 when the CK_CLONES kernels run a clone with fused multiply-add (the AVX-512 and AVX2 ones),
/// 0 for baseline x86-64: what the loader actually picked, which ck_cpu_level only predicts.
int ck_clones_fuse_multiply_add(void);
// Keep freed heap blocks for reuse instead of returning them to the kernel (glibc mallopt;
// no-op elsewhere). Op outputs are allocated every step; without this each step page-faults anew.
void ck_keep_freed_memory(void);
// Make stdout line-buffered (progress lines reach pipes and log files as they are printed).
void ck_stdout_line_buffered(void);

/// OpenMP accounting (omp_counts.c), for `tessera bench`: parallel regions opened, barriers passed
/// (each counted once, by thread 0 of its region) and the seconds all threads together spent waiting in
/// barriers, since the process started. Counted by the OpenMP runtime through its tools interface, in a
/// process started with TESSERA_OMP_COUNTS=1 only; ck_omp_counts_available() says whether it is.
typedef struct {
    uint64_t regions, barriers;
    double wait_seconds;
} ck_omp_counts;
int ck_omp_counts_available(void);
ck_omp_counts ck_omp_counts_read(void);
