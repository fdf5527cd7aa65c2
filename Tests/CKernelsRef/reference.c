#include "CKernelsRef.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// Moves every element between image layout [B, C, H, W] and patch rows [B, L, P·P·C] (MAE's order),
// in the direction `to_patches` says.
static void patch_move(float *patches, float *imgs, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int to_patches) {
    int64_t gh = H / P, gw = W / P, F = P * P * C;
    for (int64_t b = 0; b < B; b++)
        for (int64_t r = 0; r < gh; r++)
            for (int64_t c = 0; c < gw; c++)
                for (int64_t i = 0; i < P; i++)
                    for (int64_t j = 0; j < P; j++)
                        for (int64_t ch = 0; ch < C; ch++) {
                            float *x = patches + (b * gh * gw + r * gw + c) * F + (i * P + j) * C + ch;
                            float *im = imgs + ((b * C + ch) * H + r * P + i) * W + c * P + j;
                            if (to_patches) *x = *im; else *im = *x;
                        }
}

void ref_patchify(float *out, const float *imgs, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P) {
    patch_move(out, (float *)imgs, B, C, H, W, P, 1);
}

void ref_masking_ids(int32_t *ids_shuffle, int32_t *ids_restore, int32_t *ids_keep, float *mask,
                     const float *noise, int64_t B, int64_t L, int64_t K) {
    for (int64_t b = 0; b < B; b++) {
        int32_t *s = ids_shuffle + b * L;
        for (int64_t l = 0; l < L; l++) s[l] = (int32_t)l;
        // insertion sort: stable
        for (int64_t i = 1; i < L; i++) {
            int32_t v = s[i]; int64_t j = i - 1;
            while (j >= 0 && noise[b * L + s[j]] > noise[b * L + v]) { s[j + 1] = s[j]; j--; }
            s[j + 1] = v;
        }
        for (int64_t j = 0; j < L; j++) {
            ids_restore[b * L + s[j]] = (int32_t)j;
            mask[b * L + s[j]] = j < K ? 0.0f : 1.0f;
            if (j < K) ids_keep[b * K + j] = s[j];
        }
    }
}

void ref_gather_rows(float *out, const float *x, const int32_t *ids, int64_t ids_bstride,
                     int64_t B, int64_t L, int64_t K, int64_t D) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t d = 0; d < D; d++)
                out[(b * K + k) * D + d] = x[(b * L + ids[b * ids_bstride + k]) * D + d];
}

void ref_unshuffle(float *out, const float *x, const float *mask_token, const int32_t *ids_restore,
                   int64_t B, int64_t S, int64_t L, int64_t K, int64_t D) {
    // torch: cat([x[:, S:], mask_tokens]) then gather by ids_restore, then cat(x[:, :S], ...)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t s = 0; s < S; s++)
            for (int64_t d = 0; d < D; d++) out[(b * (S + L) + s) * D + d] = x[(b * (S + K) + s) * D + d];
        for (int64_t l = 0; l < L; l++) {
            int64_t r = ids_restore[b * L + l];
            for (int64_t d = 0; d < D; d++)
                out[(b * (S + L) + S + l) * D + d] = r < K ? x[(b * (S + K) + S + r) * D + d] : mask_token[d];
        }
    }
}

static double ref_lse(const float *x, int64_t C) {
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < C; c++) if (x[c] > m) m = x[c];
    for (int64_t c = 0; c < C; c++) s += exp((double)x[c] - m);
    return m + log(s);
}

void ref_softmax(float *out, const float *x, int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++) {
        double lse = ref_lse(x + r * C, C);
        for (int64_t c = 0; c < C; c++) out[r * C + c] = (float)exp((double)x[r * C + c] - lse);
    }
}

void ref_log_softmax(float *out, const float *x, int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++) {
        double lse = ref_lse(x + r * C, C);
        for (int64_t c = 0; c < C; c++) out[r * C + c] = (float)((double)x[r * C + c] - lse);
    }
}

