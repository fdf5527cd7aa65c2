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

void ck_layernorm_apply(float *out, const float *x, const float *weight, const float *bias, const float *mean,
                        const float *rstd, int64_t R, int64_t C) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) layernorm_row(out + r * C, x + r * C, weight, bias, mean[r], rstd[r], C);
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

// The parameter gradients are summed by fixed blocks of LN_RB rows as the row backward passes them (each
// block's rows in order into its own partial sums), then the blocks' partials in block order: the same
// partition at any thread count, so the same bits; dy and x are read once for dx and the sums together.
#define LN_RB 64

// Rows r0 ≤ r < r1: dx (when wanted) and the block's column sums pw[c] = Σ dout·x̂, pb[c] = Σ dout.
CK_CLONES static void layernorm_rows_backward(float *dx, int accumulate, float *restrict pw, float *restrict pb,
                                              const float *dout, const float *x, const float *w, const float *mean,
                                              const float *rstd, int64_t r0, int64_t r1, int64_t C) {
    for (int64_t c = 0; c < C; c++) pw[c] = pb[c] = 0.0f;
    for (int64_t r = r0; r < r1; r++) {
        const float *dy = dout + r * C, *xr = x + r * C;
        const float m = mean[r], rs = rstd[r];
        if (dx) layernorm_row_backward(dx + r * C, dy, xr, w, m, rs, C, accumulate);
        #pragma omp simd
        for (int64_t c = 0; c < C; c++) { pw[c] += dy[c] * (xr[c] - m) * rs; pb[c] += dy[c]; }
    }
}

int64_t ck_layernorm_backward_scratch(int64_t R, int64_t C) { return 2 * C * ((R + LN_RB - 1) / LN_RB); }

void ck_layernorm_backward(ck_grad dx, ck_grad dweight, ck_grad dbias, const float *dout, const float *x,
                           const float *weight, const float *mean, const float *rstd, float *scratch, int64_t R, int64_t C) {
    if (!dweight.data && !dbias.data) {
        if (!dx.data) return;
        #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
        for (int64_t r = 0; r < R; r++)
            layernorm_row_backward(dx.data + r * C, dout + r * C, x + r * C, weight, mean[r], rstd[r], C, dx.accumulate);
        return;
    }
    const int64_t nblk = (R + LN_RB - 1) / LN_RB;
    float *const partial = scratch;   // [nblk][2][C]
    #pragma omp parallel if (R * C >= CK_PAR_MIN)
    {
        #pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblk; blk++)
            layernorm_rows_backward(dx.data, dx.accumulate, partial + blk * 2 * C, partial + blk * 2 * C + C, dout, x, weight,
                                    mean, rstd, blk * LN_RB, ck_min64(blk * LN_RB + LN_RB, R), C);
        #pragma omp for schedule(static)
        for (int64_t c = 0; c < C; c++) {
            float sw = 0.0f, sb = 0.0f;
            for (int64_t blk = 0; blk < nblk; blk++) { sw += partial[blk * 2 * C + c]; sb += partial[blk * 2 * C + C + c]; }
            if (dweight.data) CK_PUT(dweight.accumulate, dweight.data[c], sw);
            if (dbias.data) CK_PUT(dbias.accumulate, dbias.data[c], sb);
        }
    }
}

// BatchNorm1d: each column is independent. Columns go in blocks of BN_CB across threads, and within a
// block the rows are walked in order with the block's columns as one vector loop, so every row read
// is contiguous (a column-at-a-time loop strides through memory: 16% of a SIM step). Each column's
// sums still run over the rows in order, so the bits do not depend on the thread count.
#define BN_CB 32

CK_CLONES static void batchnorm_forward_block(float *out, float *mean, float *rstd, float *running_mean,
                                              float *running_var, const float *x, const float *weight,
                                              const float *bias, int64_t R, int64_t C, int64_t c0, int64_t n,
                                              float eps, float momentum, int training) {
    float m[BN_CB], rs[BN_CB], w[BN_CB], b[BN_CB];
    if (training) {
        float s[BN_CB] = {0}, v[BN_CB] = {0};
        for (int64_t r = 0; r < R; r++) {
            const float *xr = x + r * C + c0;
            #pragma omp simd
            for (int64_t j = 0; j < n; j++) s[j] += xr[j];
        }
        for (int64_t j = 0; j < n; j++) m[j] = s[j] / (float)R;
        for (int64_t r = 0; r < R; r++) {
            const float *xr = x + r * C + c0;
            #pragma omp simd
            for (int64_t j = 0; j < n; j++) { float d = xr[j] - m[j]; v[j] += d * d; }
        }
        for (int64_t j = 0; j < n; j++) {
            rs[j] = 1.0f / sqrtf(v[j] / (float)R + eps);
            if (running_mean) running_mean[c0 + j] = (1.0f - momentum) * running_mean[c0 + j] + momentum * m[j];
            if (running_var) {
                float unbiased = R > 1 ? v[j] / (float)(R - 1) : v[j];
                running_var[c0 + j] = (1.0f - momentum) * running_var[c0 + j] + momentum * unbiased;
            }
        }
    } else {
        for (int64_t j = 0; j < n; j++) { m[j] = running_mean[c0 + j]; rs[j] = 1.0f / sqrtf(running_var[c0 + j] + eps); }
    }
    for (int64_t j = 0; j < n; j++) {
        mean[c0 + j] = m[j]; rstd[c0 + j] = rs[j];
        w[j] = weight ? weight[c0 + j] : 1.0f; b[j] = bias ? bias[c0 + j] : 0.0f;
    }
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C + c0;
        float *o = out + r * C + c0;
        #pragma omp simd
        for (int64_t j = 0; j < n; j++) o[j] = (xr[j] - m[j]) * rs[j] * w[j] + b[j];
    }
}

