// LayerNorm, BatchNorm1d, row L2-normalization and MAE's per-patch standardization.
#include "ck_internal.h"
#include "ck_norm.h"

// Two-pass mean and biased variance of one row (more accurate than E[x²] − E[x]²).
CK_CLONES static void row_moments(const float *x, int64_t C, float *mean_out, float *m2_out) {
    float s = 0.0f;
    #pragma omp simd reduction(+:s)
    for (int64_t c = 0; c < C; c++) s += x[c];
    float m = s / (float)C, v = 0.0f;
    #pragma omp simd reduction(+:v)
    for (int64_t c = 0; c < C; c++) { float d = x[c] - m; v += d * d; }
    *mean_out = m; *m2_out = v;
}

CK_CLONES static void layernorm_row(float *y, const float *x, const float *w, const float *b,
                                    float m, float rs, int64_t C) {
    if (w && b) {
        #pragma omp simd
        for (int64_t c = 0; c < C; c++) y[c] = (x[c] - m) * rs * w[c] + b[c];
    } else {
        for (int64_t c = 0; c < C; c++) y[c] = (x[c] - m) * rs * (w ? w[c] : 1.0f) + (b ? b[c] : 0.0f);
    }
}

void ck_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                          const float *bias, int64_t R, int64_t C, float eps) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        float m, m2;
        row_moments(x + r * C, C, &m, &m2);
        float rs = 1.0f / sqrtf(m2 / (float)C + eps);
        mean[r] = m; rstd[r] = rs;
        layernorm_row(out + r * C, x + r * C, weight, bias, m, rs, C);
    }
}

// x̂ = (x − μ)·rstd, g = dout·w:  dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)).
CK_CLONES static void layernorm_row_backward(float *dx, const float *dy, const float *x, const float *w,
                                             float m, float rs, int64_t C, int accumulate) {
    float sg = 0.0f, sgx = 0.0f;
    #pragma omp simd reduction(+:sg, sgx)
    for (int64_t c = 0; c < C; c++) {
        float g = dy[c] * (w ? w[c] : 1.0f);
        sg += g; sgx += g * (x[c] - m) * rs;
    }
    sg /= (float)C; sgx /= (float)C;
    #pragma omp simd
    for (int64_t c = 0; c < C; c++) {
        float g = dy[c] * (w ? w[c] : 1.0f);
        float d = rs * (g - sg - (x[c] - m) * rs * sgx);
        dx[c] = accumulate ? dx[c] + d : d;
    }
}

// dweight[c] += Σ_r dout · x̂, dbias[c] += Σ_r dout for c0 ≤ c < c1 (at most 32 columns), rows in order.
CK_CLONES static void layernorm_param_grads(float *dweight, float *dbias, const float *dout, const float *x,
                                            const float *mean, const float *rstd, int64_t R, int64_t C,
                                            int64_t c0, int64_t c1) {
    float aw[32] = {0}, ab[32] = {0};
    for (int64_t r = 0; r < R; r++) {
        const float *dy = dout + r * C, *xr = x + r * C;
        const float m = mean[r], rs = rstd[r];
        #pragma omp simd
        for (int64_t c = c0; c < c1; c++) { aw[c - c0] += dy[c] * (xr[c] - m) * rs; ab[c - c0] += dy[c]; }
    }
    for (int64_t c = c0; c < c1; c++) {
        if (dweight) dweight[c] += aw[c - c0];
        if (dbias) dbias[c] += ab[c - c0];
    }
}

void ck_layernorm_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                           const float *weight, const float *mean, const float *rstd, int64_t R, int64_t C,
                           int accumulate_dx) {
    if (dx) {
        #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
        for (int64_t r = 0; r < R; r++)
            layernorm_row_backward(dx + r * C, dout + r * C, x + r * C, weight, mean[r], rstd[r], C, accumulate_dx);
    }
    if (dweight || dbias) {
        // Parameter gradients: blocks of columns per thread, rows summed in order (thread-count independent).
        const int64_t CB = 32, nblk = (C + CB - 1) / CB;
        #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
        for (int64_t blk = 0; blk < nblk; blk++)
            layernorm_param_grads(dweight, dbias, dout, x, mean, rstd, R, C, blk * CB, ck_min64(blk * CB + CB, C));
    }
}