void ref_cross_entropy(float *loss, const float *logits, const float *target, int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++) {
        double lse = ref_lse(logits + r * C, C), l = 0;
        for (int64_t c = 0; c < C; c++) l -= (double)target[r * C + c] * ((double)logits[r * C + c] - lse);
        loss[r] = (float)l;
    }
}

#define QKV(b, n, t, h, d) qkv[((((b) * N + (n)) * 3 + (t)) * H + (h)) * D + (d)]

// The attention of the two functions below, with its products' operands rounded to bf16 when bf16 is 1
// (the kernels' bf16 path: Q, K, V, dO, the probabilities P and dS = scale · P ⊙ (dP − rowsum(P ⊙ dP))
// rounded where they enter a product; sums in double).
static float ref_bf16(float x);
static double attention_operand(double x, int bf16) { return bf16 ? ref_bf16((float)x) : x; }

static void attention_forward(float *out, const float *qkv, int64_t B, int64_t N, int64_t H, int64_t D, float scale, int bf16) {
    double *p = malloc(sizeof(double) * N);
#define X(b, n, t, h, d) attention_operand(QKV(b, n, t, h, d), bf16)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < N; i++) {
                double m = -INFINITY, s = 0;
                for (int64_t j = 0; j < N; j++) {
                    double acc = 0;
                    for (int64_t d = 0; d < D; d++) acc += X(b, i, 0, h, d) * X(b, j, 1, h, d);
                    p[j] = acc * scale;
                    if (p[j] > m) m = p[j];
                }
                for (int64_t j = 0; j < N; j++) { p[j] = exp(p[j] - m); s += p[j]; }
                for (int64_t d = 0; d < D; d++) {
                    double acc = 0;
                    for (int64_t j = 0; j < N; j++) acc += attention_operand(p[j] / s, bf16) * X(b, j, 2, h, d);
                    out[(b * N + i) * H * D + h * D + d] = (float)acc;
                }
            }
    free(p);
}

static void attention_backward(float *dqkv, const float *dout, const float *qkv, int64_t B, int64_t N, int64_t H,
                               int64_t D, float scale, int bf16) {
    double *P = malloc(sizeof(double) * N * N), *dP = malloc(sizeof(double) * N * N);
    memset(dqkv, 0, sizeof(float) * B * N * 3 * H * D);
#define DQKV(b, n, t, h, d) dqkv[((((b) * N + (n)) * 3 + (t)) * H + (h)) * D + (d)]
#define DO(b, n, h, d) attention_operand(dout[((b) * N + (n)) * H * D + (h) * D + (d)], bf16)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            for (int64_t i = 0; i < N; i++) {
                double m = -INFINITY, s = 0;
                for (int64_t j = 0; j < N; j++) {
                    double acc = 0;
                    for (int64_t d = 0; d < D; d++) acc += X(b, i, 0, h, d) * X(b, j, 1, h, d);
                    P[i * N + j] = acc * scale; if (P[i * N + j] > m) m = P[i * N + j];
                }
                for (int64_t j = 0; j < N; j++) { P[i * N + j] = exp(P[i * N + j] - m); s += P[i * N + j]; }
                for (int64_t j = 0; j < N; j++) P[i * N + j] /= s;
            }
            // dV = Pᵀ dO ; dP = dO Vᵀ ; dS = scale · P ⊙ (dP − rowsum(P ⊙ dP)) ; dQ = dS K ; dK = dSᵀ Q
            for (int64_t j = 0; j < N; j++)
                for (int64_t d = 0; d < D; d++) {
                    double acc = 0;
                    for (int64_t i = 0; i < N; i++) acc += attention_operand(P[i * N + j], bf16) * DO(b, i, h, d);
                    DQKV(b, j, 2, h, d) = (float)acc;
                }
            for (int64_t i = 0; i < N; i++) {
                double rs = 0;
                for (int64_t j = 0; j < N; j++) {
                    double acc = 0;
                    for (int64_t d = 0; d < D; d++) acc += DO(b, i, h, d) * X(b, j, 2, h, d);
                    dP[i * N + j] = acc; rs += P[i * N + j] * acc;
                }
                for (int64_t j = 0; j < N; j++) dP[i * N + j] = attention_operand(scale * P[i * N + j] * (dP[i * N + j] - rs), bf16);
            }
            for (int64_t i = 0; i < N; i++)
                for (int64_t d = 0; d < D; d++) {
                    double aq = 0, ak = 0;
                    for (int64_t j = 0; j < N; j++) {
                        aq += dP[i * N + j] * X(b, j, 1, h, d);
                        ak += dP[j * N + i] * X(b, j, 0, h, d);
                    }
                    DQKV(b, i, 0, h, d) = (float)aq;
                    DQKV(b, i, 1, h, d) = (float)ak;
                }
        }
