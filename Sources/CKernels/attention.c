// Fused multi-head attention, forward and backward (flash-attention style on CPU: the probability
// matrix is recomputed in the backward from one log-sum-exp per row instead of being stored).
//
// Each (b, h) is one work item. Its K, V (and in the backward Q, dO) are first packed into the
// thread's scratch, zero-padded to whole vectors, so that every product below is a small register-
// blocked GEMM: a block of MR query rows is held in vector registers while keys stream past. Three
// micro-kernels cover all seven products of the forward and backward:
//   rows_x_cols   C[MR, Np]   = α · A[MR, D] · Bᵀ   (B packed transposed: Bt [D, Np])  S, dP
//   probs_x_rows  C[MR, D]    = P[MR, N] · B[N, D]   (P by rows or transposed)        O, dQ
//   probsT_x_rows C[N, D]    += P[R, N]ᵀ · A[R, D]                                   dV, dK
// With D a whole number of vectors the fp32 forward takes a transposed path instead
// (head_forward_transposed): blocks of 16 queries, scores as Sᵀ [keys, queries], softmax down the
// rows, and probs_x_rows for every product but the scores; so does the backward of short sequences
// (N ≤ 16, head_backward_short).
// Vectors are clang/GCC vector extensions of 16 floats, so the same source becomes AVX-512, two
// AVX2 halves or four SSE quarters under CK_CLONES' runtime dispatch.
// With the products in bf16 (ck_gemm_set_precision), the long path runs head_forward_bf16 and
// head_backward_bf16 instead: the same blocking, three bf16 micro-kernels (see "bf16 products" below).
#include "ck_internal.h"
#include "ck_attention.h"
#include "ck_gemm.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define MR 6                // query rows per register block
#define QB 48               // query rows per backward block (a multiple of MR)
#define MAXNV 4             // vectors per row chunk of the head dim (64 floats)
static inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Query rows go in register blocks of at most MR rows, balanced: N = 13 is blocked 5 + 4 + 4, not
// 6 + 6 + 1 with five padding rows. The micro-kernels take the block's row count mr as an argument
// that ROW_BLOCK turns into a compile-time constant, so each size gets its own unrolled register block.
static inline int64_t row_block_size(int64_t n, int64_t k) {
    const int64_t nb = (n + MR - 1) / MR;
    return n / nb + (k < n % nb);
}
#define ROW_BLOCK(rb, CALL) switch (rb) { case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break; \
                                          case 4: CALL(4); break; case 5: CALL(5); break; default: CALL(MR); break; }

// C[r, j] = alpha · Σ_{d<D} a_r[d] · bt[d·Np + j] for r < mr ≤ MR, j < Np (Np a multiple of CK_VW).
// a_r are mr row pointers; C has row stride ldc.
CK_ALWAYS_INLINE void rows_x_cols(float *c, int64_t ldc, const float *const a[MR], const float *bt,
                                  int64_t Np, int64_t D, float alpha, const int mr) {
    int64_t j = 0;
    for (; j + 2 * CK_VW <= Np; j += 2 * CK_VW) {
        ck_vf16 acc[MR][2] = {{0}};
        for (int64_t d = 0; d < D; d++) {
            const ck_vf16 b0 = ck_vload(bt + d * Np + j), b1 = ck_vload(bt + d * Np + j + CK_VW);
            for (int r = 0; r < mr; r++) { const float x = a[r][d]; acc[r][0] += x * b0; acc[r][1] += x * b1; }
        }
        for (int r = 0; r < mr; r++) { ck_vstore(c + r * ldc + j, alpha * acc[r][0]); ck_vstore(c + r * ldc + j + CK_VW, alpha * acc[r][1]); }
    }
    if (j < Np) {   // one vector of columns left: even and odd d in separate accumulators, so that
                    // 2·mr independent FMA chains cover the FMA latency
        ck_vf16 acc[2][MR] = {{0}};
        int64_t d = 0;
        for (; d + 2 <= D; d += 2) {
            const ck_vf16 b0 = ck_vload(bt + d * Np + j), b1 = ck_vload(bt + (d + 1) * Np + j);
            for (int r = 0; r < mr; r++) { acc[0][r] += a[r][d] * b0; acc[1][r] += a[r][d + 1] * b1; }
        }
        if (d < D) {
            const ck_vf16 b0 = ck_vload(bt + d * Np + j);
            for (int r = 0; r < mr; r++) acc[0][r] += a[r][d] * b0;
        }
        for (int r = 0; r < mr; r++) ck_vstore(c + r * ldc + j, alpha * (acc[0][r] + acc[1][r]));
    }
}

// acc[r][v] = Σ_{j<N} p[r·ldp + j·ldj] · b[j·ldb + v·CK_VW ...] for r < mr and NV vectors of columns
// (ldj = 1 for P stored by rows, ldp = 1 for P stored transposed).
CK_ALWAYS_INLINE void probs_x_rows_nv(ck_vf16 acc[MR][MAXNV], const float *p, int64_t ldp, int64_t ldj,
                                      const float *b, int64_t ldb, int64_t N, const int NV, const int mr) {
    for (int r = 0; r < mr; r++) for (int v = 0; v < NV; v++) acc[r][v] = (ck_vf16){0};
    for (int64_t j = 0; j < N; j++) {
        ck_vf16 bv[MAXNV];
        for (int v = 0; v < NV; v++) bv[v] = ck_vload(b + j * ldb + v * CK_VW);
        for (int r = 0; r < mr; r++) {
            const float x = p[r * ldp + j * ldj];
            for (int v = 0; v < NV; v++) acc[r][v] += x * bv[v];
        }
    }
}

// o[0..n) (=|+=) x's first n lanes (all 16 when n ≥ 16): a row's last vector may be partial.
CK_ALWAYS_INLINE void store_part(float *o, ck_vf16 x, int64_t n, int accumulate) {
    if (n >= CK_VW) { ck_vstore(o, accumulate ? ck_vload(o) + x : x); return; }
    float t[CK_VW];
    ck_vstore(t, x);
    for (int64_t d = 0; d < n; d++) o[d] = accumulate ? o[d] + t[d] : t[d];
}

// out_r[0..D) (=|+=) Σ_j p[r·ldp + j·ldj] · b[j, 0..D) for r < mr ≤ MR; b has rows of whole vectors
// (packed to Dp, or read in place when D = Dp).
CK_ALWAYS_INLINE void probs_x_rows(float *const out[MR], int accumulate, const float *p, int64_t ldp, int64_t ldj,
                                   const float *b, int64_t ldb, int64_t N, int64_t D, const int mr) {
    for (int64_t d0 = 0; d0 < D; d0 += MAXNV * CK_VW) {
        const int64_t width = ck_min64(MAXNV * CK_VW, D - d0);
        ck_vf16 acc[MR][MAXNV];
        switch ((width + CK_VW - 1) / CK_VW) {
            case 4: probs_x_rows_nv(acc, p, ldp, ldj, b + d0, ldb, N, 4, mr); break;
            case 3: probs_x_rows_nv(acc, p, ldp, ldj, b + d0, ldb, N, 3, mr); break;
            case 2: probs_x_rows_nv(acc, p, ldp, ldj, b + d0, ldb, N, 2, mr); break;
            default: probs_x_rows_nv(acc, p, ldp, ldj, b + d0, ldb, N, 1, mr); break;
        }
        for (int r = 0; r < mr; r++)
            for (int64_t v = 0; v * CK_VW < width; v++) store_part(out[r] + d0 + v * CK_VW, acc[r][v], width - v * CK_VW, accumulate);
    }
}