void ck_batchnorm_forward(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                          const float *x, const float *weight, const float *bias, int64_t R, int64_t C,
                          float eps, float momentum, int training) {
    const int64_t nblk = (C + BN_CB - 1) / BN_CB;
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t blk = 0; blk < nblk; blk++)
        batchnorm_forward_block(out, mean, rstd, running_mean, running_var, x, weight, bias, R, C,
                                blk * BN_CB, ck_min64(BN_CB, C - blk * BN_CB), eps, momentum, training);
}

// Training: x̂ = (x − μ)·rstd over the batch, g = dout·w:  dx = rstd · (g − mean_r(g) − x̂ · mean_r(g ⊙ x̂)).
// Eval: the statistics are constants, dx = g · rstd.
CK_CLONES static void batchnorm_backward_block(ck_grad gx, ck_grad dweight, ck_grad dbias, const float *dout,
                                               const float *x, const float *weight, const float *mean,
                                               const float *rstd, int64_t R, int64_t C, int64_t c0, int64_t n,
                                               int training) {
    float m[BN_CB], rs[BN_CB], w[BN_CB], sdy[BN_CB] = {0}, sdyx[BN_CB] = {0};
    for (int64_t j = 0; j < n; j++) { m[j] = mean[c0 + j]; rs[j] = rstd[c0 + j]; w[j] = weight ? weight[c0 + j] : 1.0f; }
    for (int64_t r = 0; r < R; r++) {
        const float *dy = dout + r * C + c0, *xr = x + r * C + c0;
        #pragma omp simd
        for (int64_t j = 0; j < n; j++) { sdy[j] += dy[j]; sdyx[j] += dy[j] * (xr[j] - m[j]) * rs[j]; }
    }
    for (int64_t j = 0; j < n; j++) {
        if (dweight.data) CK_PUT(dweight.accumulate, dweight.data[c0 + j], sdyx[j]);
        if (dbias.data) CK_PUT(dbias.accumulate, dbias.data[c0 + j], sdy[j]);
    }
    float *dx = gx.data;
    const int acc = gx.accumulate;
    if (!dx) return;
    if (training) {
        float mg[BN_CB], mgx[BN_CB];
        for (int64_t j = 0; j < n; j++) { mg[j] = w[j] * sdy[j] / (float)R; mgx[j] = w[j] * sdyx[j] / (float)R; }
        for (int64_t r = 0; r < R; r++) {
            const float *dy = dout + r * C + c0, *xr = x + r * C + c0;
            float *d = dx + r * C + c0;
            #pragma omp simd
            for (int64_t j = 0; j < n; j++) {
                float xh = (xr[j] - m[j]) * rs[j];
                CK_PUT(acc, d[j], rs[j] * (w[j] * dy[j] - mg[j] - xh * mgx[j]));
            }
        }
    } else {
        for (int64_t r = 0; r < R; r++) {
            const float *dy = dout + r * C + c0;
            float *d = dx + r * C + c0;
            #pragma omp simd
            for (int64_t j = 0; j < n; j++) CK_PUT(acc, d[j], w[j] * rs[j] * dy[j]);
        }
    }
}

void ck_batchnorm_backward(ck_grad dx, ck_grad dweight, ck_grad dbias, const float *dout, const float *x,
                           const float *weight, const float *mean, const float *rstd, int64_t R, int64_t C,
                           int training) {
    const int64_t nblk = (C + BN_CB - 1) / BN_CB;
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t blk = 0; blk < nblk; blk++)
        batchnorm_backward_block(dx, dweight, dbias, dout, x, weight, mean, rstd, R, C,
                                 blk * BN_CB, ck_min64(BN_CB, C - blk * BN_CB), training);
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
void ck_l2norm_backward(ck_grad dx, const float *dout, const float *out, const float *norm, int64_t R,
                        int64_t C, float eps) {
    const int acc = dx.accumulate;
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *y = out + r * C, *dy = dout + r * C;
        if (norm[r] > eps) {
            float dot = 0.0f;
            for (int64_t c = 0; c < C; c++) dot += y[c] * dy[c];
            float inv = 1.0f / norm[r];
            for (int64_t c = 0; c < C; c++) CK_PUT(acc, dx.data[r * C + c], (dy[c] - y[c] * dot) * inv);
        } else {
            for (int64_t c = 0; c < C; c++) CK_PUT(acc, dx.data[r * C + c], dy[c] / eps);
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
void ck_standardize_backward(ck_grad dx, const float *dout, const float *out, const float *rstd, int64_t R, int64_t C) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *y = out + r * C, *dy = dout + r * C;
        float sdy = 0.0f, sdyy = 0.0f;
        for (int64_t c = 0; c < C; c++) { sdy += dy[c]; sdyy += dy[c] * y[c]; }
        const float mdy = sdy / (float)C, k = sdyy / (float)(C - 1), s = rstd[r];
        for (int64_t c = 0; c < C; c++) CK_PUT(dx.accumulate, dx.data[r * C + c], s * (dy[c] - mdy - y[c] * k));
    }
}