#undef X
#undef DO
    free(P); free(dP);
}

void ref_attention_forward(float *out, const float *qkv, int64_t B, int64_t N, int64_t H, int64_t D, float scale) {
    attention_forward(out, qkv, B, N, H, D, scale, 0);
}
void ref_attention_backward(float *dqkv, const float *dout, const float *qkv, int64_t B, int64_t N, int64_t H, int64_t D,
                            float scale) {
    attention_backward(dqkv, dout, qkv, B, N, H, D, scale, 0);
}
void ref_attention_forward_bf16(float *out, const float *qkv, int64_t B, int64_t N, int64_t H, int64_t D, float scale) {
    attention_forward(out, qkv, B, N, H, D, scale, 1);
}
void ref_attention_backward_bf16(float *dqkv, const float *dout, const float *qkv, int64_t B, int64_t N, int64_t H, int64_t D,
                                 float scale) {
    attention_backward(dqkv, dout, qkv, B, N, H, D, scale, 1);
}

// Normalizes `groups` groups of `n` values (element k of group g at x[g·gs + k·es]) with biased
// statistics, then scales and shifts by w/b indexed by the channel (`g` or `k`, whichever is the channel).
static void normalize_groups(float *out, const float *x, const float *w, const float *b, int64_t groups, int64_t n,
                             int64_t gs, int64_t es, int channel_is_group, float eps) {
    for (int64_t g = 0; g < groups; g++) {
        double m = 0, v = 0;
        for (int64_t k = 0; k < n; k++) m += x[g * gs + k * es];
        m /= n;
        for (int64_t k = 0; k < n; k++) v += (x[g * gs + k * es] - m) * (x[g * gs + k * es] - m);
        v /= n;
        for (int64_t k = 0; k < n; k++) {
            int64_t c = channel_is_group ? g : k;
            out[g * gs + k * es] = (float)((x[g * gs + k * es] - m) / sqrt(v + eps) * (w ? w[c] : 1) + (b ? b[c] : 0));
        }
    }
}

// LayerNorm: statistics over each row's C channels.
void ref_layernorm(float *out, const float *x, const float *w, const float *b, int64_t R, int64_t C, float eps) {
    normalize_groups(out, x, w, b, R, C, C, 1, 0, eps);
}

// BatchNorm (training): statistics over each channel's R rows.
void ref_batchnorm_train(float *out, const float *x, const float *w, const float *b, int64_t R, int64_t C, float eps) {
    normalize_groups(out, x, w, b, C, R, 1, C, 1, eps);
}

void ref_l2norm(float *out, const float *x, int64_t R, int64_t C, float eps) {
    for (int64_t r = 0; r < R; r++) {
        double s = 0;
        for (int64_t c = 0; c < C; c++) s += (double)x[r * C + c] * x[r * C + c];
        double n = sqrt(s); if (n < eps) n = eps;
        for (int64_t c = 0; c < C; c++) out[r * C + c] = (float)(x[r * C + c] / n);
    }
}

