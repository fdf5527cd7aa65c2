// Thread count for the kernels (OpenMP) and the BLAS, set from one place.
#include "ck_internal.h"
#include "ck_runtime.h"
#include "ck_gemm.h"

void ck_set_num_threads(int n) {
    if (n < 1) n = 1;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    ck_gemm_set_num_threads(n);
}

int ck_get_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int ck_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

const char *ck_cpu_level(void) {
#if defined(CK_BUILD_LEVEL)
    return CK_BUILD_LEVEL;   // a build for one instruction set (TESSERA_CPU), without run-time dispatch
#elif defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
#endif
    return "baseline";
}

ck_level ck_cpu_level_id(void) {
    static int cached = -1;
    if (cached < 0) {
        const char *level = ck_cpu_level();
        cached = strcmp(level, "avx512f") == 0 ? CK_LEVEL_AVX512 : strcmp(level, "avx2") == 0 ? CK_LEVEL_AVX2 : CK_LEVEL_BASELINE;
    }
    return (ck_level)cached;
}

// One multiply-add whose fused and separately rounded results differ: x·x = 1 + 2⁻¹¹ + 2⁻²⁴ exactly,
// which rounds (a tie, to even) to 1 + 2⁻¹¹, so the sum with z is 2⁻²⁴ fused and 0 rounded twice.
// The clones contract x·y + z to an FMA where their instruction set has one.
CK_CLONES static float clone_multiply_add(float x, float y, float z) { return x * y + z; }

int ck_clones_fuse_multiply_add(void) {
    volatile float x = 1.0f + 0x1p-12f, z = -(1.0f + 0x1p-11f);
    return clone_multiply_add(x, x, z) != 0.0f;
}

#if defined(__GLIBC__)
#include <malloc.h>
#endif

void ck_keep_freed_memory(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);   // glibc's maximum; larger blocks still use mmap
    mallopt(M_TRIM_THRESHOLD, 0x7fffffff);
#endif
}

#include <stdio.h>
void ck_stdout_line_buffered(void) { setvbuf(stdout, NULL, _IOLBF, 0); }
