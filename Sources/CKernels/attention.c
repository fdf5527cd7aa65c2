// Fused multi-head attention, forward and backward (flash-attention style on CPU: the probability
// matrix is recomputed in the backward from one log-sum-exp per row instead of being stored).
#include "ck_internal.h"
#include "ck_attention.h"
#include "ck_gemm.h"

static inline float dot(const float *restrict a, const float *restrict b, int64_t D) {
    float s = 0.0f;
    #pragma omp simd reduction(+:s)
    for (int64_t d = 0; d < D; d++) s += a[d] * b[d];
    return s;
}

// Query rows are processed in blocks of RB: each key/value row loaded from memory then serves RB
// queries, and in the backward each dK_j / dV_j row is read-modified-written once per block instead
// of once per query row.
#define RB 4

// out[r] = Σ_d a_r[d]·x[d] for the RB rows a_0..a_3 (a partial block points its missing rows at a
// row of zeros).
static inline void dot_rows(float out[RB], const float *const a[RB], const float *restrict x, int64_t D) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
    #pragma omp simd reduction(+:s0, s1, s2, s3)
    for (int64_t d = 0; d < D; d++) { float xd = x[d]; s0 += a0[d] * xd; s1 += a1[d] * xd; s2 += a2[d] * xd; s3 += a3[d] * xd; }
    out[0] = s0; out[1] = s1; out[2] = s2; out[3] = s3;
}

// y[d] += Σ_r c_r · a_r[d]
static inline void accumulate_rows(float *restrict y, const float c[RB], const float *const a[RB], int64_t D) {
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
    const float c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
    #pragma omp simd
    for (int64_t d = 0; d < D; d++) y[d] += c0 * a0[d] + c1 * a1[d] + c2 * a2[d] + c3 * a3[d];
}

// y_r[d] += c_r · x[d] for the RB destination rows.
static inline void scatter_rows(float *const y[RB], const float c[RB], const float *restrict x, int64_t D) {
    float *y0 = y[0], *y1 = y[1], *y2 = y[2], *y3 = y[3];
    const float c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
    #pragma omp simd
    for (int64_t d = 0; d < D; d++) { float xd = x[d]; y0[d] += c0 * xd; y1[d] += c1 * xd; y2[d] += c2 * xd; y3[d] += c3 * xd; }
}