void ref_standardize(float *out, const float *x, int64_t R, int64_t C, float eps) {
    for (int64_t r = 0; r < R; r++) {
        double m = 0, v = 0;
        for (int64_t c = 0; c < C; c++) m += x[r * C + c];
        m /= C;
        for (int64_t c = 0; c < C; c++) v += (x[r * C + c] - m) * (x[r * C + c] - m);
        v /= (C - 1);
        for (int64_t c = 0; c < C; c++) out[r * C + c] = (float)((x[r * C + c] - m) / sqrt(v + eps));
    }
}

void ref_gelu(float *out, const float *x, int64_t N) {
    for (int64_t i = 0; i < N; i++) out[i] = (float)(0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0))));
}

void ref_adamw(float *p, float *m, float *v, const float *g, int64_t N, int64_t N_decay, float lr, float b1,
               float b2, float eps, float wd, int64_t step) {
    double bc1 = 1 - pow(b1, (double)step), bc2 = 1 - pow(b2, (double)step);
    for (int64_t i = 0; i < N; i++) {
        double pi = p[i];
        if (i < N_decay) pi *= 1 - (double)lr * wd;
        m[i] = (float)(b1 * (double)m[i] + (1 - (double)b1) * g[i]);
        v[i] = (float)(b2 * (double)v[i] + (1 - (double)b2) * (double)g[i] * g[i]);
        p[i] = (float)(pi - lr / bc1 * m[i] / (sqrt(v[i] / bc2) + eps));
    }
}

void ref_matmul(float *out, const float *a, const float *b, int64_t M, int64_t K, int64_t N) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++) acc += (double)a[i * K + k] * b[k * N + j];
            out[i * N + j] = (float)acc;
        }
}

// ---------------------------------------------------------------------------------------------------
// Backward references. Each overwrites its gradients (the op table composes the accumulate mode as
// prior + reference) and computes from the forward's inputs in double, straight from the definition.

void ref_unpatchify(float *imgs, const float *x, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P) {
    patch_move((float *)x, imgs, B, C, H, W, P, 0);
}

// patchify is a permutation: its backward moves each patch element back to its pixel.
void ref_patchify_backward(float *dimgs, const float *dout, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P) {
    ref_unpatchify(dimgs, dout, B, C, H, W, P);
}

void ref_unpatchify_backward(float *dx, const float *dimgs, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P) {
    ref_patchify(dx, dimgs, B, C, H, W, P);
}

void ref_gather_rows_backward(float *dx, const float *dout, const int32_t *ids, int64_t ids_bstride,
                              int64_t B, int64_t L, int64_t K, int64_t D) {
    memset(dx, 0, sizeof(float) * B * L * D);
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t d = 0; d < D; d++)
                dx[(b * L + ids[b * ids_bstride + k]) * D + d] += dout[(b * K + k) * D + d];
}

void ref_unshuffle_backward(float *dx, float *dmask_token, const float *dout, const int32_t *ids_restore,
                            int64_t B, int64_t S, int64_t L, int64_t K, int64_t D) {
    double *acc = calloc((size_t)D, sizeof(double));
    for (int64_t b = 0; b < B; b++) {
        for (int64_t s = 0; s < S; s++)
            for (int64_t d = 0; d < D; d++) dx[(b * (S + K) + s) * D + d] = dout[(b * (S + L) + s) * D + d];
        for (int64_t l = 0; l < L; l++) {
            int64_t r = ids_restore[b * L + l];
            for (int64_t d = 0; d < D; d++) {
                float g = dout[(b * (S + L) + S + l) * D + d];
                if (r < K) dx[(b * (S + K) + S + r) * D + d] = g; else acc[d] += g;
            }
        }
    }
    for (int64_t d = 0; d < D; d++) dmask_token[d] = (float)acc[d];
    free(acc);
}

