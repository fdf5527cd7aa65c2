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

// What the CPU offers for bf16 products (ck_gemm.h), from CPUID alone so the choice is the same on every
// run: vendor, the AVX512-BF16 bit (leaf 7 subleaf 1, EAX bit 5) and the AMX bits (leaf 7, EDX bits 22
// AMX-BF16 and 24 AMX-TILE) with the OS saving the tile state (XCR0 bits 17-18). AVX512-BF16 runs at
// twice the fp32 FMA rate on AMD (Zen 4 and later, the only AMD cores that have it) and at half of it on
// Intel cores without AMX (performance.md).
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
// The CPUID facts above, read once: vendor, AVX512-BF16 with the OS saving the AVX-512 registers
// (XCR0 bits 1-2 and 5-7), AMX with the OS saving the tile state.
typedef struct { int amd, avx512_bf16, amx; } bf16_facts;
static bf16_facts read_bf16_facts(void) {
    bf16_facts f = {0, 0, 0};
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d) || a < 7) return f;
    f.amd = b == 0x68747541u;   // "AuthenticAMD"
    __cpuid_count(7, 0, a, b, c, d);
    const int amx = (d >> 22 & 1) && (d >> 24 & 1);
    __cpuid_count(7, 1, a, b, c, d);
    const int avx512_bf16 = (a >> 5) & 1;
    __cpuid(1, a, b, c, d);
    uint32_t xcr0 = 0;
    if ((c >> 27) & 1) { uint32_t hi; __asm__ volatile("xgetbv" : "=a"(xcr0), "=d"(hi) : "c"(0)); }   // OSXSAVE
    f.avx512_bf16 = avx512_bf16 && (xcr0 & 0xe6u) == 0xe6u;
    f.amx = amx && (xcr0 & 0x60000u) == 0x60000u;
    return f;
}
static bf16_facts bf16_cpu(void) {
    static int read = 0;
    static bf16_facts facts;
    if (!read) { facts = read_bf16_facts(); read = 1; }
    return facts;
}
int ck_cpu_has_avx512_bf16(void) { return bf16_cpu().avx512_bf16; }
int ck_cpu_bf16_products(void) {
    const bf16_facts f = bf16_cpu();
    if (f.amx) return 2;
    if (!f.avx512_bf16) return 0;
    return f.amd ? 1 : -1;
}
#else
int ck_cpu_has_avx512_bf16(void) { return 0; }
int ck_cpu_bf16_products(void) { return 0; }
#endif
