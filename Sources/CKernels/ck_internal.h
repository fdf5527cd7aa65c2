// Private helpers shared by the kernel files. Not part of the public header set.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#ifdef _OPENMP
#  if __has_include(<omp.h>)
#    include <omp.h>
#  else
int omp_get_max_threads(void);   /* same C ABI in LLVM libomp and GNU libgomp */
int omp_get_thread_num(void);
int omp_get_num_threads(void);
void omp_set_num_threads(int);
#  endif
#endif

// Below this many elements of work a kernel runs on the calling thread: a parallel region costs a
// few microseconds to open, more than the whole loop on small tensors.
#define CK_PAR_MIN 16384

// Per-thread scratch is padded to this many floats so two threads never share a cache line.
#define CK_CACHE_LINE_F32 16

// Runtime CPU dispatch: the hot row loops are compiled for AVX-512, AVX2+FMA and baseline x86-64,
// and the loader picks one at startup (GNU ifunc). On other architectures this is a no-op.
#if defined(__x86_64__) && defined(__linux__) && !defined(CK_NO_CLONES)
#  define CK_CLONES __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#  define CK_CLONES
#endif

// Fixed-size blocks for global reductions: partial sums per block, then a serial sum of the
// partials, so the result does not depend on the number of threads.
#define CK_REDUCE_BLOCK 4096

static inline int64_t ck_min64(int64_t a, int64_t b) { return a < b ? a : b; }