// y = softmax(x): dx_i = Σ_j dy_j ∂y_j/∂x_i = y_i (dy_i − Σ_j dy_j y_j).
void ref_softmax_backward(float *dx, const float *dout, const float *x, int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++) {
        double lse = ref_lse(x + r * C, C), dot = 0;
        for (int64_t c = 0; c < C; c++) dot += dout[r * C + c] * exp((double)x[r * C + c] - lse);
        for (int64_t c = 0; c < C; c++) dx[r * C + c] = (float)(exp((double)x[r * C + c] - lse) * (dout[r * C + c] - dot));
    }
}

// y = x − lse(x): dx_i = dy_i − softmax_i Σ_j dy_j.
void ref_log_softmax_backward(float *dx, const float *dout, const float *x, int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++) {
        double lse = ref_lse(x + r * C, C), s = 0;
        for (int64_t c = 0; c < C; c++) s += dout[r * C + c];
        for (int64_t c = 0; c < C; c++) dx[r * C + c] = (float)(dout[r * C + c] - exp((double)x[r * C + c] - lse) * s);
    }
}

// loss_r = −Σ_c t_c (x_c − lse): ∂/∂x_c = softmax_c Σ t − t_c, ∂/∂t_c = −(x_c − lse).
void ref_cross_entropy_backward(float *dlogits, float *dtarget, const float *dloss, const float *logits,
                                const float *target, int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++) {
        double lse = ref_lse(logits + r * C, C), ts = 0;
        for (int64_t c = 0; c < C; c++) ts += target[r * C + c];
        for (int64_t c = 0; c < C; c++) {
            double x = logits[r * C + c];
            if (dlogits) dlogits[r * C + c] = (float)(dloss[r] * (exp(x - lse) * ts - target[r * C + c]));
            if (dtarget) dtarget[r * C + c] = (float)(-dloss[r] * (x - lse));
        }
    }
}

// Backward of normalize_groups: with x̂ = (x − m)/σ and g = dy·w,
// dx = (g − mean(g) − x̂ mean(g x̂))/σ; dw_channel += Σ dy x̂, db_channel += Σ dy.
static void normalize_groups_backward(float *dx, double *dw, double *db, const float *dout, const float *x,
                                      const float *w, int64_t groups, int64_t n, int64_t gs, int64_t es,
                                      int channel_is_group, float eps, const double *fixed_mean, const double *fixed_var) {
    for (int64_t g = 0; g < groups; g++) {
        double m = 0, v = 0;
        if (fixed_mean) { m = fixed_mean[g]; v = fixed_var[g]; } else {
            for (int64_t k = 0; k < n; k++) m += x[g * gs + k * es];
            m /= n;
            for (int64_t k = 0; k < n; k++) v += (x[g * gs + k * es] - m) * (x[g * gs + k * es] - m);
            v /= n;
        }
        double sd = sqrt(v + eps), mg = 0, mgx = 0;
        for (int64_t k = 0; k < n; k++) {
            int64_t i = g * gs + k * es, c = channel_is_group ? g : k;
            double xh = (x[i] - m) / sd, gg = dout[i] * (w ? w[c] : 1);
            mg += gg; mgx += gg * xh;
            if (dw) dw[c] += dout[i] * xh;
            if (db) db[c] += dout[i];
        }
        mg /= n; mgx /= n;
        for (int64_t k = 0; k < n; k++) {
            int64_t i = g * gs + k * es, c = channel_is_group ? g : k;
            double xh = (x[i] - m) / sd, gg = dout[i] * (w ? w[c] : 1);
            if (dx) dx[i] = (float)(fixed_mean ? gg / sd : (gg - mg - xh * mgx) / sd);
        }
    }
}

static void store_sums(float *dst, const double *src, int64_t n) {
    if (dst) for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i];
}

void ref_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                            int64_t R, int64_t C, float eps) {
    double *sw = calloc((size_t)C, sizeof(double)), *sb = calloc((size_t)C, sizeof(double));
    normalize_groups_backward(dx, sw, sb, dout, x, w, R, C, C, 1, 0, eps, NULL, NULL);
    store_sums(dw, sw, C); store_sums(db, sb, C);
    free(sw); free(sb);
}

