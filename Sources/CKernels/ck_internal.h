// Private helpers shared by the kernel files. Not part of the public header set.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ck_grad.h"

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

// The calling thread's number in the enclosing parallel region and the region's thread count (0 and 1
// outside one, and in builds without OpenMP).
static inline int ck_thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
static inline int ck_thread_count(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

// Below this many elements of work a kernel runs on the calling thread: a parallel region costs a
// few microseconds to open, more than the whole loop on small tensors.
#define CK_PAR_MIN 16384

#define CK_CHUNK 2048   // elements per parallel work item

// An elementwise pass's parallel loop: chunks of CK_CHUNK values, one work item each (so the split is the same
// at any thread count); the statement after N sees the chunk's first index i0 and its length n.
#define FOR_EACH_CHUNK(N, ...)                                                                           \
    do {                                                                                                 \
        const int64_t total_ = (N), chunks_ = (total_ + CK_CHUNK - 1) / CK_CHUNK;                         \
        _Pragma("omp parallel for schedule(static) if (total_ >= CK_PAR_MIN)")                           \
        for (int64_t c_ = 0; c_ < chunks_; c_++) {                                                       \
            const int64_t i0 = c_ * CK_CHUNK, n = ck_min64(CK_CHUNK, total_ - i0);                        \
            __VA_ARGS__;                                                                                 \
        }                                                                                                \
    } while (0)

// Per-thread scratch is padded to this many floats so two threads never share a cache line.
#define CK_CACHE_LINE_F32 16

// Runtime CPU dispatch: the hot row loops are compiled for AVX-512, AVX2+FMA and baseline x86-64,
// and the loader picks one at startup (GNU ifunc). The AVX2 clone is the x86-64-v3 level (AVX2, FMA,
// BMI2, F16C), which the loader picks on any CPU that has those features. Not "arch=haswell": that
// clone's resolver tests for the Haswell model itself, so every other AVX2 CPU (AMD Zen, later
// Intel cores without AVX-512) ran the baseline SSE2 clone (measured on an AMD EPYC: the MAE step
// spent 8% in scalar GELU with a libm call per element). On other architectures this is a no-op.
#if defined(__x86_64__) && defined(__linux__) && !defined(CK_NO_CLONES)
#  define CK_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#  define CK_CLONES
#endif

// For `omp simd` loops whose body is one long dependency chain (exp, erfc): run four independent
// vectors per iteration so their latencies overlap; without it such loops are latency-bound.
#define CK_INTERLEAVE4 _Pragma("clang loop interleave_count(4)")

// 16-float vectors (clang/GCC vector extensions): AVX-512 registers in the avx512f clone, pairs of
// AVX2 or quadruples of SSE registers in the others. They are only used inside always-inline helpers
// of one clone and never cross a call, so clang's ABI note about 64-byte vector arguments on
// non-AVX-512 targets does not apply.
#pragma clang diagnostic ignored "-Wpsabi"
typedef float ck_vf16 __attribute__((vector_size(64)));
#define CK_VW 16
#define CK_ALWAYS_INLINE static inline __attribute__((always_inline))
CK_ALWAYS_INLINE ck_vf16 ck_vload(const float *p) { ck_vf16 v; memcpy(&v, p, sizeof v); return v; }
CK_ALWAYS_INLINE void ck_vstore(float *p, ck_vf16 v) { memcpy(p, &v, sizeof v); }

// Max of the 16 lanes by halving (four shuffle + max steps). __builtin_reduce_max instead becomes a
// serial chain of 15 scalar compares with NaN fix-ups: 17% of the attention forward at N = 13.
CK_ALWAYS_INLINE float ck_vmax_lanes(ck_vf16 v) {
    v = __builtin_elementwise_max(v, __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
    v = __builtin_elementwise_max(v, __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11));
    v = __builtin_elementwise_max(v, __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
    v = __builtin_elementwise_max(v, __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));
    return v[0];
}

// Max over n floats (−inf for n = 0): whole vectors, then the tail. NaNs are ignored, like the
// `a > m ? a : m` loops this replaces.
CK_ALWAYS_INLINE float ck_row_max(const float *x, int64_t n) {
    float m = -INFINITY;
    int64_t i = 0;
    if (n >= CK_VW) {
        // Four running maxima, so that a long row is not one chain of dependent max instructions
        // (a 768-float row: 48 × 4 cycles of latency before its exp pass can start). Max is exact,
        // so the grouping does not change the result.
        ck_vf16 v0 = ck_vload(x), v1 = v0, v2 = v0, v3 = v0;
        for (i = CK_VW; i + 4 * CK_VW <= n; i += 4 * CK_VW) {
            v0 = __builtin_elementwise_max(v0, ck_vload(x + i));
            v1 = __builtin_elementwise_max(v1, ck_vload(x + i + CK_VW));
            v2 = __builtin_elementwise_max(v2, ck_vload(x + i + 2 * CK_VW));
            v3 = __builtin_elementwise_max(v3, ck_vload(x + i + 3 * CK_VW));
        }
        for (; i + CK_VW <= n; i += CK_VW) v0 = __builtin_elementwise_max(v0, ck_vload(x + i));
        m = ck_vmax_lanes(__builtin_elementwise_max(__builtin_elementwise_max(v0, v1), __builtin_elementwise_max(v2, v3)));
    }
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

// Asks for the lines of p[0..n) to be brought into L2 (prefetcht1/t2 hints: the level-1 cache stays
// free for the data being computed on). Used to request the next work item's rows while the current
// one computes, where the hardware prefetcher does not run far enough ahead of a compute-heavy loop.
CK_ALWAYS_INLINE void ck_prefetch_l2(const float *p, int64_t n) {
    for (int64_t i = 0; i < n; i += CK_CACHE_LINE_F32) __builtin_prefetch(p + i, 0, 1);
}
CK_ALWAYS_INLINE void ck_prefetch_l2_for_write(float *p, int64_t n) {
    for (int64_t i = 0; i < n; i += CK_CACHE_LINE_F32) __builtin_prefetch(p + i, 1, 1);
}

// Fixed-size blocks for global reductions: partial sums per block, then a serial sum of the
// partials, so the result does not depend on the number of threads.
#define CK_REDUCE_BLOCK 4096

static inline int64_t ck_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t ck_max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Plumbing between kernel files: the BLAS's own thread pool size (gemm.c; set by ck_set_num_threads),
// and the instruments' side of a product (probe.c): a product's clock reads for the per-shape profile
// and the FLOP counter (its start, then its shape, op and backend).
void ck_gemm_set_num_threads(int n);
double ck_probe_product_begin(void);
void ck_probe_product_end(double t0, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, const char *op, const char *backend);
// The instruction-set level the kernels run (runtime.c): ck_cpu_level() as an enum, for the code that
// picks a hand-written variant by it (the GEMM's tile, the FMA peak's chains).
typedef enum { CK_LEVEL_BASELINE = 0, CK_LEVEL_AVX2 = 1, CK_LEVEL_AVX512 = 2 } ck_level;
ck_level ck_cpu_level_id(void);
int ck_cpu_has_avx512_bf16(void);   // AVX512-BF16 usable (CPUID and XCR0; runtime.c): the bf16 tile and peak loop
// 1: the bf16 products run on AVX512-BF16 instructions; 0: on their portable emulation, the same bits (matmul.c).
int ck_bf16_instructions(void);
const char *ck_matmul_tile_name(void);   // which tile ck_matmul runs: "AVX-512 14x32", "AVX2 6x16" or "portable 4x32"
// A Linear layer's epilogue, applied by ck_matmul_epilogue to each finished tile of C: bias[N] added
// (if non-null). row_sums (if its data is non-null): the sums of op(A)'s rows over k, written under
// the gradient contract (the bias gradient of a weight-gradient product). (The fp32 tiles take no GELU:
// there it measured 1.14-1.34x slower than a separate pass; docs/log/benchmarks.md.)
// The bf16 driver only (ck_gelu_linear_forward/backward; the other drivers abort on them), for an MLP's
// GELU, whose activation then never exists in fp32 memory:
//   * gelu_a: op(A) = gelu(A) (A not transposed), computed while packing, before the rounding to bf16;
//   * b_bf16 (non-null): op(B) = B given as bf16 values (not transposed, row stride ldb), paired without
//     rounding; the float B is not read.
typedef struct {
    const float *bias;
    ck_grad row_sums;
    int gelu_a;
    const uint16_t *b_bf16;
} ck_linear_epilogue;
// A broken internal contract (a kernel called as no caller in this library calls it): the message, then
// abort. Not for input checks, which the Swift callers make before any kernel runs.
static inline __attribute__((cold, noreturn)) void ck_fatal(const char *message) {
    fprintf(stderr, "CKernels: %s\n", message);
    abort();
}
// The GELU's arithmetic for the MLP's fused forms (activation.c), the bits of ck_gelu_forward and ck_gelu_backward
// (the bf16 values rounded by ck_bf16_bits): gelu(x) of n values in a row; g ← bf16(gelu(x)) (parallel);
// dx (=|+=) dout · gelu'(x), keeping gelu(x) in g (fp32) or in g16 (bf16; the other null), from one exp
// and erfc per value (parallel; dx.data may be dout).
void ck_gelu_values(float *restrict out, const float *restrict x, int64_t n);
void ck_gelu_bf16(uint16_t *g, const float *x, int64_t n);
void ck_gelu_backward_keeping(ck_grad dx, const float *dout, const float *x, float *g, uint16_t *g16, int64_t n);
void ck_matmul_epilogue(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                        const float *B, int64_t ldb, float beta, float *C, int64_t ldc, const ck_linear_epilogue *ep);

// The gradient contract (ck_grad.h) inside a loop: `dst = v` when overwriting, `dst += v` otherwise.
#define CK_PUT(accumulate, dst, v) ((dst) = (accumulate) ? (dst) + (v) : (v))

// For a kernel that scatters (an element may receive no value or several): an overwritten gradient
// is zeroed first and then accumulated into. Returns the gradient to accumulate into.
static inline ck_grad ck_grad_for_scatter(ck_grad g, int64_t n) {
    if (g.data && !g.accumulate) {
        #pragma omp parallel for simd schedule(static) if (n >= CK_PAR_MIN)
        for (int64_t i = 0; i < n; i++) g.data[i] = 0.0f;
        g.accumulate = 1;
    }
    return g;
}

// ---------------------------------------------------------------------------------------------
// Vectorizable elementary functions. libm's expf/erff are opaque calls that stop the vectorizer;
// these are branch-free (selects only), so `#pragma omp simd` loops calling them vectorize. Always
// inlined, so each CK_CLONES clone computes them with its own instructions: an out-of-line copy is
// compiled for the baseline (no FMA), and under AddressSanitizer ck_gelu_values called one while the
// GELU backward pass inlined its own, which gave two GELUs one ulp apart.

// e^x, accurate to about 2 ulp, for x ≤ 88.7: x = n·ln2 + r, |r| ≤ ln2/2, e^r by a degree-6
// polynomial, 2^n by building the exponent bits. Every caller passes a shifted logit (x − max,
// x − lse) or −z², so there is no overflow handling: larger x gives garbage, not +inf (2 of its ~25
// vector operations, 13% of GELU's forward). Underflows to exactly 0 below −87.34 (so masked −inf
// scores give 0). A NaN input gives NaN: it reaches r, while n, which becomes an integer, sees 0.
CK_ALWAYS_INLINE float ck_exp(float x) {
    const float lo = -87.3365447f;
    // Inputs below lo are evaluated at 0 and replaced by 0 at the end: evaluating them at lo would
    // produce subnormal intermediates, which cost a microcode assist (~100 cycles) per vector.
    float xc = x < lo ? 0.0f : x;             // NaN stays NaN here ...
    float xn = x >= lo ? x : 0.0f;            // ... and is 0 here, so (int32_t)n below is defined
    float n = __builtin_rintf(xn * 1.44269504088896341f);
    float r = xc - n * 0.693359375f;          // ln2 split in two for an exact first product
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, 4);
    float y = p * scale;
    return x < lo ? 0.0f : y;
}

// Natural log of a positive, finite, normal x (no checks; callers guarantee it): x = 2^e · f with
// f in [√½, √2), log x = e · ln 2 + 2 atanh(s), s = (f − 1)/(f + 1), |s| ≤ 0.1716, and
// 2 atanh(s) = 2s (1 + s²/3 + s⁴/5 + … + s¹⁰/11), truncated where the next term is below 2e-9 of
// the first. Inline and vectorizable, unlike a call to libm's logf (a call per softmax row was 10%
// of the attention forward at N = 13).
CK_ALWAYS_INLINE float ck_log(float x) {
    int32_t bits;
    memcpy(&bits, &x, 4);
    int32_t e = ((bits >> 23) & 0xff) - 127;
    int32_t fbits = (bits & 0x007fffff) | 0x3f800000;   // f in [1, 2)
    float f;
    memcpy(&f, &fbits, 4);
    const int big = f > 1.41421356f;
    f = big ? 0.5f * f : f;
    e = big ? e + 1 : e;
    const float s = (f - 1.0f) / (f + 1.0f), u = s * s;
    float p = 1.0f / 11.0f;
    p = p * u + 1.0f / 9.0f;
    p = p * u + 1.0f / 7.0f;
    p = p * u + 1.0f / 5.0f;
    p = p * u + 1.0f / 3.0f;
    const float log_f = 2.0f * s + 2.0f * s * u * p;
    return (float)e * 0.693147180559945309f + log_f;
}

// Standard normal CDF Φ(x) = ½ erfc(|x|/√2) for x < 0 and 1 − ½ erfc(|x|/√2) for x ≥ 0.
// erfc(z) = t · exp(−z²) · Q(t) with t = 1/(1 + z/2) and Q a degree-6 polynomial fitted for the
// absolute error of Φ (Tools/fit_erfc.py): at float32 rounding, 1.2e-7, over the whole line; the
// relative error below x = 0 stays under 3.7e-4 down to x = −6 (Φ = 1e-9), larger beyond. PyTorch's
// vectorized erf has the same absolute accuracy. exp(−z²) = exp(−x²/2) is passed in by the caller,
// so that the GELU backward, which needs the same exponential for the normal pdf, evaluates it once.
CK_ALWAYS_INLINE float ck_normal_cdf_given_exp(float x, float exp_minus_half_x2) {
    const float t = 1.0f / (1.0f + 0.5f * 0.70710678118654752440f * fabsf(x));
    float q = 5.721535161e-02f;
    q = q * t - 2.105575353e-01f;
    q = q * t + 1.067898273e-01f;
    q = q * t + 3.240070343e-01f;
    q = q * t + 1.211730614e-01f;
    q = q * t + 3.247299194e-01f;
    q = q * t + 2.766423821e-01f;
    const float half_erfc = 0.5f * t * exp_minus_half_x2 * q;
    return x >= 0.0f ? 1.0f - half_erfc : half_erfc;
}

CK_ALWAYS_INLINE float ck_normal_cdf(float x) { return ck_normal_cdf_given_exp(x, ck_exp(-0.5f * x * x)); }

// ---- bf16 operands (the bf16 products of matmul.c and attention.c; the rule is stated in matmul.c) ----

// The bf16 bits of x (in the low 16 bits): to nearest even, fp32 denormals read as ±0, NaN kept (quiet).
CK_ALWAYS_INLINE uint32_t ck_bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) == 0) u &= 0x80000000u;                       // denormal → ±0
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;     // NaN, quiet
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

