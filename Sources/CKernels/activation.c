// Exact-erf GELU: gelu(x) = x·Φ(x), Φ the standard normal CDF, evaluated with ck_normal_cdf
// (vectorizable, absolute error at float32 rounding; no tanh approximation).
#include "ck_internal.h"
#include "ck_activation.h"

#define CK_INV_SQRT_2PI 0.39894228040143267794f

// gelu(x) for n values in a row: the arithmetic of every GELU here (the passes below, and the bf16
// GEMM's packing of gelu(pre) as an operand, ck_gelu_linear_forward), so they all give the same bits.
CK_CLONES void ck_gelu_values(float *restrict out, const float *restrict x, int64_t n) {
    #pragma omp simd
    CK_INTERLEAVE4
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * ck_normal_cdf(x[i]);
}

// The slope d/dx [x Φ(x)] = Φ(x) + x φ(x), φ(x) = exp(−x²/2) / √(2π), from Φ(x) and e = exp(−x²/2)
// (one exp for both Φ and φ); gelu_slope computes them, the passes that keep gelu(x) pass theirs.
CK_ALWAYS_INLINE float gelu_slope_given(float x, float cdf, float e) { return cdf + x * CK_INV_SQRT_2PI * e; }
CK_ALWAYS_INLINE float gelu_slope(float v) {
    const float e = ck_exp(-0.5f * v * v);
    return gelu_slope_given(v, ck_normal_cdf_given_exp(v, e), e);
}

// dx (=|+=) dout · gelu'(x); dx may be dout itself (the backward in place).
CK_CLONES static void gelu_backward_chunk(float *dx, const float *dout, const float *restrict x, int64_t n, int accumulate) {
    #pragma omp simd
    CK_INTERLEAVE4
    for (int64_t i = 0; i < n; i++) {
        const float d = dout[i] * gelu_slope(x[i]);
        dx[i] = accumulate ? dx[i] + d : d;
    }
}

// dx (=|+=) dout · gelu'(x), keeping gelu(x) in g (fp32, or bf16 rounded by ck_bf16_bits), from one exp
// and erfc per value: the arithmetic of gelu_backward_chunk and of ck_gelu_values. dx may be dout itself.
#define DEFINE_GELU_BACKWARD_KEEPING(name, T, keep)                                                                    \
    CK_CLONES static void name(float *dx, const float *dout, const float *restrict x, T *restrict g, int64_t n, int accumulate) { \
        _Pragma("omp simd") CK_INTERLEAVE4                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                                           \
            const float xi = x[i], e = ck_exp(-0.5f * xi * xi), cdf = ck_normal_cdf_given_exp(xi, e);               \
            g[i] = keep(xi * cdf);                                                                                  \
            const float d = dout[i] * gelu_slope_given(xi, cdf, e);                                                 \
            dx[i] = accumulate ? dx[i] + d : d;                                                                     \
        }                                                                                                           \
    }
#define KEEP_FP32(v) (v)
#define KEEP_BF16(v) ((uint16_t)ck_bf16_bits(v))
DEFINE_GELU_BACKWARD_KEEPING(gelu_backward_keeping_fp32, float, KEEP_FP32)
DEFINE_GELU_BACKWARD_KEEPING(gelu_backward_keeping_bf16, uint16_t, KEEP_BF16)

void ck_gelu_backward_keeping(ck_grad dx, const float *dout, const float *x, float *g, uint16_t *g16, int64_t N) {
    FOR_EACH_CHUNK(N, if (g) gelu_backward_keeping_fp32(dx.data + i0, dout + i0, x + i0, g + i0, n, dx.accumulate);
                      else gelu_backward_keeping_bf16(dx.data + i0, dout + i0, x + i0, g16 + i0, n, dx.accumulate));
}

CK_CLONES static void gelu_bf16_chunk(uint16_t *restrict g, const float *restrict x, int64_t n) {
    #pragma omp simd
    CK_INTERLEAVE4
    for (int64_t i = 0; i < n; i++) g[i] = (uint16_t)ck_bf16_bits(x[i] * ck_normal_cdf(x[i]));
}

void ck_gelu_bf16(uint16_t *g, const float *x, int64_t N) {
    FOR_EACH_CHUNK(N, gelu_bf16_chunk(g + i0, x + i0, n));
}

void ck_gelu_forward(float *out, const float *x, int64_t N) {
    FOR_EACH_CHUNK(N, ck_gelu_values(out + i0, x + i0, n));
}

void ck_gelu_backward(ck_grad dx, const float *dout, const float *x, int64_t N) {
    FOR_EACH_CHUNK(N, gelu_backward_chunk(dx.data + i0, dout + i0, x + i0, n, dx.accumulate));
}

CK_CLONES static void bias_gelu_row(float *restrict o, float *restrict p, const float *restrict bias, int64_t C) {
    if (bias) {
        #pragma omp simd
        for (int64_t c = 0; c < C; c++) p[c] += bias[c];
    }
    #pragma omp simd
    CK_INTERLEAVE4
    for (int64_t c = 0; c < C; c++) o[c] = p[c] * ck_normal_cdf(p[c]);
}

void ck_bias_gelu_forward(float *out, float *pre, const float *bias, int64_t R, int64_t C) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) bias_gelu_row(out + r * C, pre + r * C, bias, C);
}