// Pad each thread's block to a cache line: forward RB·N scores; backward RB·N probabilities,
// RB·N score gradients, and RB·D zeros / dummy rows for partial blocks.
int64_t ck_attention_scratch_floats(int64_t N, int64_t D) {
    int64_t n = 2 * RB * N + 2 * RB * D;
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
// stride ldo (inside out); lse is [N]. Compiled per ISA (CK_CLONES) with the helpers inlined.
// A partial last block points its missing rows at a zero row (inputs) or a dummy row (outputs).
CK_CLONES static void head_forward(float *o, float *restrict lse, const float *q, const float *k,
                                   const float *v, int64_t ld, int64_t ldo, float *restrict scratch,
                                   int64_t N, int64_t D, float scale) {
    float *s = scratch;                       // [RB, N] scores, then probabilities
    float *zero = scratch + RB * N;           // [D] zeros
    float *dummy = zero + D;                  // [D] sink for missing rows
    for (int64_t d = 0; d < D; d++) zero[d] = 0.0f;
    for (int64_t i0 = 0; i0 < N; i0 += RB) {
        const int64_t rb = ck_min64(RB, N - i0);
        const float *qr[RB];
        float *orow[RB];
        for (int r = 0; r < RB; r++) {
            qr[r] = r < rb ? q + (i0 + r) * ld : zero;
            orow[r] = r < rb ? o + (i0 + r) * ldo : dummy;
        }
        // s_rj = scale · q_r·k_j
        for (int64_t j = 0; j < N; j++) {
            float t[RB];
            dot_rows(t, qr, k + j * ld, D);
            for (int r = 0; r < RB; r++) s[r * N + j] = scale * t[r];
        }
        // p_rj = exp(s_rj − m_r) / l_r,  lse_r = m_r + log l_r
        for (int r = 0; r < rb; r++) {
            float *sr = s + r * N, m = -INFINITY, l = 0.0f;
            for (int64_t j = 0; j < N; j++) m = sr[j] > m ? sr[j] : m;
            #pragma omp simd reduction(+:l)
            for (int64_t j = 0; j < N; j++) { sr[j] = ck_exp(sr[j] - m); l += sr[j]; }
            const float inv = 1.0f / l;
            #pragma omp simd
            for (int64_t j = 0; j < N; j++) sr[j] *= inv;
            lse[i0 + r] = m + logf(l);
        }
        for (int r = rb; r < RB; r++) for (int64_t j = 0; j < N; j++) s[r * N + j] = 0.0f;
        // out_r = Σ_j p_rj v_j
        for (int r = 0; r < RB; r++) for (int64_t d = 0; d < D; d++) orow[r][d] = 0.0f;
        for (int64_t j = 0; j < N; j++) {
            const float c[RB] = { s[j], s[N + j], s[2 * N + j], s[3 * N + j] };
            scatter_rows(orow, c, v + j * ld, D);
        }
    }
}

void ck_attention_forward(float *out, float *lse, const float *qkv, float *scratch,
                          int64_t B, int64_t N, int64_t H, int64_t D, float scale) {
    const int64_t ld = 3 * H * D;              // row stride of q, k and v inside qkv
    const int64_t per_thread = ck_attention_scratch_floats(N, D);
    ck_flop_counter_add(4 * (uint64_t)(B * H * N) * (uint64_t)(N * D));
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
                                    int64_t ld, int64_t ldo, float *restrict scratch,
                                    int64_t N, int64_t D, float scale) {
    float *p = scratch, *ds = scratch + RB * N;      // [RB, N] each
    float *zero = ds + RB * N, *dummy = zero + D;
    for (int64_t d = 0; d < D; d++) zero[d] = 0.0f;
    for (int64_t i0 = 0; i0 < N; i0 += RB) {
        const int64_t rb = ck_min64(RB, N - i0);
        const float *qr[RB], *gr[RB];
        float *dqr[RB], Di[RB], li[RB];
        for (int r = 0; r < RB; r++) {
            const int in = r < rb;
            qr[r] = in ? q + (i0 + r) * ld : zero;
            gr[r] = in ? dout + (i0 + r) * ldo : zero;
            dqr[r] = in ? dq + (i0 + r) * ld : dummy;
            // Di = rowsum(dO ⊙ O) = Σ_j P_ij dP_ij
            Di[r] = in ? dot(gr[r], o + (i0 + r) * ldo, D) : 0.0f;
            li[r] = in ? lse[i0 + r] : 0.0f;
        }
        for (int64_t j = 0; j < N; j++) {
            float sc[RB], dp[RB];
            dot_rows(sc, qr, k + j * ld, D);         // forward scores s_rj / scale
            dot_rows(dp, gr, v + j * ld, D);         // dP_rj = dO_r·v_j
            for (int r = 0; r < RB; r++) { p[r * N + j] = scale * sc[r] - li[r]; ds[r * N + j] = dp[r]; }
        }
        for (int r = 0; r < RB; r++) {
            float *pr = p + r * N, *dsr = ds + r * N;
            const float Dr = Di[r], keep = r < rb ? 1.0f : 0.0f;
            #pragma omp simd
            for (int64_t j = 0; j < N; j++) {
                pr[j] = keep * ck_exp(pr[j]);             // P_rj = exp(scale · q_r·k_j − lse_r)
                dsr[j] = scale * pr[j] * (dsr[j] - Dr);   // scale · dS_rj, dS = P ⊙ (dP − Di)
            }
        }
        for (int64_t j = 0; j < N; j++) {
            const float pj[RB] = { p[j], p[N + j], p[2 * N + j], p[3 * N + j] };
            const float sj[RB] = { ds[j], ds[N + j], ds[2 * N + j], ds[3 * N + j] };
            accumulate_rows(dv + j * ld, pj, gr, D);      // dV_j += Σ_r P_rj dO_r
            accumulate_rows(dk + j * ld, sj, qr, D);      // dK_j += scale Σ_r dS_rj q_r
            scatter_rows(dqr, sj, k + j * ld, D);         // dQ_r += scale dS_rj k_j
        }
    }
}

void ck_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                           const float *lse, float *scratch, int64_t B, int64_t N, int64_t H, int64_t D,
                           float scale) {
    const int64_t ld = 3 * H * D;
    const int64_t per_thread = ck_attention_scratch_floats(N, D);
    ck_flop_counter_add(10 * (uint64_t)(B * H * N) * (uint64_t)(N * D));
    // Each (b, h) owns its own slices of dq, dk and dv, so threads never write the same element.
    #pragma omp parallel for schedule(static) if (B * H * N * N * D >= CK_PAR_MIN)
    for (int64_t bh = 0; bh < B * H; bh++) {
        const int64_t b = bh / H, h = bh % H;
        const float *q = qkv + b * N * ld + h * D;
        float *dq = dqkv + b * N * ld + h * D;
        head_backward(dq, dq + H * D, dq + 2 * H * D, q, q + H * D, q + 2 * H * D,
                      out + b * N * H * D + h * D, dout + b * N * H * D + h * D, lse + bh * N,
                      ld, H * D, scratch + thread_id() * per_thread, N, D, scale);
    }
}