void ref_batchnorm_eval(float *out, const float *x, const float *w, const float *b, const float *running_mean,
                        const float *running_var, int64_t R, int64_t C, float eps) {
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++)
            out[r * C + c] = (float)((x[r * C + c] - (double)running_mean[c]) / sqrt((double)running_var[c] + eps)
                                     * (w ? w[c] : 1) + (b ? b[c] : 0));
}

void ref_batchnorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                            const float *running_mean, const float *running_var, int64_t R, int64_t C, float eps,
                            int training) {
    double *sw = calloc((size_t)C, sizeof(double)), *sb = calloc((size_t)C, sizeof(double));
    double *fm = NULL, *fv = NULL;
    if (!training) {
        fm = malloc(sizeof(double) * C); fv = malloc(sizeof(double) * C);
        for (int64_t c = 0; c < C; c++) { fm[c] = running_mean[c]; fv[c] = running_var[c]; }
    }
    normalize_groups_backward(dx, sw, sb, dout, x, w, C, R, 1, C, 1, eps, fm, fv);
    store_sums(dw, sw, C); store_sums(db, sb, C);
    free(sw); free(sb); free(fm); free(fv);
}

// y = x/max(‖x‖, eps): dx = (dy − y⟨y, dy⟩)/‖x‖ above eps, dy/eps below.
void ref_l2norm_backward(float *dx, const float *dout, const float *x, int64_t R, int64_t C, float eps) {
    for (int64_t r = 0; r < R; r++) {
        double s = 0, dot = 0;
        for (int64_t c = 0; c < C; c++) s += (double)x[r * C + c] * x[r * C + c];
        double n = sqrt(s);
        if (n > eps) {
            for (int64_t c = 0; c < C; c++) dot += x[r * C + c] / n * dout[r * C + c];
            for (int64_t c = 0; c < C; c++) dx[r * C + c] = (float)((dout[r * C + c] - x[r * C + c] / n * dot) / n);
        } else {
            for (int64_t c = 0; c < C; c++) dx[r * C + c] = (float)(dout[r * C + c] / eps);
        }
    }
}

// y = (x − m)/s, s² = Σ(x − m)²/(C − 1) + eps: dx = (dy − mean(dy) − y ⟨dy, y⟩/(C − 1))/s.
void ref_standardize_backward(float *dx, const float *dout, const float *x, int64_t R, int64_t C, float eps) {
    for (int64_t r = 0; r < R; r++) {
        double m = 0, v = 0, sdy = 0, sdyy = 0;
        for (int64_t c = 0; c < C; c++) m += x[r * C + c];
        m /= C;
        for (int64_t c = 0; c < C; c++) v += (x[r * C + c] - m) * (x[r * C + c] - m);
        double s = sqrt(v / (C - 1) + eps);
        for (int64_t c = 0; c < C; c++) { sdy += dout[r * C + c]; sdyy += dout[r * C + c] * (x[r * C + c] - m) / s; }
        for (int64_t c = 0; c < C; c++)
            dx[r * C + c] = (float)((dout[r * C + c] - sdy / C - (x[r * C + c] - m) / s * sdyy / (C - 1)) / s);
    }
}

// gelu'(x) = Φ(x) + x φ(x).
void ref_gelu_backward(float *dx, const float *dout, const float *x, int64_t N) {
    for (int64_t i = 0; i < N; i++) {
        double v = x[i];
        dx[i] = (float)(dout[i] * (0.5 * (1 + erf(v / sqrt(2.0))) + v * exp(-0.5 * v * v) / sqrt(2 * 3.14159265358979323846)));
    }
}

void ref_bias_gelu(float *out, float *pre, const float *x, const float *bias, int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) pre[r * C + c] = x[r * C + c] + (bias ? bias[c] : 0);
    ref_gelu(out, pre, R * C);
}