// BatchNorm1d: each column is independent, so columns are split across threads.
void ck_batchnorm_forward(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                          const float *x, const float *weight, const float *bias, int64_t R, int64_t C,
                          float eps, float momentum, int training) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t c = 0; c < C; c++) {
        float m, rs;
        if (training) {
            float s = 0.0f;
            for (int64_t r = 0; r < R; r++) s += x[r * C + c];
            m = s / (float)R;
            float v = 0.0f;
            for (int64_t r = 0; r < R; r++) { float d = x[r * C + c] - m; v += d * d; }
            rs = 1.0f / sqrtf(v / (float)R + eps);
            if (running_mean) running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * m;
            if (running_var) {
                float unbiased = R > 1 ? v / (float)(R - 1) : v;
                running_var[c] = (1.0f - momentum) * running_var[c] + momentum * unbiased;
            }
        } else {
            m = running_mean[c];
            rs = 1.0f / sqrtf(running_var[c] + eps);
        }
        mean[c] = m; rstd[c] = rs;
        const float w = weight ? weight[c] : 1.0f, b = bias ? bias[c] : 0.0f;
        for (int64_t r = 0; r < R; r++) out[r * C + c] = (x[r * C + c] - m) * rs * w + b;
    }
}

// Training: x̂ = (x − μ)·rstd over the batch, g = dout·w:  dx = rstd · (g − mean_r(g) − x̂ · mean_r(g ⊙ x̂)).
// Eval: the statistics are constants, dx = g · rstd.
void ck_batchnorm_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                           const float *weight, const float *mean, const float *rstd, int64_t R, int64_t C,
                           int training) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t c = 0; c < C; c++) {
        const float m = mean[c], rs = rstd[c], w = weight ? weight[c] : 1.0f;
        float sdy = 0.0f, sdyx = 0.0f;
        for (int64_t r = 0; r < R; r++) {
            float dy = dout[r * C + c];
            sdy += dy; sdyx += dy * (x[r * C + c] - m) * rs;
        }
        if (dweight) dweight[c] += sdyx;
        if (dbias) dbias[c] += sdy;
        if (!dx) continue;
        if (training) {
            const float mg = w * sdy / (float)R, mgx = w * sdyx / (float)R;
            for (int64_t r = 0; r < R; r++) {
                float xh = (x[r * C + c] - m) * rs;
                dx[r * C + c] += rs * (w * dout[r * C + c] - mg - xh * mgx);
            }
        } else {
            for (int64_t r = 0; r < R; r++) dx[r * C + c] += w * rs * dout[r * C + c];
        }
    }
}

void ck_l2norm_forward(float *out, float *norm, const float *x, int64_t R, int64_t C, float eps) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C;
        float s = 0.0f;
        for (int64_t c = 0; c < C; c++) s += xr[c] * xr[c];
        float n = sqrtf(s), inv = 1.0f / (n > eps ? n : eps);
        norm[r] = n;
        for (int64_t c = 0; c < C; c++) out[r * C + c] = xr[c] * inv;
    }
}

// y = x/‖x‖: dx = (dy − y⟨y, dy⟩)/‖x‖. Below eps the divisor is the constant eps: dx = dy/eps.
void ck_l2norm_backward(float *dx, const float *dout, const float *out, const float *norm, int64_t R,
                        int64_t C, float eps) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *y = out + r * C, *dy = dout + r * C;
        if (norm[r] > eps) {
            float dot = 0.0f;
            for (int64_t c = 0; c < C; c++) dot += y[c] * dy[c];
            float inv = 1.0f / norm[r];
            for (int64_t c = 0; c < C; c++) dx[r * C + c] += (dy[c] - y[c] * dot) * inv;
        } else {
            for (int64_t c = 0; c < C; c++) dx[r * C + c] += dy[c] / eps;
        }
    }
}

void ck_standardize_forward(float *out, float *mean, float *rstd, const float *x, int64_t R, int64_t C, float eps) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        float m, m2;
        row_moments(x + r * C, C, &m, &m2);
        float rs = 1.0f / sqrtf(m2 / (float)(C - 1) + eps);
        mean[r] = m; rstd[r] = rs;
        for (int64_t c = 0; c < C; c++) out[r * C + c] = (x[r * C + c] - m) * rs;
    }
}

// y = (x − μ)·s, s = (var_unbiased + eps)^(−1/2):  dx = s · (dy − mean(dy) − y · ⟨dy, y⟩/(C − 1)).
void ck_standardize_backward(float *dx, const float *dout, const float *out, const float *rstd, int64_t R, int64_t C) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *y = out + r * C, *dy = dout + r * C;
        float sdy = 0.0f, sdyy = 0.0f;
        for (int64_t c = 0; c < C; c++) { sdy += dy[c]; sdyy += dy[c] * y[c]; }
        const float mdy = sdy / (float)C, k = sdyy / (float)(C - 1), s = rstd[r];
        for (int64_t c = 0; c < C; c++) dx[r * C + c] += s * (dy[c] - mdy - y[c] * k);
    }
}
