// Exact-erf GELU.
#include "ck_internal.h"
#include "ck_activation.h"

#define CK_INV_SQRT2 0.70710678118654752440f
#define CK_INV_SQRT_2PI 0.39894228040143267794f

void ck_gelu_forward(float *out, const float *x, int64_t N) {
    #pragma omp parallel for schedule(static) if (N >= CK_PAR_MIN)
    for (int64_t i = 0; i < N; i++) out[i] = 0.5f * x[i] * (1.0f + erff(x[i] * CK_INV_SQRT2));
}

// d/dx [x Φ(x)] = Φ(x) + x φ(x), φ(x) = exp(−x²/2) / √(2π).
void ck_gelu_backward(float *dx, const float *dout, const float *x, int64_t N) {
    #pragma omp parallel for schedule(static) if (N >= CK_PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + erff(v * CK_INV_SQRT2));
        float pdf = CK_INV_SQRT_2PI * expf(-0.5f * v * v);
        dx[i] += dout[i] * (cdf + v * pdf);
    }
}

void ck_bias_gelu_forward(float *out, float *pre, const float *bias, int64_t R, int64_t C) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        float *p = pre + r * C, *o = out + r * C;
        if (bias) for (int64_t c = 0; c < C; c++) p[c] += bias[c];
        for (int64_t c = 0; c < C; c++) o[c] = 0.5f * p[c] * (1.0f + erff(p[c] * CK_INV_SQRT2));
    }
}