// One pair along the summed index: k = 2q in the low half ("even"), 2q + 1 in the high half ("odd").
CK_ALWAYS_INLINE uint32_t ck_bf16_pair(float even, float odd) { return ck_bf16_bits(even) | (ck_bf16_bits(odd) << 16); }

// The bf16 value of the low (even) or high (odd) half of a pair, as `vdpbf16ps` reads it.
CK_ALWAYS_INLINE float ck_bf16_half(uint32_t pair, int odd) {
    const uint32_t u = odd ? pair & 0xffff0000u : pair << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
CK_ALWAYS_INLINE float ck_flush_denormal(float x) { return fabsf(x) < 0x1p-126f ? copysignf(0.0f, x) : x; }

// fp32 → bf16 pairs, by the rule above (matmul.c; `vcvtne2ps2bf16` where fast = ck_bf16_instructions()):
// n pairs from two rows, dst[j] = (even[j], odd[j]) (odd null: zeros), and the (n + 1) / 2 pairs of n
// values along a row, dst[q] = (x[2q], x[2q + 1]) (a zero after an odd last one).
void ck_bf16_pairs(uint32_t *restrict dst, const float *restrict even, const float *restrict odd, int64_t n, int fast);
void ck_bf16_row_pairs(uint32_t *restrict dst, const float *restrict x, int64_t n, int fast);
