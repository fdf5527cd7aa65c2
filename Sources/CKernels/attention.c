// Fused multi-head attention, forward and backward (flash-attention style on CPU: the probability
// matrix is recomputed in the backward from one log-sum-exp per row instead of being stored).
#include "ck_internal.h"
#include "ck_attention.h"

CK_CLONES static float dot(const float *restrict a, const float *restrict b, int64_t D) {
    float s = 0.0f;
    #pragma omp simd reduction(+:s)
    for (int64_t d = 0; d < D; d++) s += a[d] * b[d];
    return s;
}

CK_CLONES static void axpy(float *restrict y, float a, const float *restrict x, int64_t D) {
    #pragma omp simd
    for (int64_t d = 0; d < D; d++) y[d] += a * x[d];
}

// Pad each thread's block to a cache line.
int64_t ck_attention_scratch_floats(int64_t N, int64_t D) {
    int64_t n = 2 * N + D;
    return (n + CK_CACHE_LINE_F32 - 1) / CK_CACHE_LINE_F32 * CK_CACHE_LINE_F32;
}

static inline int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

void ck_attention_forward(float *out, float *lse, const float *qkv, float *scratch,
                          int64_t B, int64_t N, int64_t H, int64_t D, float scale) {
    const int64_t ld = 3 * H * D;              // row stride of q, k and v inside qkv
    const int64_t per_thread = ck_attention_scratch_floats(N, D);
    #pragma omp parallel for schedule(static) if (B * H * N * N * D >= CK_PAR_MIN)
    for (int64_t bh = 0; bh < B * H; bh++) {
        const int64_t b = bh / H, h = bh % H;
        const float *q = qkv + b * N * ld + h * D, *k = q + H * D, *v = q + 2 * H * D;
        float *s = scratch + thread_id() * per_thread;       // [N] scores of one query row
        for (int64_t i = 0; i < N; i++) {
            // s_j = scale · q_i·k_j ; m = max_j s_j
            float m = -INFINITY;
            for (int64_t j = 0; j < N; j++) {
                s[j] = scale * dot(q + i * ld, k + j * ld, D);
                m = s[j] > m ? s[j] : m;
            }
            // p_j = exp(s_j − m), l = Σ p_j ; out_i = Σ p_j v_j / l
            float l = 0.0f;
            for (int64_t j = 0; j < N; j++) { s[j] = expf(s[j] - m); l += s[j]; }
            float *o = out + (b * N + i) * H * D + h * D;
            for (int64_t d = 0; d < D; d++) o[d] = 0.0f;
            const float inv = 1.0f / l;
            for (int64_t j = 0; j < N; j++) axpy(o, s[j] * inv, v + j * ld, D);
            lse[bh * N + i] = m + logf(l);
        }
    }
}

void ck_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                           const float *lse, float *scratch, int64_t B, int64_t N, int64_t H, int64_t D,
                           float scale) {
    const int64_t ld = 3 * H * D;
    const int64_t per_thread = ck_attention_scratch_floats(N, D);
    // Each (b, h) owns its own slices of dq, dk and dv, so threads never write the same element.
    #pragma omp parallel for schedule(static) if (B * H * N * N * D >= CK_PAR_MIN)
    for (int64_t bh = 0; bh < B * H; bh++) {
        const int64_t b = bh / H, h = bh % H;
        const float *q = qkv + b * N * ld + h * D, *k = q + H * D, *v = q + 2 * H * D;
        float *dq = dqkv + b * N * ld + h * D, *dk = dq + H * D, *dv = dq + 2 * H * D;
        float *p = scratch + thread_id() * per_thread;   // [N] probabilities of row i
        float *ds = p + N;                                // [N] score gradients of row i
        for (int64_t i = 0; i < N; i++) {
            const float *qi = q + i * ld;
            const float *oi = out + (b * N + i) * H * D + h * D;
            const float *gi = dout + (b * N + i) * H * D + h * D;
            const float li = lse[bh * N + i];
            // Di = rowsum(dO ⊙ O) = Σ_j P_ij dP_ij
            const float Di = dot(gi, oi, D);
            for (int64_t j = 0; j < N; j++) {
                // P_ij = exp(scale · q_i·k_j − lse_i)      (forward: s_ij, then softmax)
                p[j] = expf(scale * dot(qi, k + j * ld, D) - li);
                // dP_ij = dO_i·v_j ;  dS_ij = P_ij (dP_ij − Di)
                ds[j] = p[j] * (dot(gi, v + j * ld, D) - Di);
            }
            for (int64_t j = 0; j < N; j++) {
                axpy(dv + j * ld, p[j], gi, D);               // dV_j += P_ij dO_i
                axpy(dk + j * ld, scale * ds[j], qi, D);      // dK_j += scale dS_ij q_i
                axpy(dq + i * ld, scale * ds[j], k + j * ld, D);  // dQ_i += scale dS_ij k_j
            }
        }
    }
}
