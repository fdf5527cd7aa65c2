// softmax, log-softmax and soft-target cross-entropy over the last axis.
#include "ck_internal.h"
#include "ck_softmax.h"

CK_CLONES static float row_max(const float *x, int64_t C) {
    float m = -INFINITY;
    for (int64_t c = 0; c < C; c++) m = x[c] > m ? x[c] : m;
    return m;
}

// log Σ exp(x) with the max subtracted; a row of all −inf gives −inf.
static float row_logsumexp(const float *x, int64_t C) {
    float m = row_max(x, C);
    if (m == -INFINITY) return -INFINITY;
    float s = 0.0f;
    for (int64_t c = 0; c < C; c++) s += expf(x[c] - m);
    return m + logf(s);
}

CK_CLONES static float row_dot(const float *a, const float *b, int64_t C) {
    float s = 0.0f;
    #pragma omp simd reduction(+:s)
    for (int64_t c = 0; c < C; c++) s += a[c] * b[c];
    return s;
}

void ck_softmax_forward(float *out, const float *x, int64_t R, int64_t C) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C; float *yr = out + r * C;
        float m = row_max(xr, C), s = 0.0f;
        for (int64_t c = 0; c < C; c++) { yr[c] = expf(xr[c] - m); s += yr[c]; }
        float inv = 1.0f / s;
        for (int64_t c = 0; c < C; c++) yr[c] *= inv;
    }
}

// y = softmax(x): dL/dx_c = y_c (dy_c − Σ_k y_k dy_k).
void ck_softmax_backward(float *dx, const float *dout, const float *out, int64_t R, int64_t C) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *y = out + r * C, *dy = dout + r * C; float *d = dx + r * C;
        float dot = row_dot(y, dy, C);
        for (int64_t c = 0; c < C; c++) d[c] += y[c] * (dy[c] - dot);
    }
}

void ck_log_softmax_forward(float *out, const float *x, int64_t R, int64_t C) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        float lse = row_logsumexp(x + r * C, C);
        for (int64_t c = 0; c < C; c++) out[r * C + c] = x[r * C + c] - lse;
    }
}

// y = x − lse(x): dL/dx_c = dy_c − exp(y_c) Σ_k dy_k.
void ck_log_softmax_backward(float *dx, const float *dout, const float *out, int64_t R, int64_t C) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *y = out + r * C, *dy = dout + r * C; float *d = dx + r * C;
        float s = 0.0f;
        for (int64_t c = 0; c < C; c++) s += dy[c];
        for (int64_t c = 0; c < C; c++) d[c] += dy[c] - expf(y[c]) * s;
    }
}

void ck_cross_entropy_forward(float *loss, const float *logits, const float *target, int64_t R, int64_t C) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *x = logits + r * C, *t = target + r * C;
        float lse = row_logsumexp(x, C), l = 0.0f;
        for (int64_t c = 0; c < C; c++) if (t[c] != 0.0f) l -= t[c] * (x[c] - lse);
        loss[r] = l;
    }
}

// loss = −Σ t_c (x_c − lse): dloss/dx_c = softmax_c · Σ t − t_c ; dloss/dt_c = −(x_c − lse).
void ck_cross_entropy_backward(float *dlogits, float *dtarget, const float *dloss, const float *logits,
                               const float *target, int64_t R, int64_t C) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *x = logits + r * C, *t = target + r * C;
        const float g = dloss[r], lse = row_logsumexp(x, C);
        if (dlogits) {
            float tsum = 0.0f;
            for (int64_t c = 0; c < C; c++) tsum += t[c];
            for (int64_t c = 0; c < C; c++) dlogits[r * C + c] += g * (expf(x[c] - lse) * tsum - t[c]);
        }
        if (dtarget)
            for (int64_t c = 0; c < C; c++) dtarget[r * C + c] -= g * (x[c] - lse);
    }
}
