// Instruments for `tessera bench` and `tessera-bench`, kept out of the kernels: the matrix-product
// FLOP counter, the per-shape product profile (gemm.c reports each product here), and the FMA and
// bf16 peak loops that the products' rates are measured against.
#include "ck_internal.h"
#include "ck_probe.h"
#include <time.h>

// Matrix-product FLOPs done so far (GEMMs and fused attention). Updated outside parallel regions
// only, from the calling thread.
static uint64_t flop_counter = 0;
void ck_flop_counter_add(uint64_t flops) { flop_counter += flops; }
uint64_t ck_flop_counter_read(void) { return flop_counter; }
void ck_flop_counter_reset(void) { flop_counter = 0; }

// The per-shape profile (ck_gemm_profile): calls and time of each distinct product, found by linear
// search (a step has a few dozen shapes); shapes beyond the table's size are counted in no row.
#define PROFILE_ROWS 256
static int profiling = 0;
static ck_gemm_shape_stat profile_rows[PROFILE_ROWS];
static int64_t profile_used = 0;
static double profile_seconds = 0;   // all rows' seconds: the products' time since profiling started

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ck_gemm_profile(int on) {
    profiling = on != 0;
    if (on) { profile_used = 0; profile_seconds = 0; }
}
double ck_gemm_profile_seconds(void) { return profile_seconds; }
int64_t ck_gemm_profile_count(void) { return profile_used; }
ck_gemm_shape_stat ck_gemm_profile_row(int64_t i) {
    return (i >= 0 && i < profile_used) ? profile_rows[i] : (ck_gemm_shape_stat){0};
}

double ck_probe_product_begin(void) { return profiling ? now_seconds() : 0.0; }
void ck_probe_product_end(double t0, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, const char *op, const char *backend) {
    flop_counter += 2 * (uint64_t)M * (uint64_t)N * (uint64_t)K;
    if (!profiling) return;
    const double dt = now_seconds() - t0;
    profile_seconds += dt;
    for (int64_t i = 0; i < profile_used; i++) {
        ck_gemm_shape_stat *r = &profile_rows[i];
        if (r->M == M && r->N == N && r->K == K && r->trans_a == trans_a && r->trans_b == trans_b &&
            r->op == op && r->backend == backend) {
            r->calls++;
            r->seconds += dt;
            return;
        }
    }
    if (profile_used < PROFILE_ROWS)
        profile_rows[profile_used++] = (ck_gemm_shape_stat){trans_a, trans_b, M, N, K, op, backend, 1, dt};
}

// Twelve independent chains of vector multiply-adds: enough in flight to fill two FMA units of
// 4-cycle latency, in registers (12 of AVX-512's 32, or of AVX2's 16; the 16-float vectors of the
// other kernels would need 24 AVX2 registers and spill, measuring the spills instead of the units).
// Returns a lane sum so nothing is elided.
#define FMA_CHAINS(name, target_attr, lanes)                                                      \
    target_attr static float name(int64_t iterations, float seed) {                               \
        typedef float vec __attribute__((vector_size(4 * lanes)));                               \
        vec acc[12];                                                                              \
        const vec x = (vec){0} + 0.999999f, y = (vec){0} + seed * 1e-7f;                          \
        for (int j = 0; j < 12; j++) acc[j] = (vec){0} + (float)j;                                \
        for (int64_t i = 0; i < iterations; i++) {                                                \
            _Pragma("clang loop unroll(full)") for (int j = 0; j < 12; j++) acc[j] = acc[j] * x + y; \
        }                                                                                         \
        vec s = acc[0];                                                                           \
        for (int j = 1; j < 12; j++) s += acc[j];                                                 \
        float t = 0.0f;                                                                           \
        for (int l = 0; l < lanes; l++) t += s[l];                                                \
        return t;                                                                                 \
    }
FMA_CHAINS(fma_chains_avx512, __attribute__((target("avx512f"))), 16)
FMA_CHAINS(fma_chains_avx2, __attribute__((target("avx2,fma"))), 8)
FMA_CHAINS(fma_chains_baseline, , 4)

// FLOPs of one iteration of the chains on this process's level (ck_cpu_level), and the run.
static float fma_chains(int64_t iterations, float seed, int *lanes) {
    const ck_level level = ck_cpu_level_id();
    if (level == CK_LEVEL_AVX512) { *lanes = 16; return fma_chains_avx512(iterations, seed); }
    if (level == CK_LEVEL_AVX2) { *lanes = 8; return fma_chains_avx2(iterations, seed); }
    *lanes = 4;
    return fma_chains_baseline(iterations, seed);
}

static volatile float fma_sink;   // keeps the chains' results observable

// The bf16 peak: twelve independent chains of `vdpbf16ps` (16 lanes, two products each: 64 FLOPs per
// instruction), as the FMA chains above. 0 where the CPU has no AVX512-BF16.
#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx512f,avx512bf16"))) static float bf16_chains(int64_t iterations) {
    __m512 acc[12];
    const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = (__m512bh)_mm512_set1_epi32(0x33803380);   // (1, 1), (6e-8, 6e-8)
    for (int j = 0; j < 12; j++) acc[j] = _mm512_set1_ps((float)j);
    for (int64_t i = 0; i < iterations; i++) {
        _Pragma("clang loop unroll(full)") for (int j = 0; j < 12; j++) acc[j] = _mm512_dpbf16_ps(acc[j], x, y);
    }
    __m512 s = acc[0];
    for (int j = 1; j < 12; j++) s = _mm512_add_ps(s, acc[j]);
    return _mm512_reduce_add_ps(s);
}
#endif

uint64_t ck_bf16_peak_run(int64_t iterations) {
#if defined(__x86_64__)
    if (!ck_cpu_has_avx512_bf16()) return 0;
    uint64_t flops = 0;
    float sum = 0.0f;
    #pragma omp parallel reduction(+ : flops, sum)
    {
        sum += bf16_chains(iterations);
        flops += (uint64_t)iterations * 12 * 64;
    }
    fma_sink = sum;
    return flops;
#else
    return 0;
#endif
}

uint64_t ck_fma_peak_run(int64_t iterations) {
    uint64_t flops = 0;
    float sum = 0.0f;
    #pragma omp parallel reduction(+ : flops, sum)
    {
        int lanes = 0;
        sum += fma_chains(iterations, (float)iterations, &lanes);
        flops += (uint64_t)iterations * 12 * (uint64_t)lanes * 2;
    }
    fma_sink = sum;
    return flops;
}