void ref_bias_add(float *out, const float *x, const float *bias, int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) out[r * C + c] = x[r * C + c] + bias[c];
}

void ref_bias_add_backward(float *dx, float *dbias, const float *dout, int64_t R, int64_t C) {
    for (int64_t c = 0; c < C; c++) {
        double s = 0;
        for (int64_t r = 0; r < R; r++) {
            s += dout[r * C + c];
            if (dx) dx[r * C + c] = dout[r * C + c];
        }
        if (dbias) dbias[c] = (float)s;
    }
}

// Offsets of output element `i` in an operand with per-dim strides.
static int64_t strided_offset(int64_t i, const int64_t *shape, const int64_t *strides, int ndim) {
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; d--) { off += (i % shape[d]) * strides[d]; i /= shape[d]; }
    return off;
}

static int64_t shape_count(const int64_t *shape, int ndim) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return n;
}

static int64_t operand_count(const int64_t *shape, const int64_t *strides, int ndim) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) if (strides[d] != 0) n *= shape[d];
    return n;
}

void ref_binary(int op, float *out, const float *a, const int64_t *as, const float *b, const int64_t *bs,
                const int64_t *shape, int ndim) {
    for (int64_t i = 0; i < shape_count(shape, ndim); i++) {
        double x = a[strided_offset(i, shape, as, ndim)], y = b[strided_offset(i, shape, bs, ndim)];
        out[i] = (float)(op == 0 ? x + y : op == 1 ? x - y : op == 2 ? x * y : x / y);
    }
}

void ref_binary_backward(int op, float *da, float *db, const float *dout, const float *a, const int64_t *as,
                         const float *b, const int64_t *bs, const int64_t *shape, int ndim) {
    int64_t na = operand_count(shape, as, ndim), nb = operand_count(shape, bs, ndim);
    double *sa = calloc((size_t)na, sizeof(double)), *sb = calloc((size_t)nb, sizeof(double));
    for (int64_t i = 0; i < shape_count(shape, ndim); i++) {
        int64_t ia = strided_offset(i, shape, as, ndim), ib = strided_offset(i, shape, bs, ndim);
        double x = a[ia], y = b[ib], g = dout[i];
        sa[ia] += g * (op == 2 ? y : op == 3 ? 1 / y : 1);
        sb[ib] += g * (op == 0 ? 1 : op == 1 ? -1 : op == 2 ? x : -x / (y * y));
    }
    if (da) for (int64_t i = 0; i < na; i++) da[i] = (float)sa[i];
    if (db) for (int64_t i = 0; i < nb; i++) db[i] = (float)sb[i];
    free(sa); free(sb);
}

void ref_unary(int op, float *out, const float *x, int64_t N, float p) {
    for (int64_t i = 0; i < N; i++) {
        double v = x[i];
        out[i] = (float)(op == 0 ? exp(v) : op == 1 ? log(v) : op == 2 ? sqrt(v) : op == 3 ? pow(v, p)
                         : op == 4 ? p * v : v + p);
    }
}

void ref_unary_backward(int op, float *dx, const float *dout, const float *x, int64_t N, float p) {
    for (int64_t i = 0; i < N; i++) {
        double v = x[i];
        double d = op == 0 ? exp(v) : op == 1 ? 1 / v : op == 2 ? 0.5 / sqrt(v)
                 : op == 3 ? (p == 0 ? 0 : p * pow(v, p - 1)) : op == 4 ? p : 1;
        dx[i] = (float)(dout[i] * d);
    }
}

void ref_sum_axis(float *out, const float *x, int64_t O, int64_t A, int64_t I) {
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) {
            double s = 0;
            for (int64_t a = 0; a < A; a++) s += x[(o * A + a) * I + i];
            out[o * I + i] = (float)s;
        }
}