// ---- BatchNorm over the rows of several processes (SyncBatchNorm) ---------------------------------
// The fused kernels above in four phases, so the caller can sum each phase's per-column partial sums
// over the processes in between: forward Σx, then Σ(x − μ)², then the normalization; backward Σdy and
// Σdy·x̂, then dx. Each column is summed in row order, whatever the threads.

CK_CLONES static void column_sums_block(float *sum, const float *x, const float *center, int64_t R, int64_t C,
                                        int64_t c0, int64_t n) {
    float s[BN_CB] = {0}, m[BN_CB] = {0};
    if (center) for (int64_t j = 0; j < n; j++) m[j] = center[c0 + j];
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C + c0;
        if (center) {
            #pragma omp simd
            for (int64_t j = 0; j < n; j++) { float d = xr[j] - m[j]; s[j] += d * d; }
        } else {
            #pragma omp simd
            for (int64_t j = 0; j < n; j++) s[j] += xr[j];
        }
    }
    for (int64_t j = 0; j < n; j++) sum[c0 + j] = s[j];
}

void ck_column_sums(float *sum, const float *x, const float *center, int64_t R, int64_t C) {
    const int64_t nblk = (C + BN_CB - 1) / BN_CB;
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t blk = 0; blk < nblk; blk++)
        column_sums_block(sum, x, center, R, C, blk * BN_CB, ck_min64(BN_CB, C - blk * BN_CB));
}

void ck_batchnorm_apply(float *out, const float *x, const float *mean, const float *rstd, const float *weight,
                        const float *bias, int64_t R, int64_t C) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C;
        float *o = out + r * C;
        #pragma omp simd
        for (int64_t j = 0; j < C; j++) o[j] = (xr[j] - mean[j]) * rstd[j] * (weight ? weight[j] : 1.0f) + (bias ? bias[j] : 0.0f);
    }
}

CK_CLONES static void batchnorm_backward_sums_block(float *sdy, float *sdyx, const float *dout, const float *x,
                                                    const float *mean, const float *rstd, int64_t R, int64_t C,
                                                    int64_t c0, int64_t n) {
    float m[BN_CB], rs[BN_CB], a[BN_CB] = {0}, b[BN_CB] = {0};
    for (int64_t j = 0; j < n; j++) { m[j] = mean[c0 + j]; rs[j] = rstd[c0 + j]; }
    for (int64_t r = 0; r < R; r++) {
        const float *dy = dout + r * C + c0, *xr = x + r * C + c0;
        #pragma omp simd
        for (int64_t j = 0; j < n; j++) { a[j] += dy[j]; b[j] += dy[j] * (xr[j] - m[j]) * rs[j]; }
    }
    for (int64_t j = 0; j < n; j++) { sdy[c0 + j] = a[j]; sdyx[c0 + j] = b[j]; }
}

void ck_batchnorm_backward_sums(float *sdy, float *sdyx, const float *dout, const float *x, const float *mean,
                                const float *rstd, int64_t R, int64_t C) {
    const int64_t nblk = (C + BN_CB - 1) / BN_CB;
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t blk = 0; blk < nblk; blk++)
        batchnorm_backward_sums_block(sdy, sdyx, dout, x, mean, rstd, R, C, blk * BN_CB, ck_min64(BN_CB, C - blk * BN_CB));
}

void ck_batchnorm_backward_apply(ck_grad dx, const float *dout, const float *x, const float *weight,
                                 const float *mean, const float *rstd, const float *sdy, const float *sdyx,
                                 float count, int64_t R, int64_t C) {
    const int acc = dx.accumulate;
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *dy = dout + r * C, *xr = x + r * C;
        float *d = dx.data + r * C;
        #pragma omp simd
        for (int64_t j = 0; j < C; j++) {
            float w = weight ? weight[j] : 1.0f, xh = (xr[j] - mean[j]) * rstd[j];
            CK_PUT(acc, d[j], rstd[j] * (w * dy[j] - w * sdy[j] / count - xh * w * sdyx[j] / count));
        }
    }
}