// y[j·Dp + v·CK_VW ...] += Σ_{r<R} p[r·ldp + j] · a[r·lda + v·CK_VW ...] for four columns j at a time.
// p has zero columns from N up to the next multiple of CK_VW, so j + 3 < Np is always readable and
// y has Np rows.
CK_ALWAYS_INLINE void probsT_x_rows_nv(float *y, int overwrite, const float *p, int64_t ldp, const float *a,
                                       int64_t lda, int64_t Dp, int64_t R, int64_t N, const int NV) {
    for (int64_t j = 0; j < N; j += 4) {
        ck_vf16 acc[4][MAXNV];
        for (int c = 0; c < 4; c++) for (int v = 0; v < NV; v++) acc[c][v] = (ck_vf16){0};
        for (int64_t r = 0; r < R; r++) {
            ck_vf16 av[MAXNV];
            for (int v = 0; v < NV; v++) av[v] = ck_vload(a + r * lda + v * CK_VW);
            const float *pr = p + r * ldp + j;
            for (int c = 0; c < 4; c++) { const float x = pr[c]; for (int v = 0; v < NV; v++) acc[c][v] += x * av[v]; }
        }
        for (int c = 0; c < 4; c++)
            for (int v = 0; v < NV; v++) {
                float *yp = y + (j + c) * Dp + v * CK_VW;
                ck_vstore(yp, overwrite ? acc[c][v] : ck_vload(yp) + acc[c][v]);
            }
    }
}

// overwrite = 1 stores the sums instead of adding them (the first query block), so y needs no zeroing.
CK_ALWAYS_INLINE void probsT_x_rows(float *y, int overwrite, const float *p, int64_t ldp, const float *a,
                                    int64_t lda, int64_t Dp, int64_t R, int64_t N) {
    for (int64_t d0 = 0; d0 < Dp; d0 += MAXNV * CK_VW) {
        switch ((ck_min64(MAXNV * CK_VW, Dp - d0)) / CK_VW) {
            case 4: probsT_x_rows_nv(y + d0, overwrite, p, ldp, a + d0, lda, Dp, R, N, 4); break;
            case 3: probsT_x_rows_nv(y + d0, overwrite, p, ldp, a + d0, lda, Dp, R, N, 3); break;
            case 2: probsT_x_rows_nv(y + d0, overwrite, p, ldp, a + d0, lda, Dp, R, N, 2); break;
            default: probsT_x_rows_nv(y + d0, overwrite, p, ldp, a + d0, lda, Dp, R, N, 1); break;
        }
    }
}

// For loops over Np (a multiple of CK_VW) floats: one vector per iteration, no unrolling, so that short
// rows (N = 13 → Np = 16) run in the vector body rather than in a scalar remainder loop.
#define CK_WHOLE_VECTORS _Pragma("clang loop vectorize_width(16) interleave_count(1)")

// dst[j·Dp + d] = src[j·ld + d] for j < rows, zero for D ≤ d < Dp. Column chunks outside, rows
// inside: a row-by-row copy loop is turned into one memcpy call per row by the compiler (7% of the
// attention time at N = 13).
CK_ALWAYS_INLINE void pack_rows(float *restrict dst, const float *restrict src, int64_t ld, int64_t rows,
                                int64_t D, int64_t Dp) {
    int64_t d = 0;
    for (; d + CK_VW <= D; d += CK_VW)
        for (int64_t j = 0; j < rows; j++) ck_vstore(dst + j * Dp + d, ck_vload(src + j * ld + d));
    if (d < Dp)
        for (int64_t j = 0; j < rows; j++)
            for (int64_t c = d; c < Dp; c++) dst[j * Dp + c] = c < D ? src[j * ld + c] : 0.0f;
}

// dst[j·ld + d] (+)= src[j·Dp + d] for j < rows, d < D: pack_rows' inverse, in the same loop order.
CK_ALWAYS_INLINE void unpack_rows(float *restrict dst, int64_t ld, const float *restrict src, int64_t Dp,
                                  int64_t rows, int64_t D, int accumulate) {
    int64_t d = 0;
    for (; d + CK_VW <= D; d += CK_VW)
        for (int64_t j = 0; j < rows; j++) {
            const ck_vf16 x = ck_vload(src + j * Dp + d);
            ck_vstore(dst + j * ld + d, accumulate ? ck_vload(dst + j * ld + d) + x : x);
        }
    for (int64_t j = 0; j < rows && d < D; j++)
        for (int64_t c = d; c < D; c++) dst[j * ld + c] = accumulate ? dst[j * ld + c] + src[j * Dp + c] : src[j * Dp + c];
}

// 0 for the columns j < N of a row's last vector (Np columns in all), −inf for the padding j ≥ N.
// Added to the scores, it makes exp give exactly 0 on the padding in one vector operation (scalar
// stores there would stall the vector load that reads them next: a failed store forward per row).
CK_ALWAYS_INLINE void padding_mask(float mask[CK_VW], int64_t N, int64_t Np) {
    for (int c = 0; c < CK_VW; c++) mask[c] = Np - CK_VW + c < N ? 0.0f : -INFINITY;
}
CK_ALWAYS_INLINE void mask_padding(float *row, int64_t Np, const float mask[CK_VW]) {
    ck_vstore(row + Np - CK_VW, ck_vload(row + Np - CK_VW) + ck_vload(mask));
}

// p_j = exp(s_j − m) / l over one row of Np scores, m the row's maximum and l = Σ_j exp(s_j − m);
// returns the row's log-sum-exp m + log l. The padding columns j ≥ N are made −inf so every loop
// runs over whole vectors and they come out as exactly 0.
CK_ALWAYS_INLINE float softmax_scores_row(float *sr, int64_t Np, const float pad[CK_VW]) {
    mask_padding(sr, Np, pad);
    const float m = ck_row_max(sr, Np);
    float l = 0.0f;
    #pragma omp simd reduction(+:l)
    CK_WHOLE_VECTORS
    for (int64_t j = 0; j < Np; j++) { sr[j] = ck_exp(sr[j] - m); l += sr[j]; }
    const float inv = 1.0f / l;
    #pragma omp simd
    CK_WHOLE_VECTORS
    for (int64_t j = 0; j < Np; j++) sr[j] *= inv;
    return m + ck_log(l);   // l ≥ 1: the maximum's own term is exp(0)
}

// For rows r < rows of scores p [·, Np] (before the exp) and dP ds [·, Np]: P = exp(S − lse_r) in place,
// then dS = scale · P ⊙ (dP − Di) over ds with Di = Σ_j P_rj dP_rj (= rowsum(dO ⊙ O), but from the row
// already in scratch instead of reading O back from memory); zero for j ≥ N.
CK_ALWAYS_INLINE void softmax_gradient_rows(float *p, float *ds, const float *lse, int64_t rows, int64_t Np, const float pad[CK_VW],
                                            float scale) {
    for (int64_t r = 0; r < rows; r++) {
        const float li = lse[r];
        float *pr = p + r * Np, *dsr = ds + r * Np;
        mask_padding(pr, Np, pad);   // exp gives exactly 0 there
        float Di = 0.0f;
        #pragma omp simd reduction(+:Di)
        CK_WHOLE_VECTORS
        for (int64_t j = 0; j < Np; j++) { pr[j] = ck_exp(pr[j] - li); Di += pr[j] * dsr[j]; }
        #pragma omp simd
        CK_WHOLE_VECTORS
        for (int64_t j = 0; j < Np; j++) dsr[j] = scale * pr[j] * (dsr[j] - Di);
    }
}

