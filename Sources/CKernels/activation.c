// Exact-erf GELU: gelu(x) = x·Φ(x), Φ the standard normal CDF, evaluated with ck_normal_cdf
// (vectorizable, absolute error at float32 rounding; no tanh approximation).
#include "ck_internal.h"
#include "ck_activation.h"

#define CK_INV_SQRT_2PI 0.39894228040143267794f
#define CK_CHUNK 2048   // elements per parallel work item

CK_CLONES static void gelu_chunk(float *restrict out, const float *restrict x, int64_t n) {
    #pragma omp simd
    CK_INTERLEAVE4
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * ck_normal_cdf(x[i]);
}

// d/dx [x Φ(x)] = Φ(x) + x φ(x), φ(x) = exp(−x²/2) / √(2π).
CK_CLONES static void gelu_backward_chunk(float *restrict dx, const float *restrict dout, const float *restrict x, int64_t n,
                                          int accumulate) {
    #pragma omp simd
    CK_INTERLEAVE4
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i], e = ck_exp(-0.5f * v * v);   // one exp for both Φ and φ
        const float d = dout[i] * (ck_normal_cdf_given_exp(v, e) + v * CK_INV_SQRT_2PI * e);
        dx[i] = accumulate ? dx[i] + d : d;
    }
}

void ck_gelu_forward(float *out, const float *x, int64_t N) {
    const int64_t nchunk = (N + CK_CHUNK - 1) / CK_CHUNK;
    #pragma omp parallel for schedule(static) if (N >= CK_PAR_MIN)
    for (int64_t c = 0; c < nchunk; c++) {
        int64_t i0 = c * CK_CHUNK;
        gelu_chunk(out + i0, x + i0, ck_min64(CK_CHUNK, N - i0));
    }
}

void ck_gelu_backward(ck_grad dx, const float *dout, const float *x, int64_t N) {
    const int64_t nchunk = (N + CK_CHUNK - 1) / CK_CHUNK;
    #pragma omp parallel for schedule(static) if (N >= CK_PAR_MIN)
    for (int64_t c = 0; c < nchunk; c++) {
        int64_t i0 = c * CK_CHUNK;
        gelu_backward_chunk(dx.data + i0, dout + i0, x + i0, ck_min64(CK_CHUNK, N - i0), dx.accumulate);
    }
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