void ref_sum_axis_backward(float *dx, const float *dout, int64_t O, int64_t A, int64_t I) {
    for (int64_t o = 0; o < O; o++)
        for (int64_t a = 0; a < A; a++)
            for (int64_t i = 0; i < I; i++) dx[(o * A + a) * I + i] = dout[o * I + i];
}

double ref_sum_all(const float *x, int64_t N) {
    double s = 0;
    for (int64_t i = 0; i < N; i++) s += x[i];
    return s;
}

void ref_narrow(float *out, const float *x, int64_t O, int64_t A, int64_t start, int64_t length, int64_t I) {
    for (int64_t o = 0; o < O; o++)
        for (int64_t a = 0; a < length; a++)
            for (int64_t i = 0; i < I; i++) out[(o * length + a) * I + i] = x[(o * A + start + a) * I + i];
}

void ref_narrow_backward(float *dx, const float *dout, int64_t O, int64_t A, int64_t start, int64_t length, int64_t I) {
    for (int64_t o = 0; o < O; o++)
        for (int64_t a = 0; a < A; a++)
            for (int64_t i = 0; i < I; i++)
                dx[(o * A + a) * I + i] = a >= start && a < start + length ? dout[(o * length + a - start) * I + i] : 0;
}

void ref_transpose(float *out, const float *x, int64_t Bt, int64_t M, int64_t N) {
    for (int64_t b = 0; b < Bt; b++)
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) out[(b * N + n) * M + m] = x[(b * M + m) * N + n];
}

void ref_ema_update(float *teacher, const float *student, int64_t N, float momentum) {
    for (int64_t i = 0; i < N; i++) teacher[i] = (float)((double)momentum * teacher[i] + (1 - (double)momentum) * student[i]);
}

double ref_sum_squares(const float *g, int64_t N) {
    double s = 0;
    for (int64_t i = 0; i < N; i++) s += (double)g[i] * g[i];
    return s;
}

void ref_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *a, int64_t lda,
               const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)(ta ? a[k * lda + i] : a[i * lda + k]) * (tb ? b[j * ldb + k] : b[k * ldb + j]);
            c[i * ldc + j] = (float)(alpha * acc + (beta == 0 ? 0 : (double)beta * c[i * ldc + j]));
        }
}

// The bf16 product, written from its definition (Sources/CKernels/matmul.c, "bf16 products"), not from
// the kernels: operands rounded to bf16 (nearest even, fp32 denormals as zero, NaN quiet), per pair of k
// the odd product then the even one added in fp32 with a denormal flush, K in the kernels' blocks (all of
// K up to 1,024, else blocks of 256), each block's sum stored as alpha · sum + beta · C (one rounding:
// the kernels' fused multiply-add), later blocks with beta 1.
static float ref_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) == 0) u &= 0x80000000u;
    if ((u & 0x7fffffffu) > 0x7f800000u) u = (u | 0x00400000u) & 0xffff0000u;
    else u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}
static float ref_flush(float x) { return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x; }

void ref_sgemm_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *a, int64_t lda,
                    const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    const int64_t block = K <= 1024 ? K : 256;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float *out = &c[i * ldc + j];
            for (int64_t k0 = 0; k0 < K; k0 += block) {
                const int64_t k1 = k0 + block < K ? k0 + block : K;
                float acc = 0.0f;
                for (int64_t k = k0; k < k1; k += 2) {
                    for (int64_t kk = k + 1; kk >= k; kk--) {   // odd first, then even
                        const float x = kk < k1 ? ref_bf16(ta ? a[kk * lda + i] : a[i * lda + kk]) : 0.0f;
                        const float y = kk < k1 ? ref_bf16(tb ? b[j * ldb + kk] : b[kk * ldb + j]) : 0.0f;
                        volatile float product = x * y;   // exact; the sum below is its own rounding
                        acc = ref_flush(acc + product);
                    }
                }
                const float scale = k0 == 0 ? beta : 1.0f;
                *out = scale == 0.0f ? alpha * acc : fmaf(scale, *out, alpha * acc);
            }
        }
}
