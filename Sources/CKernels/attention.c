// Fused multi-head attention, forward and backward (flash-attention style on CPU: the probability
// matrix is recomputed in the backward from one log-sum-exp per row instead of being stored).
#include "ck_internal.h"
#include "ck_attention.h"

static inline float dot(const float *restrict a, const float *restrict b, int64_t D) {
    float s = 0.0f;
    #pragma omp simd reduction(+:s)
    for (int64_t d = 0; d < D; d++) s += a[d] * b[d];
    return s;
}

static inline void axpy(float *restrict y, float a, const float *restrict x, int64_t D) {
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

// One head: q, k, v are [N, D] with row stride ld (inside the packed qkv); o is [N, D] with row
// stride ldo (inside out); lse is [N]; s is [N] scratch. Compiled per ISA (CK_CLONES) with the
// dot/axpy helpers inlined.
CK_CLONES static void head_forward(float *restrict o, float *restrict lse, const float *q, const float *k,
                                   const float *v, int64_t ld, int64_t ldo, float *restrict s,
                                   int64_t N, int64_t D, float scale) {
    for (int64_t i = 0; i < N; i++) {
        // s_j = scale · q_i·k_j ; m = max_j s_j
        const float *qi = q + i * ld;
        float m = -INFINITY;
        for (int64_t j = 0; j < N; j++) {
            s[j] = scale * dot(qi, k + j * ld, D);
            m = s[j] > m ? s[j] : m;
        }
        // p_j = exp(s_j − m), l = Σ p_j ; out_i = Σ p_j v_j / l
        float l = 0.0f;
        #pragma omp simd reduction(+:l)
        for (int64_t j = 0; j < N; j++) { s[j] = ck_exp(s[j] - m); l += s[j]; }
        float *oi = o + i * ldo;
        for (int64_t d = 0; d < D; d++) oi[d] = 0.0f;
        const float inv = 1.0f / l;
        for (int64_t j = 0; j < N; j++) axpy(oi, s[j] * inv, v + j * ld, D);
        lse[i] = m + logf(l);
    }
}

void ck_attention_forward(float *out, float *lse, const float *qkv, float *scratch,
                          int64_t B, int64_t N, int64_t H, int64_t D, float scale) {
    const int64_t ld = 3 * H * D;              // row stride of q, k and v inside qkv
    const int64_t per_thread = ck_attention_scratch_floats(N, D);
    #pragma omp parallel for schedule(static) if (B * H * N * N * D >= CK_PAR_MIN)
    for (int64_t bh = 0; bh < B * H; bh++) {
        const int64_t b = bh / H, h = bh % H;
        const float *q = qkv + b * N * ld + h * D;
        head_forward(out + b * N * H * D + h * D, lse + bh * N, q, q + H * D, q + 2 * H * D, ld, H * D,
                     scratch + thread_id() * per_thread, N, D, scale);
    }
}

// One head's backward; dq, dk, dv have row stride ld (inside dqkv), o and dout row stride ldo.
CK_CLONES static void head_backward(float *dq, float *dk, float *dv, const float *q, const float *k,
                                    const float *v, const float *o, const float *dout, const float *lse,
                                    int64_t ld, int64_t ldo, float *restrict p, float *restrict ds,
                                    int64_t N, int64_t D, float scale) {
    for (int64_t i = 0; i < N; i++) {
        const float *qi = q + i * ld, *oi = o + i * ldo, *gi = dout + i * ldo;
        const float li = lse[i];
        // Di = rowsum(dO ⊙ O) = Σ_j P_ij dP_ij
        const float Di = dot(gi, oi, D);
        for (int64_t j = 0; j < N; j++) {
            p[j] = scale * dot(qi, k + j * ld, D) - li;        // forward: s_ij, then softmax
            ds[j] = dot(gi, v + j * ld, D);                    // dP_ij = dO_i·v_j
        }
        #pragma omp simd
        for (int64_t j = 0; j < N; j++) {
            p[j] = ck_exp(p[j]);                               // P_ij = exp(scale · q_i·k_j − lse_i)
            ds[j] = p[j] * (ds[j] - Di);                       // dS_ij = P_ij (dP_ij − Di)
        }
        float *dqi = dq + i * ld;
        for (int64_t j = 0; j < N; j++) {
            axpy(dv + j * ld, p[j], gi, D);                    // dV_j += P_ij dO_i
            axpy(dk + j * ld, scale * ds[j], qi, D);           // dK_j += scale dS_ij q_i
            axpy(dqi, scale * ds[j], k + j * ld, D);           // dQ_i += scale dS_ij k_j
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
        const float *q = qkv + b * N * ld + h * D;
        float *dq = dqkv + b * N * ld + h * D;
        float *p = scratch + thread_id() * per_thread;
        head_backward(dq, dq + H * D, dq + 2 * H * D, q, q + H * D, q + 2 * H * D,
                      out + b * N * H * D + h * D, dout + b * N * H * D + h * D, lse + bh * N,
                      ld, H * D, p, p + N, N, D, scale);
    }
}