// In-register transpose of a 16×16 block held as 16 row vectors, in four butterfly stages: stage b
// swaps element (i, k) with (i^b, k^b) wherever bit b of i and k differ; after b = 8, 4, 2, 1 every
// (i, k) has moved to (k, i). Each step is one two-input shuffle (vpermt2ps on AVX-512).
#define SHUF __builtin_shufflevector
CK_ALWAYS_INLINE void transpose16(ck_vf16 m[16]) {
    for (int i = 0; i < 8; i++) {
        const ck_vf16 a = m[i], c = m[i + 8];
        m[i] = SHUF(a, c, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        m[i + 8] = SHUF(a, c, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    }
    for (int i = 0; i < 16; i++) if (!(i & 4)) {
        const ck_vf16 a = m[i], c = m[i + 4];
        m[i] = SHUF(a, c, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
        m[i + 4] = SHUF(a, c, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    }
    for (int i = 0; i < 16; i++) if (!(i & 2)) {
        const ck_vf16 a = m[i], c = m[i + 2];
        m[i] = SHUF(a, c, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
        m[i + 2] = SHUF(a, c, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    }
    for (int i = 0; i < 16; i += 2) {
        const ck_vf16 a = m[i], c = m[i + 1];
        m[i] = SHUF(a, c, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
        m[i + 1] = SHUF(a, c, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    }
}

// dst[d·Np + j] = src[j·ld + d], zero for j ≥ N: 16×16 blocks transposed in registers, a scalar
// loop for the last D mod 16 columns.
CK_ALWAYS_INLINE void pack_transposed(float *restrict dst, const float *restrict src, int64_t ld, int64_t N,
                                      int64_t Np, int64_t D) {
    for (int64_t j0 = 0; j0 < Np; j0 += CK_VW) {
        int64_t d0 = 0;
        for (; d0 + CK_VW <= D; d0 += CK_VW) {
            ck_vf16 m[CK_VW];
            for (int c = 0; c < CK_VW; c++) m[c] = j0 + c < N ? ck_vload(src + (j0 + c) * ld + d0) : (ck_vf16){0};
            transpose16(m);
            for (int r = 0; r < CK_VW; r++) ck_vstore(dst + (d0 + r) * Np + j0, m[r]);
        }
        for (int64_t d = d0; d < D; d++)
            for (int64_t c = 0; c < CK_VW; c++) dst[d * Np + j0 + c] = j0 + c < N ? src[(j0 + c) * ld + d] : 0.0f;
    }
}

// Scratch per thread (backward, the larger): Kt, Vt [D, Np]; Qp, dOp, Kp [N, Dp]; dKp, dVp [Np, Dp];
// P, dS [QB, Np]. The forward's layout (Kt, Vp, S [MR, Np]) fits inside it. The bf16 path's may be
// larger (bf16_scratch_floats): the size is the larger of the two.
static int64_t bf16_scratch_floats(int64_t N, int64_t D);
int64_t ck_attention_scratch_floats(int64_t N, int64_t D) {
    const int64_t Np = round_up(N, CK_VW), Dp = round_up(D, CK_VW);
    const int64_t n = 2 * D * Np + 3 * N * Dp + 2 * Np * Dp + 2 * QB * Np;
    const int64_t bf16 = bf16_scratch_floats(N, D);   // the bf16 path's (below): either may run
    return round_up(n > bf16 ? n : bf16, CK_CACHE_LINE_F32);
}

// A head's rows are 256-byte pieces a whole token apart, more streams than the hardware prefetcher
// follows, so the next head's rows are requested (ck_prefetch_l2) while this one computes: N = 50,
// 2 threads, fwd+bwd 12–17% faster (N = 13 and 197: within noise).
CK_ALWAYS_INLINE void prefetch_rows_for_read(const float *p, int64_t ld, int64_t rows, int64_t D) {
    for (int64_t j = 0; j < rows; j++) ck_prefetch_l2(p + j * ld, D);
}
CK_ALWAYS_INLINE void prefetch_rows_for_write(float *p, int64_t ld, int64_t rows, int64_t D) {
    for (int64_t j = 0; j < rows; j++) ck_prefetch_l2_for_write(p + j * ld, D);
}

// Up to 7 · 16384 floats (448 KiB) requested ahead, well inside L2 next to the current head's data.
static inline int prefetch_next_head(int64_t N, int64_t D) { return N * D <= 16384; }


// One head: q, k, v are [N, D] with row stride ld (inside the packed qkv); o is [N, D] with row
// stride ldo (inside out); lse is [N].
CK_CLONES static void head_forward(float *o, float *restrict lse, const float *q, const float *k,
                                   const float *v, int64_t ld, int64_t ldo, float *restrict scratch,
                                   int64_t N, int64_t D, float scale) {
    const int64_t Np = round_up(N, CK_VW), Dp = round_up(D, CK_VW);
    float *kt = scratch;                 // [D, Np]
    float *vp = kt + D * Np;             // [N, Dp]
    float *s = vp + N * Dp;              // [MR, Np] scores, then probabilities
    pack_transposed(kt, k, ld, N, Np, D);
    pack_rows(vp, v, ld, N, D, Dp);
    float pad[CK_VW];
    padding_mask(pad, N, Np);
    for (int64_t i0 = 0, blk = 0, rb; i0 < N; i0 += rb, blk++) {
        rb = row_block_size(N, blk);
        const float *qr[MR];
        float *orow[MR];
        for (int r = 0; r < rb; r++) {
            qr[r] = q + (i0 + r) * ld;
            orow[r] = o + (i0 + r) * ldo;
        }
#define SCORES(mr) rows_x_cols(s, Np, qr, kt, Np, D, scale, mr)
        ROW_BLOCK(rb, SCORES)                                   // s_rj = scale · q_r·k_j
#undef SCORES
        for (int r = 0; r < rb; r++) lse[i0 + r] = softmax_scores_row(s + r * Np, Np, pad);
#define OUT(mr) probs_x_rows(orow, 0, s, Np, 1, vp, Dp, N, D, mr)
        ROW_BLOCK(rb, OUT)                                      // o_r = Σ_j p_rj v_j
#undef OUT
    }
}

// The transposed forward (fp32 products, D a whole number of vectors, any N): queries go in blocks of
// CK_VW, and each block's scores are formed transposed, Sᵀ [N keys, CK_VW queries], so the softmax over
// keys runs down the rows, one vector per key for all of the block's queries at once: no per-row
// horizontal maximum and sum, and one vector of logs for the block's log-sum-exps. Query lanes past N
// hold the scores of zero queries and are never stored. K and V are read in place; only the block's Qᵀ
// is packed. Against head_forward (one thread, medians of 5 alternating runs, Zen 4, 2026-12-07):
// N = 50 1.24x at D = 32 and 1.15x at D = 64, N = 197 1.02x, N = 17 1.42x. Short sequences (N ≤ CK_VW:
// MAE's encoder sees N = 13, the same code as before) are one block. (The same layout with bf16
// products measured no faster than head_forward_bf16 at N = 50 and slower at N = 197: their operands'
// packing costs what the products save.) Its scratch, Qᵀ [D, CK_VW] and Sᵀ [N, CK_VW], fits inside
// ck_attention_scratch_floats' (2·D·Np ≥ 16·D, 3·N·Dp ≥ 16·N).
static inline int transposed_forward(int64_t D) { return D % CK_VW == 0; }

// Softmax over the N rows of st [N, CK_VW], every column (query) at once: p_ij = exp(s_ij − m_i) / l_i
// with m_i = max_j s_ij and l_i = Σ_j exp(s_ij − m_i); lse_i = m_i + log l_i for the first nq columns.
CK_ALWAYS_INLINE void softmax_down_columns(float *st, float *lse, int64_t N, int64_t nq) {
    ck_vf16 m = ck_vload(st);
    for (int64_t j = 1; j < N; j++) m = __builtin_elementwise_max(m, ck_vload(st + j * CK_VW));
    float mi[CK_VW], li[CK_VW] = {0};
    ck_vstore(mi, m);
    for (int64_t j = 0; j < N; j++) {
        float *row = st + j * CK_VW;
        #pragma omp simd
        for (int i = 0; i < CK_VW; i++) { row[i] = ck_exp(row[i] - mi[i]); li[i] += row[i]; }
    }
    const ck_vf16 inv = 1.0f / ck_vload(li);
    for (int64_t j = 0; j < N; j++) ck_vstore(st + j * CK_VW, inv * ck_vload(st + j * CK_VW));
    #pragma omp simd
    for (int64_t i = 0; i < nq; i++) lse[i] = mi[i] + ck_log(li[i]);   // l_i ≥ 1
}

CK_CLONES static void head_forward_transposed(float *o, float *restrict lse, const float *q, const float *k,
                                              const float *v, int64_t ld, int64_t ldo, float *restrict scratch,
                                              int64_t N, int64_t D, float scale) {
    float *qt = scratch;                 // [D, CK_VW] the block's Qᵀ, zero for queries past N
    float *st = qt + D * CK_VW;          // [N, CK_VW] Sᵀ, then Pᵀ
    for (int64_t q0 = 0; q0 < N; q0 += CK_VW) {
        const int64_t nq = ck_min64(CK_VW, N - q0);
        pack_transposed(qt, q + q0 * ld, ld, nq, CK_VW, D);
        for (int64_t j0 = 0, blk = 0, rb; j0 < N; j0 += rb, blk++) {      // s_ij = scale · k_j·q_i
            rb = row_block_size(N, blk);
            const float *kr[MR];
            for (int r = 0; r < rb; r++) kr[r] = k + (j0 + r) * ld;
#define SCORES(mr) rows_x_cols(st + j0 * CK_VW, CK_VW, kr, qt, CK_VW, D, scale, mr)
            ROW_BLOCK(rb, SCORES)
#undef SCORES
        }
        softmax_down_columns(st, lse + q0, N, nq);
        for (int64_t i0 = 0, blk = 0, rb; i0 < nq; i0 += rb, blk++) {     // o_i = Σ_j p_ij v_j
            rb = row_block_size(nq, blk);
            float *orow[MR];
            for (int r = 0; r < rb; r++) orow[r] = o + (q0 + i0 + r) * ldo;
#define OUT(mr) probs_x_rows(orow, 0, st + i0, 1, CK_VW, v, ld, N, D, mr)
            ROW_BLOCK(rb, OUT)
#undef OUT
        }
    }
}

// The short-sequence backward (N ≤ CK_VW, D a whole number of vectors; head_backward_short below) uses
// the forward's transposed layout, one block of queries. (For longer sequences, that layout's backward
// by blocks of 16 queries measured 1.3x slower than head_backward at N = 50, D = 32.)
static inline int short_sequence(int64_t N, int64_t D) { return N <= CK_VW && D % CK_VW == 0; }

// ---- bf16 products (--precision bf16: ck_gemm_set_precision) ----
//
// With the products in bf16, the long path's seven products take bf16 operands and sum them in fp32
// by matmul.c's rule (the summed index in pairs, the even index in the low half; per pair the odd
// halves' product added first, each sum flushed: `vdpbf16ps`, or the portable emulation with the same
// bits): the scores QKᵀ and dP = dO Vᵀ over pairs of the head dimension, O = PV and dQ = dS K over pairs
// of keys, dV = Pᵀ dO and dK = dSᵀ Q over pairs of query rows. The softmax and its log-sum-exp, dS, the
// scale and the dK/dV accumulators stay fp32. Short sequences (N ≤ 16) keep the fp32 path: their
// products are a few hundred multiply-adds per head. Operands are rounded to bf16 as they are packed
// (K, V, Q, dO per head; P and dS per block of query rows); each (b, h) is still one thread's work, so
// the bits do not depend on the thread count.

typedef uint32_t ck_vu16 __attribute__((vector_size(64)));   // 16 pairs
CK_ALWAYS_INLINE ck_vu16 ck_vload_pairs(const uint32_t *p) { ck_vu16 v; memcpy(&v, p, sizeof v); return v; }

// A lane-wise dot step: acc + the products of a (one pair, broadcast) and b's pairs.
typedef ck_vf16 (*dp_step)(ck_vf16 acc, uint32_t a, ck_vu16 b);

// |x| < 2⁻¹²⁶ → ±0 in every lane (ck_flush_denormal, vectorized: a zero exponent field).
CK_ALWAYS_INLINE ck_vf16 flush_denormals(ck_vf16 x) {
    const ck_vu16 u = (ck_vu16)x;
    const ck_vu16 tiny = (ck_vu16)((u & 0x7f800000u) == 0);
    return (ck_vf16)(u & ~(tiny & 0x7fffffffu));
}

// The emulation, lane by lane as the portable GEMM tile computes it.
CK_ALWAYS_INLINE ck_vf16 dp_emulated(ck_vf16 acc, uint32_t a, ck_vu16 b) {
    const float a_odd = ck_bf16_half(a, 1), a_even = ck_bf16_half(a, 0);
    const ck_vf16 b_odd = (ck_vf16)(b & 0xffff0000u), b_even = (ck_vf16)(b << 16);
    acc = flush_denormals(acc + a_odd * b_odd);
    return flush_denormals(acc + a_even * b_even);
}
#if defined(__x86_64__)
static inline __attribute__((always_inline, target("avx512f,avx512bf16"))) ck_vf16 dp_instruction(ck_vf16 acc, uint32_t a, ck_vu16 b) {
    return (ck_vf16)_mm512_dpbf16_ps((__m512)acc, (__m512bh)_mm512_set1_epi32((int)a), (__m512bh)b);
}
#endif

// The three products, each written once and inlined into an instruction and an emulation variant
// (the dp step a constant there), with the row count MRC and the vector count NVC constants.
//
// c[r·ldc + j] = alpha · Σ_{p<Dq} a_r[p] · bt[p·Np + j] for r < MRC, j < Np (a multiple of 16): a_r pairs
// along the head dimension, bt the other operand transposed and paired the same way (the scores).
CK_ALWAYS_INLINE void scores_bf16(float *c, int64_t ldc, const uint32_t *const a[MR], const uint32_t *bt, int64_t Np, int64_t Dq,
                                  float alpha, const int MRC, dp_step dp) {
    int64_t j = 0;
    for (; j + 2 * CK_VW <= Np; j += 2 * CK_VW) {
        ck_vf16 acc[MR][2];
        for (int r = 0; r < MRC; r++) acc[r][0] = acc[r][1] = (ck_vf16){0};
        for (int64_t p = 0; p < Dq; p++) {
            const ck_vu16 b0 = ck_vload_pairs(bt + p * Np + j), b1 = ck_vload_pairs(bt + p * Np + j + CK_VW);
            for (int r = 0; r < MRC; r++) { acc[r][0] = dp(acc[r][0], a[r][p], b0); acc[r][1] = dp(acc[r][1], a[r][p], b1); }
        }
        for (int r = 0; r < MRC; r++) { ck_vstore(c + r * ldc + j, alpha * acc[r][0]); ck_vstore(c + r * ldc + j + CK_VW, alpha * acc[r][1]); }
    }
    if (j < Np) {
        ck_vf16 acc[MR];
        for (int r = 0; r < MRC; r++) acc[r] = (ck_vf16){0};
        for (int64_t p = 0; p < Dq; p++) {
            const ck_vu16 b0 = ck_vload_pairs(bt + p * Np + j);
            for (int r = 0; r < MRC; r++) acc[r] = dp(acc[r], a[r][p], b0);
        }
        for (int r = 0; r < MRC; r++) ck_vstore(c + r * ldc + j, alpha * acc[r]);
    }
}

// out_r[d0 + d] (=|+=) Σ_{q<Nq} p[r·ldp + q] · b[q·ldb + d0 + d] for r < MRC, d < width ≤ NVC·16: p pairs
// along the keys, b pairs of rows (O = PV, dQ = dS K).
CK_ALWAYS_INLINE void probs_bf16(float *const out[MR], int accumulate, const uint32_t *p, int64_t ldp, const uint32_t *b,
                                 int64_t ldb, int64_t Nq, int64_t d0, int64_t width, const int MRC, const int NVC, dp_step dp) {
    ck_vf16 acc[MR][MAXNV];
    for (int r = 0; r < MRC; r++) for (int v = 0; v < NVC; v++) acc[r][v] = (ck_vf16){0};
    for (int64_t q = 0; q < Nq; q++) {
        ck_vu16 bv[MAXNV];
        for (int v = 0; v < NVC; v++) bv[v] = ck_vload_pairs(b + q * ldb + d0 + v * CK_VW);
        for (int r = 0; r < MRC; r++) {
            const uint32_t x = p[r * ldp + q];
            for (int v = 0; v < NVC; v++) acc[r][v] = dp(acc[r][v], x, bv[v]);
        }
    }
    for (int r = 0; r < MRC; r++)
        for (int v = 0; v < NVC; v++) store_part(out[r] + d0 + v * CK_VW, acc[r][v], width - v * CK_VW, accumulate);
}

// y[(j + c)·Dp + d0 + d] (=|+=) Σ_{q<R2} pp[q·ldpp + j + c] · a[q·Dp + d0 + d], four columns j + c at a
// time: pp pairs of rows of P or dS (zero columns from N up to a multiple of 16), a pairs of rows of dO
// or Q (dV = Pᵀ dO, dK = dSᵀ Q).
CK_ALWAYS_INLINE void probs_t_bf16(float *y, int overwrite, const uint32_t *pp, int64_t ldpp, const uint32_t *a, int64_t Dp,
                                   int64_t R2, int64_t N, int64_t d0, const int NVC, dp_step dp) {
    for (int64_t j = 0; j < N; j += 4) {
        ck_vf16 acc[4][MAXNV];
        for (int c = 0; c < 4; c++) for (int v = 0; v < NVC; v++) acc[c][v] = (ck_vf16){0};
        for (int64_t q = 0; q < R2; q++) {
            ck_vu16 av[MAXNV];
            for (int v = 0; v < NVC; v++) av[v] = ck_vload_pairs(a + q * Dp + d0 + v * CK_VW);
            const uint32_t *pq = pp + q * ldpp + j;
            for (int c = 0; c < 4; c++) { const uint32_t x = pq[c]; for (int v = 0; v < NVC; v++) acc[c][v] = dp(acc[c][v], x, av[v]); }
        }
        for (int c = 0; c < 4; c++)
            for (int v = 0; v < NVC; v++) {
                float *yp = y + (j + c) * Dp + d0 + v * CK_VW;
                ck_vstore(yp, overwrite ? acc[c][v] : ck_vload(yp) + acc[c][v]);
            }
    }
}

// The products of one variant (VARIANT: instruction or emulated), the row and vector counts made constants.
#define SCORES_BF16(mr) scores_bf16(c, ldc, a, bt, Np, Dq, alpha, mr, dp)
#define PROBS_BF16(mr) switch (nv) {                                                              \
    case 4: probs_bf16(out, accumulate, p, ldp, b, ldb, Nq, d0, width, mr, 4, dp); break;       \
    case 3: probs_bf16(out, accumulate, p, ldp, b, ldb, Nq, d0, width, mr, 3, dp); break;       \
    case 2: probs_bf16(out, accumulate, p, ldp, b, ldb, Nq, d0, width, mr, 2, dp); break;       \
    default: probs_bf16(out, accumulate, p, ldp, b, ldb, Nq, d0, width, mr, 1, dp); break; }
#define PROBS_T_BF16(nvc) probs_t_bf16(y, overwrite, pp, ldpp, a, Dp, R2, N, d0, nvc, dp)
#define DEFINE_BF16_PRODUCTS(VARIANT, ATTRIBUTES, DP)                                                                        \
    ATTRIBUTES static void scores_##VARIANT(float *c, int64_t ldc, const uint32_t *const a[MR], const uint32_t *bt,         \
                                            int64_t Np, int64_t Dq, float alpha, int64_t rb) {                              \
        const dp_step dp = DP;                                                                                              \
        ROW_BLOCK(rb, SCORES_BF16)                                                                                          \
    }                                                                                                                       \
    ATTRIBUTES static void probs_##VARIANT(float *const out[MR], int accumulate, const uint32_t *p, int64_t ldp,            \
                                           const uint32_t *b, int64_t ldb, int64_t Nq, int64_t D, int64_t rb) {             \
        const dp_step dp = DP;                                                                                              \
        for (int64_t d0 = 0; d0 < D; d0 += MAXNV * CK_VW) {                                                                 \
            const int64_t width = ck_min64(MAXNV * CK_VW, D - d0);                                                          \
            const int nv = (int)((width + CK_VW - 1) / CK_VW);                                                              \
            ROW_BLOCK(rb, PROBS_BF16)                                                                                       \
        }                                                                                                                   \
    }                                                                                                                       \
    ATTRIBUTES static void probs_t_##VARIANT(float *y, int overwrite, const uint32_t *pp, int64_t ldpp, const uint32_t *a,  \
                                             int64_t Dp, int64_t R2, int64_t N) {                                           \
        const dp_step dp = DP;                                                                                              \
        for (int64_t d0 = 0; d0 < Dp; d0 += MAXNV * CK_VW) {                                                                \
            switch (ck_min64(MAXNV * CK_VW, Dp - d0) / CK_VW) {                                                             \
                case 4: PROBS_T_BF16(4); break; case 3: PROBS_T_BF16(3); break;                                             \
                case 2: PROBS_T_BF16(2); break; default: PROBS_T_BF16(1); break;                                            \
            }                                                                                                               \
        }                                                                                                                   \
    }

DEFINE_BF16_PRODUCTS(emulated, CK_CLONES, dp_emulated)
#if defined(__x86_64__)
DEFINE_BF16_PRODUCTS(instruction, __attribute__((target("avx512f,avx512bf16"))), dp_instruction)
#endif

typedef struct {
    int instructions;   // 1: `vdpbf16ps` and `vcvtne2ps2bf16` (ck_bf16_instructions); 0: their emulation
    void (*scores)(float *, int64_t, const uint32_t *const[MR], const uint32_t *, int64_t, int64_t, float, int64_t);
    void (*probs)(float *const[MR], int, const uint32_t *, int64_t, const uint32_t *, int64_t, int64_t, int64_t, int64_t);
    void (*probs_t)(float *, int, const uint32_t *, int64_t, const uint32_t *, int64_t, int64_t, int64_t);
} bf16_products;

// The instructions where the CPU has them (ck_bf16_instructions), else the emulation: the same bits.
static const bf16_products *bf16_products_here(void) {
    static const bf16_products emulated = {0, scores_emulated, probs_emulated, probs_t_emulated};
#if defined(__x86_64__)
    static const bf16_products instruction = {1, scores_instruction, probs_instruction, probs_t_instruction};
    if (ck_bf16_instructions()) return &instruction;
#endif
    return &emulated;
}

// ---- bf16 packing: fp32 → pairs (matmul.c's ck_bf16_pairs, ck_bf16_row_pairs), zeros past N rows and D columns ----

// dst[q·ldd + d] = (src[2q][d], src[2q + 1][d]) for q < R2, d < width: pairs of rows, the missing odd
// row and columns d ≥ D zero.
CK_ALWAYS_INLINE void pack_pairs_of_rows(uint32_t *restrict dst, int64_t ldd, const float *restrict src, int64_t ld, int64_t rows,
                                        int64_t R2, int64_t D, int64_t width, int fast) {
    for (int64_t q = 0; q < R2; q++) {
        uint32_t *row = dst + q * ldd;
        const int64_t filled = 2 * q < rows ? D : 0;
        if (filled) ck_bf16_pairs(row, src + 2 * q * ld, 2 * q + 1 < rows ? src + (2 * q + 1) * ld : NULL, D, fast);
        memset(row + filled, 0, sizeof *row * (size_t)(width - filled));
    }
}

// dst[p·Np + j] = (src[j][2p], src[j][2p + 1]) for p < Dp/2, j < Np: the operand transposed, paired along
// the head dimension. t is fp32 scratch [D, Np] for the transposition.
CK_ALWAYS_INLINE void pack_pairs_transposed(uint32_t *restrict dst, float *restrict t, const float *restrict src, int64_t ld,
                                           int64_t N, int64_t Np, int64_t D, int64_t Dp, int fast) {
    pack_transposed(t, src, ld, N, Np, D);
    pack_pairs_of_rows(dst, Np, t, Np, D, Dp / 2, Np, Np, fast);
}

// dst[r·Dq + p] = (src[r][2p], src[r][2p + 1]) for r < rows, p < Dq: rows paired along themselves, zero
// from D on.
CK_ALWAYS_INLINE void pack_row_pairs(uint32_t *restrict dst, int64_t Dq, const float *restrict src, int64_t ld, int64_t rows,
                                    int64_t D, int fast) {
    const int64_t filled = (D + 1) / 2;
    for (int64_t r = 0; r < rows; r++) {
        ck_bf16_row_pairs(dst + r * Dq, src + r * ld, D, fast);
        memset(dst + r * Dq + filled, 0, sizeof *dst * (size_t)(Dq - filled));
    }
}

// Scratch of the bf16 path, in floats (uint32 words counted the same), backward (the larger):
// t [Dp, Np]; Kt, Vt pairs [Dp/2, Np]; Q, dO row pairs [N, Dp/2]; K pairs of rows [Np/2, Dp];
// dK, dV accumulators [Np, Dp]; P, dS [QB, Np]; dS row pairs [QB, Np/2]; P, dS pairs of rows [QB/2, Np];
// dO, Q pairs of rows [QB/2, Dp]. The forward's layout fits inside it.
static int64_t bf16_scratch_floats(int64_t N, int64_t D) {
    const int64_t Np = round_up(N, CK_VW), Dp = round_up(D, CK_VW), Dq = Dp / 2, Nq = Np / 2;
    return Dp * Np + 2 * Dq * Np + 2 * N * Dq + Nq * Dp + 2 * Np * Dp + 2 * QB * Np + QB * Nq + 2 * (QB / 2) * Np + 2 * (QB / 2) * Dp;
}

// One head's forward in bf16 (head_forward's order: a register block of query rows at a time).
CK_CLONES static void head_forward_bf16(float *o, float *restrict lse, const float *q, const float *k, const float *v, int64_t ld,
                                        int64_t ldo, float *restrict scratch, int64_t N, int64_t D, float scale,
                                        const bf16_products *ops) {
    const int64_t Np = round_up(N, CK_VW), Dp = round_up(D, CK_VW), Dq = Dp / 2, Nq = Np / 2;
    const int fast = ops->instructions;
    float *t = scratch;                                       // [Dp, Np] fp32, for the transposition
    uint32_t *kt = (uint32_t *)(t + Dp * Np);                 // [Dq, Np]
    uint32_t *vp = kt + Dq * Np;                              // [Nq, Dp]
    uint32_t *qp = vp + Nq * Dp;                              // [MR, Dq] the block's query rows
    uint32_t *pp = qp + MR * Dq;                              // [MR, Nq] the block's probabilities
    float *s = (float *)(pp + MR * Nq);                       // [MR, Np] scores, then probabilities
    pack_pairs_transposed(kt, t, k, ld, N, Np, D, Dp, fast);
    pack_pairs_of_rows(vp, Dp, v, ld, N, Nq, D, Dp, fast);
    float pad[CK_VW];
    padding_mask(pad, N, Np);
    for (int64_t i0 = 0, blk = 0, rb; i0 < N; i0 += rb, blk++) {
        rb = row_block_size(N, blk);
        const uint32_t *qr[MR];
        float *orow[MR];
        pack_row_pairs(qp, Dq, q + i0 * ld, ld, rb, D, fast);
        for (int r = 0; r < rb; r++) { qr[r] = qp + r * Dq; orow[r] = o + (i0 + r) * ldo; }
        ops->scores(s, Np, qr, kt, Np, Dq, scale, rb);                          // s_rj = scale · q_r·k_j
        for (int r = 0; r < rb; r++) lse[i0 + r] = softmax_scores_row(s + r * Np, Np, pad);
        pack_row_pairs(pp, Nq, s, Np, rb, Np, fast);
        ops->probs(orow, 0, pp, Nq, vp, Dp, Nq, D, rb);                        // o_r = Σ_j p_rj v_j
    }
}

// One head's backward in bf16 (head_backward's order: blocks of QB query rows).
CK_CLONES static void head_backward_bf16(float *dq, float *dk, float *dv, int accumulate, const float *q, const float *k,
                                         const float *v, const float *dout, const float *lse, int64_t ld, int64_t ldo,
                                         float *restrict scratch, int64_t N, int64_t D, float scale, const bf16_products *ops) {
    const int64_t Np = round_up(N, CK_VW), Dp = round_up(D, CK_VW), Dq = Dp / 2, Nq = Np / 2;
    const int fast = ops->instructions;
    float *t = scratch;                                       // [Dp, Np] fp32, for the transpositions
    uint32_t *kt = (uint32_t *)(t + Dp * Np), *vt = kt + Dq * Np;   // [Dq, Np] each
    uint32_t *qp = vt + Dq * Np, *gp = qp + N * Dq;           // [N, Dq] each (g = dO)
    uint32_t *kr = gp + N * Dq;                               // [Nq, Dp]
    float *dkp = (float *)(kr + Nq * Dp), *dvp = dkp + Np * Dp;   // [Np, Dp] each
    float *p = dvp + Np * Dp, *ds = p + QB * Np;              // [QB, Np] each
    uint32_t *dsp = (uint32_t *)(ds + QB * Np);               // [QB, Nq] dS paired along the keys
    uint32_t *pt = dsp + QB * Nq, *dst = pt + (QB / 2) * Np;  // [QB/2, Np] P, dS pairs of rows
    uint32_t *gr = dst + (QB / 2) * Np, *qr2 = gr + (QB / 2) * Dp;   // [QB/2, Dp] dO, Q pairs of rows
    pack_pairs_transposed(kt, t, k, ld, N, Np, D, Dp, fast);
    pack_pairs_transposed(vt, t, v, ld, N, Np, D, Dp, fast);
    pack_row_pairs(qp, Dq, q, ld, N, D, fast);
    pack_row_pairs(gp, Dq, dout, ldo, N, D, fast);
    pack_pairs_of_rows(kr, Dp, k, ld, N, Nq, D, Dp, fast);
    float pad[CK_VW];
    padding_mask(pad, N, Np);
    for (int64_t i0 = 0; i0 < N; i0 += QB) {
        const int64_t qb = ck_min64(QB, N - i0), R2 = (qb + 1) / 2;
        for (int64_t r0 = 0, blk = 0, rb; r0 < qb; r0 += rb, blk++) {   // P (before the exp) and dP
            rb = row_block_size(qb, blk);
            const uint32_t *qrow[MR], *grow[MR];
            for (int r = 0; r < rb; r++) { qrow[r] = qp + (i0 + r0 + r) * Dq; grow[r] = gp + (i0 + r0 + r) * Dq; }
            ops->scores(p + r0 * Np, Np, qrow, kt, Np, Dq, scale, rb);
            ops->scores(ds + r0 * Np, Np, grow, vt, Np, Dq, 1.0f, rb);
        }
        softmax_gradient_rows(p, ds, lse + i0, qb, Np, pad, scale);
        pack_row_pairs(dsp, Nq, ds, Np, qb, Np, fast);
        for (int64_t r0 = 0, blk = 0, rb; r0 < qb; r0 += rb, blk++) {   // dQ_r (+)= Σ_j dS_rj k_j
            rb = row_block_size(qb, blk);
            float *dqr[MR];
            for (int r = 0; r < rb; r++) dqr[r] = dq + (i0 + r0 + r) * ld;
            ops->probs(dqr, accumulate, dsp + r0 * Nq, Nq, kr, Dp, Nq, D, rb);
        }
        // dV_j += Σ_r P_rj dO_r, dK_j += Σ_r dS_rj q_r over the block's rows, in pairs of rows.
        pack_pairs_of_rows(pt, Np, p, Np, qb, R2, Np, Np, fast);
        pack_pairs_of_rows(dst, Np, ds, Np, qb, R2, Np, Np, fast);
        pack_pairs_of_rows(gr, Dp, dout + i0 * ldo, ldo, qb, R2, D, Dp, fast);
        pack_pairs_of_rows(qr2, Dp, q + i0 * ld, ld, qb, R2, D, Dp, fast);
        ops->probs_t(dvp, i0 == 0, pt, Np, gr, Dp, R2, N);
        ops->probs_t(dkp, i0 == 0, dst, Np, qr2, Dp, R2, N);
    }
    unpack_rows(dk, ld, dkp, Dp, N, D, accumulate);
    unpack_rows(dv, ld, dvp, Dp, N, D, accumulate);
}

void ck_attention_forward(float *out, float *lse, const float *qkv, float *scratch,
                          int64_t B, int64_t N, int64_t H, int64_t D, float scale) {
    const int64_t ld = 3 * H * D;              // row stride of q, k and v inside qkv
    const int64_t per_thread = ck_attention_scratch_floats(N, D);
    const int prefetch = prefetch_next_head(N, D), transposed = transposed_forward(D);
    const bf16_products *bf16 = ck_gemm_precision() == CK_PRECISION_BF16 && !short_sequence(N, D) ? bf16_products_here() : NULL;
    #pragma omp parallel for schedule(static) if (B * H * N * N * D >= CK_PAR_MIN)
    for (int64_t bh = 0; bh < B * H; bh++) {
        const int64_t b = bh / H, h = bh % H;
        const float *q = qkv + b * N * ld + h * D;
        if (prefetch && bh + 1 < B * H) {   // the next head's q, k, v (the same rows' next 256 bytes, or the next sample)
            const int64_t b1 = (bh + 1) / H, h1 = (bh + 1) % H;
            for (int t = 0; t < 3; t++) prefetch_rows_for_read(qkv + b1 * N * ld + t * H * D + h1 * D, ld, N, D);
        }
        float *o = out + b * N * H * D + h * D, *s = scratch + ck_thread_id() * per_thread;
        if (bf16) head_forward_bf16(o, lse + bh * N, q, q + H * D, q + 2 * H * D, ld, H * D, s, N, D, scale, bf16);
        else (transposed ? head_forward_transposed : head_forward)(o, lse + bh * N, q, q + H * D, q + 2 * H * D, ld, H * D, s, N, D, scale);
    }
}

// One head's backward; dq, dk, dv have row stride ld (inside dqkv), dout row stride ldo.
// Query rows go in blocks of QB: P and dS for the block are formed in scratch, then dQ for the
// block, and the block's contributions to dK and dV accumulate in packed scratch rows that are
// added to dqkv once at the end.
CK_CLONES static void head_backward(float *dq, float *dk, float *dv, int accumulate, const float *q, const float *k,
                                    const float *v, const float *dout, const float *lse,
                                    int64_t ld, int64_t ldo, float *restrict scratch,
                                    int64_t N, int64_t D, float scale) {
    const int64_t Np = round_up(N, CK_VW), Dp = round_up(D, CK_VW);
    float *kt = scratch, *vt = kt + D * Np;                  // [D, Np] each
    float *qpack = vt + D * Np, *gpack = qpack + N * Dp, *kpack = gpack + N * Dp;   // [N, Dp] each (g = dO)
    float *dkp = kpack + N * Dp, *dvp = dkp + Np * Dp;       // [Np, Dp] each
    float *p = dvp + Np * Dp, *ds = p + QB * Np;             // [QB, Np] each
    pack_transposed(kt, k, ld, N, Np, D);
    pack_transposed(vt, v, ld, N, Np, D);
    float pad[CK_VW];
    padding_mask(pad, N, Np);
    // Q, dO and K are read in place (row strides ld, ldo) when their rows are whole vectors and there
    // is one query block, so each row is read once per product and packing would cost more than it
    // saves (N = 13: 12% of the backward); otherwise they are packed and zero-padded to Dp.
    const float *qp = q, *gp = dout, *kp = k;
    int64_t lq = ld, lg = ldo, lk = ld;
    if (!(D == Dp && N <= QB)) {
        pack_rows(qpack, q, ld, N, D, Dp);
        pack_rows(gpack, dout, ldo, N, D, Dp);
        pack_rows(kpack, k, ld, N, D, Dp);
        qp = qpack; gp = gpack; kp = kpack;
        lq = lg = lk = Dp;
    }
    for (int64_t i0 = 0; i0 < N; i0 += QB) {
        const int64_t qb = ck_min64(QB, N - i0);
        // P = exp(scale · Q Kᵀ − lse) and dP = dO Vᵀ for the block, a register block of rows at a time.
        for (int64_t r0 = 0, blk = 0, rb; r0 < qb; r0 += rb, blk++) {
            rb = row_block_size(qb, blk);
            const float *qr[MR], *gr[MR];
            for (int r = 0; r < rb; r++) {
                qr[r] = qp + (i0 + r0 + r) * lq;
                gr[r] = gp + (i0 + r0 + r) * lg;
            }
#define SCORES(mr) rows_x_cols(p + r0 * Np, Np, qr, kt, Np, D, scale, mr); rows_x_cols(ds + r0 * Np, Np, gr, vt, Np, D, 1.0f, mr)
            ROW_BLOCK(rb, SCORES)
#undef SCORES
        }
        softmax_gradient_rows(p, ds, lse + i0, qb, Np, pad, scale);
        // dQ_r (+)= Σ_j dS_rj k_j, a register block of rows at a time.
        for (int64_t r0 = 0, blk = 0, rb; r0 < qb; r0 += rb, blk++) {
            rb = row_block_size(qb, blk);
            float *dqr[MR];
            for (int r = 0; r < rb; r++) dqr[r] = dq + (i0 + r0 + r) * ld;
#define DQ(mr) probs_x_rows(dqr, accumulate, ds + r0 * Np, Np, 1, kp, lk, N, D, mr)
            ROW_BLOCK(rb, DQ)
#undef DQ
        }
        // dV_j += Σ_r P_rj dO_r,  dK_j += Σ_r dS_rj q_r  over the block's rows.
        probsT_x_rows(dvp, i0 == 0, p, Np, gp + i0 * lg, lg, Dp, qb, N);
        probsT_x_rows(dkp, i0 == 0, ds, Np, qp + i0 * lq, lq, Dp, qb, N);
    }
    unpack_rows(dk, ld, dkp, Dp, N, D, accumulate);
    unpack_rows(dv, ld, dvp, Dp, N, D, accumulate);
}

// The short-sequence backward (head_forward_transposed's layout, one block of queries): Pᵀ and dSᵀ are
// formed by key rows, so the key-side gradients dV_j = Σ_i p_ij dO_i and dK_j = Σ_i ds_ij q_i are plain
// register-blocked products written straight into dqkv (no packed accumulators to unpack), and dQ
// reads dSᵀ transposed. Q, K, V and dO are read in place; only Qᵀ and dOᵀ are packed.
CK_CLONES static void head_backward_short(float *dq, float *dk, float *dv, int accumulate, const float *q,
                                          const float *k, const float *v, const float *dout, const float *lse,
                                          int64_t ld, int64_t ldo, float *restrict scratch,
                                          int64_t N, int64_t D, float scale) {
    float *qt = scratch, *gt = qt + D * CK_VW;        // [D, CK_VW] Qᵀ and dOᵀ (g = dO)
    float *pt = gt + D * CK_VW, *dst = pt + N * CK_VW; // [N, CK_VW] Pᵀ and dPᵀ, then dSᵀ
    pack_transposed(qt, q, ld, N, CK_VW, D);
    pack_transposed(gt, dout, ldo, N, CK_VW, D);
    for (int64_t j0 = 0, blk = 0, rb; j0 < N; j0 += rb, blk++) {
        rb = row_block_size(N, blk);
        const float *kr[MR], *vr[MR];
        for (int r = 0; r < rb; r++) { kr[r] = k + (j0 + r) * ld; vr[r] = v + (j0 + r) * ld; }
#define SCORES(mr) rows_x_cols(pt + j0 * CK_VW, CK_VW, kr, qt, CK_VW, D, scale, mr); \
                   rows_x_cols(dst + j0 * CK_VW, CK_VW, vr, gt, CK_VW, D, 1.0f, mr)
        ROW_BLOCK(rb, SCORES)                              // s_ij = scale · k_j·q_i, dp_ij = v_j·dO_i
#undef SCORES
    }
    // p_ij = exp(s_ij − lse_i); ds_ij = scale · p_ij (dp_ij − D_i) with D_i = Σ_j p_ij dp_ij.
    float lsev[CK_VW] = {0}, di[CK_VW] = {0};
    for (int64_t i = 0; i < N; i++) lsev[i] = lse[i];
    for (int64_t j = 0; j < N; j++) {
        float *pr = pt + j * CK_VW, *dpr = dst + j * CK_VW;
        #pragma omp simd
        for (int i = 0; i < CK_VW; i++) { pr[i] = ck_exp(pr[i] - lsev[i]); di[i] += pr[i] * dpr[i]; }
    }
    for (int64_t j = 0; j < N; j++) {
        const float *pr = pt + j * CK_VW;
        float *dsr = dst + j * CK_VW;
        #pragma omp simd
        for (int i = 0; i < CK_VW; i++) dsr[i] = scale * pr[i] * (dsr[i] - di[i]);
    }
    for (int64_t j0 = 0, blk = 0, rb; j0 < N; j0 += rb, blk++) {   // dV_j, dK_j by key rows
        rb = row_block_size(N, blk);
        float *dvr[MR], *dkr[MR];
        for (int r = 0; r < rb; r++) { dvr[r] = dv + (j0 + r) * ld; dkr[r] = dk + (j0 + r) * ld; }
#define DKV(mr) probs_x_rows(dvr, accumulate, pt + j0 * CK_VW, CK_VW, 1, dout, ldo, N, D, mr); \
                probs_x_rows(dkr, accumulate, dst + j0 * CK_VW, CK_VW, 1, q, ld, N, D, mr)
        ROW_BLOCK(rb, DKV)
#undef DKV
    }
    for (int64_t i0 = 0, blk = 0, rb; i0 < N; i0 += rb, blk++) {   // dQ_i = Σ_j ds_ij k_j
        rb = row_block_size(N, blk);
        float *dqr[MR];
        for (int r = 0; r < rb; r++) dqr[r] = dq + (i0 + r) * ld;
#define DQ(mr) probs_x_rows(dqr, accumulate, dst + i0, 1, CK_VW, k, ld, N, D, mr)
        ROW_BLOCK(rb, DQ)
#undef DQ
    }
}

void ck_attention_backward(ck_grad g, const float *dout, const float *qkv, const float *lse, float *scratch,
                           int64_t B, int64_t N, int64_t H, int64_t D, float scale) {
    float *dqkv = g.data;
    const int accumulate = g.accumulate;
    const int64_t ld = 3 * H * D;
    const int64_t per_thread = ck_attention_scratch_floats(N, D);
    const int prefetch = prefetch_next_head(N, D), short_path = short_sequence(N, D);
    const bf16_products *bf16 = ck_gemm_precision() == CK_PRECISION_BF16 && !short_path ? bf16_products_here() : NULL;
    // Each (b, h) owns its own slices of dq, dk and dv, so threads never write the same element.
    #pragma omp parallel for schedule(static) if (B * H * N * N * D >= CK_PAR_MIN)
    for (int64_t bh = 0; bh < B * H; bh++) {
        const int64_t b = bh / H, h = bh % H;
        const float *q = qkv + b * N * ld + h * D;
        float *dq = dqkv + b * N * ld + h * D;
        if (prefetch && bh + 1 < B * H) {   // the next head's q, k, v, dout and dq, dk, dv
            const int64_t b1 = (bh + 1) / H, h1 = (bh + 1) % H;
            for (int t = 0; t < 3; t++) {
                prefetch_rows_for_read(qkv + b1 * N * ld + t * H * D + h1 * D, ld, N, D);
                prefetch_rows_for_write(dqkv + b1 * N * ld + t * H * D + h1 * D, ld, N, D);
            }
            prefetch_rows_for_read(dout + b1 * N * H * D + h1 * D, H * D, N, D);
        }
        float *s = scratch + ck_thread_id() * per_thread;
        const float *dob = dout + b * N * H * D + h * D, *lseb = lse + bh * N;
        if (bf16)
            head_backward_bf16(dq, dq + H * D, dq + 2 * H * D, accumulate, q, q + H * D, q + 2 * H * D, dob, lseb, ld, H * D, s, N, D, scale, bf16);
        else if (short_path)
            head_backward_short(dq, dq + H * D, dq + 2 * H * D, accumulate, q, q + H * D, q + 2 * H * D, dob, lseb, ld, H * D, s, N, D, scale);
        else
            head_backward(dq, dq + H * D, dq + 2 * H * D, accumulate, q, q + H * D, q + 2 * H * D, dob, lseb, ld, H * D, s, N, D, scale);
    }
}
