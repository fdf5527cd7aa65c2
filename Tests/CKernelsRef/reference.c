#include "CKernelsRef.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void ref_patchify(float *out, const float *imgs, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P) {
    int64_t gh = H / P, gw = W / P, F = P * P * C;
    for (int64_t b = 0; b < B; b++)
        for (int64_t r = 0; r < gh; r++)
            for (int64_t c = 0; c < gw; c++)
                for (int64_t i = 0; i < P; i++)
                    for (int64_t j = 0; j < P; j++)
                        for (int64_t ch = 0; ch < C; ch++)
                            out[(b * gh * gw + r * gw + c) * F + (i * P + j) * C + ch] =
                                imgs[((b * C + ch) * H + r * P + i) * W + c * P + j];
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

void ref_attention_forward(float *out, const float *qkv, int64_t B, int64_t N, int64_t H, int64_t D, float scale) {
    double *p = malloc(sizeof(double) * N);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < N; i++) {
                double m = -INFINITY, s = 0;
                for (int64_t j = 0; j < N; j++) {
                    double acc = 0;
                    for (int64_t d = 0; d < D; d++) acc += (double)QKV(b, i, 0, h, d) * QKV(b, j, 1, h, d);
                    p[j] = acc * scale;
                    if (p[j] > m) m = p[j];
                }
                for (int64_t j = 0; j < N; j++) { p[j] = exp(p[j] - m); s += p[j]; }
                for (int64_t d = 0; d < D; d++) {
                    double acc = 0;
                    for (int64_t j = 0; j < N; j++) acc += p[j] / s * QKV(b, j, 2, h, d);
                    out[(b * N + i) * H * D + h * D + d] = (float)acc;
                }
            }
    free(p);
}

void ref_attention_backward(float *dqkv, const float *dout, const float *qkv, int64_t B, int64_t N, int64_t H,
                            int64_t D, float scale) {
    double *P = malloc(sizeof(double) * N * N), *dP = malloc(sizeof(double) * N * N);
    memset(dqkv, 0, sizeof(float) * B * N * 3 * H * D);
#define DQKV(b, n, t, h, d) dqkv[((((b) * N + (n)) * 3 + (t)) * H + (h)) * D + (d)]
#define DO(b, n, h, d) dout[((b) * N + (n)) * H * D + (h) * D + (d)]
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            for (int64_t i = 0; i < N; i++) {
                double m = -INFINITY, s = 0;
                for (int64_t j = 0; j < N; j++) {
                    double acc = 0;
                    for (int64_t d = 0; d < D; d++) acc += (double)QKV(b, i, 0, h, d) * QKV(b, j, 1, h, d);
                    P[i * N + j] = acc * scale; if (P[i * N + j] > m) m = P[i * N + j];
                }
                for (int64_t j = 0; j < N; j++) { P[i * N + j] = exp(P[i * N + j] - m); s += P[i * N + j]; }
                for (int64_t j = 0; j < N; j++) P[i * N + j] /= s;
            }
            // dV = Pᵀ dO ; dP = dO Vᵀ ; dS = P ⊙ (dP − rowsum(P ⊙ dP)) ; dQ = scale dS K ; dK = scale dSᵀ Q
            for (int64_t j = 0; j < N; j++)
                for (int64_t d = 0; d < D; d++) {
                    double acc = 0;
                    for (int64_t i = 0; i < N; i++) acc += P[i * N + j] * DO(b, i, h, d);
                    DQKV(b, j, 2, h, d) = (float)acc;
                }
            for (int64_t i = 0; i < N; i++) {
                double rs = 0;
                for (int64_t j = 0; j < N; j++) {
                    double acc = 0;
                    for (int64_t d = 0; d < D; d++) acc += (double)DO(b, i, h, d) * QKV(b, j, 2, h, d);
                    dP[i * N + j] = acc; rs += P[i * N + j] * acc;
                }
                for (int64_t j = 0; j < N; j++) dP[i * N + j] = P[i * N + j] * (dP[i * N + j] - rs);
            }
            for (int64_t i = 0; i < N; i++)
                for (int64_t d = 0; d < D; d++) {
                    double aq = 0, ak = 0;
                    for (int64_t j = 0; j < N; j++) {
                        aq += dP[i * N + j] * QKV(b, j, 1, h, d);
                        ak += dP[j * N + i] * QKV(b, j, 0, h, d);
                    }
                    DQKV(b, i, 0, h, d) = (float)(scale * aq);
                    DQKV(b, i, 1, h, d) = (float)(scale * ak);
                }
        }
    free(P); free(dP);
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
