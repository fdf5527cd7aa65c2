// Tessera's own single-precision GEMM: C = alpha · op(A) · op(B) + beta · C, row-major, the same
// contract as ck_sgemm (which routes here when this backend is chosen; see gemm.c).
//
// Weight-stationary blocking for the training step's skinny products (M = batch × tokens, thousands
// of rows; N and K 128–768), after the facts in performance.md:
//   * op(B) = B in whole panels of NR = 32 columns is read in place (the input- and weight-gradient
//     products); Bᵀ (the forward's weights) and a partial last panel are packed into [panel][k][32]
//     (per block of KC rows of K, and of whole panels of N within 640 KB); either way a block of
//     panels stays in L2 while every row tile of A streams past it;
//   * A is read in place, never packed: a row tile's elements are broadcast from memory, whether
//     the rows are contiguous in K (op(A) = A) or its columns are (op(A) = Aᵀ, the weight gradient);
//   * the micro-kernel keeps a 14 × 32 tile of C in 28 AVX-512 registers over all of KC.
// AVX2 CPUs (16 registers of 8 floats, smaller caches) run a driver of their own (`matmul_avx2`):
// both operands packed, a 6 × 16 tile in 12 registers.
// Each element of C is computed by one thread with a fixed order over k, so the result does not
// depend on the thread count, and both tiles do the same fused multiply-adds in the same order, so
// it does not depend on which tile ran either. Other CPUs run a portable tile of the same structure
// (baseline x86-64 by CK_CLONES). `TESSERA_GEMM=auto` uses this backend on AVX-512 and AVX2 CPUs
// (Runtime.swift has the measurements); baseline ones keep the BLAS.
#include "ck_internal.h"
#include "ck_gemm.h"
#include "ck_runtime.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define MR 14          // rows of C per AVX-512 tile
#define MR_AVX2 6      // rows of C per AVX2 tile (of STRIP columns)
#define MR_PORTABLE 4  // rows of C per portable tile
#define NR 32          // columns of C per tile: two 16-float vectors
#define STRIP 16       // columns of C per AVX2 tile: two 8-float vectors
#define KC_MAX 1024    // K up to this is one pass; longer K goes in blocks of KC_BLOCK
#define KC_BLOCK 256

// The depth of each K block: K itself up to KC_MAX, else KC_BLOCK. Each block's sums are added to C, so
// this rule is part of the result's bits: every driver and tile uses it (and the fma-chain test).
static inline int64_t k_block(int64_t K) { return K <= KC_MAX ? K : KC_BLOCK; }
#define PREFETCH_K 16  // k steps the tile prefetches ahead
#define PACK_MAX_FLOATS (160 * 1024)   // packed B per pass ≤ 640 KB (L2: 1 MB per core on Zen 4, 2 MB on Sapphire Rapids); N in blocks beyond it
#define AVX2_A_FLOATS (24 * 1024)       // its packed block of op(A) rows per thread: ≤ 96 KB, kept in L2

// The packed panels of one pass: at most PACK_MAX_FLOATS (nc·kc is capped to it below), so a static
// buffer serves every call and nothing is allocated. ck_sgemm is called from the thread that runs
// ops, never concurrently.
static float pack_buffer[PACK_MAX_FLOATS] __attribute__((aligned(64)));

// The W columns of op(B) from n0, rows k0 ..< k0 + kc: bp[k·W + j] = op(B)[k0 + k][n0 + j], zero past N.
// W is NR (a panel) or STRIP (the AVX2 driver's strip), a constant at each call.
CK_ALWAYS_INLINE void pack_columns(const int W, float *restrict bp, const float *restrict B, int64_t ldb, int trans_b, int64_t k0,
                                   int64_t kc, int64_t n0, int64_t N) {
    const int64_t nr = ck_min64(W, N - n0);
    if (!trans_b) {
        for (int64_t k = 0; k < kc; k++) {
            const float *src = B + (k0 + k) * ldb + n0;
            float *dst = bp + k * W;
            for (int64_t j = 0; j < nr; j++) dst[j] = src[j];
            for (int64_t j = nr; j < W; j++) dst[j] = 0.0f;
        }
    } else {
        for (int64_t j = 0; j < nr; j++) {
            const float *src = B + (n0 + j) * ldb + k0;
            for (int64_t k = 0; k < kc; k++) bp[k * W + j] = src[k];
        }
        for (int64_t j = nr; j < W; j++)
            for (int64_t k = 0; k < kc; k++) bp[k * W + j] = 0.0f;
    }
}

// 8-float vectors, the AVX2 tile's (ck_vf16 is the AVX-512 tile's).
typedef float ck_vf8 __attribute__((vector_size(32)));
CK_ALWAYS_INLINE ck_vf8 ck_vload8(const float *p) { ck_vf8 v; memcpy(&v, p, sizeof v); return v; }

// A row of a C tile held in two vectors of W floats: c[0 ..< cols] ← alpha · acc + beta · c (beta = 0:
// c is not read). One definition for both tiles, so they round alike.
#define DEFINE_STORE_ROW(name, vec, W)                                                                   \
    CK_ALWAYS_INLINE void name(float *restrict c, vec a0, vec a1, int64_t cols, float alpha, float beta) { \
        if (cols == 2 * W) {                                                                             \
            vec r0 = alpha * a0, r1 = alpha * a1, c0, c1;                                                \
            if (beta != 0.0f) {                                                                          \
                memcpy(&c0, c, sizeof c0); memcpy(&c1, c + W, sizeof c1);                                \
                r0 += beta * c0; r1 += beta * c1;                                                        \
            }                                                                                            \
            memcpy(c, &r0, sizeof r0); memcpy(c + W, &r1, sizeof r1);                                    \
            return;                                                                                      \
        }                                                                                                \
        for (int64_t j = 0; j < cols; j++) {                                                             \
            float v = alpha * (j < W ? a0[j] : a1[j - W]);                                               \
            c[j] = beta != 0.0f ? v + beta * c[j] : v;                                                   \
        }                                                                                                \
    }
DEFINE_STORE_ROW(store_row, ck_vf16, 16)
DEFINE_STORE_ROW(store_strip_row, ck_vf8, 8)

// One tile of ROWS rows (a compile-time constant at every call) over kc: op(A)[r][k] is at
// a[r·a_rs + k·a_ks] with one of the strides 1. The 2·ROWS accumulators stay in registers.
// With SUM (a constant), the tile also sums each of its rows of op(A) over k, in k order, into
// rowsum[r] (overwritten when sum_accumulate is 0, else added to): a Linear layer's bias gradient
// rides on its weight-gradient product, whose op(A) is the output gradient transposed.
// SUM = 1 adds each row's element as a scalar: ROWS more floating-point adds per k, on the ports the
// FMAs need (the weight-gradient products ran 6-16% slower with the sums than without). SUM = 2,
// for op(A) = Aᵀ (a_rs = 1) when 16 floats from a + k·a_ks are inside A's row (the caller checks):
// the tile's ROWS values at k are adjacent, so one 16-lane load and one vector add per k sum all
// rows; lane r adds the same values in the same k order as SUM = 1, so the bits are the same.
CK_ALWAYS_INLINE void tile(const int ROWS, const int SUM, int64_t kc, const float *restrict a, int64_t a_rs, int64_t a_ks,
                           const float *restrict bp, int64_t b_ks, float *restrict c, int64_t ldc, int64_t cols, float alpha, float beta,
                           float *restrict rowsum, int sum_accumulate) {
    ck_vf16 acc0[MR], acc1[MR], vsums = (ck_vf16){0};
    float sums[MR];
    for (int r = 0; r < ROWS; r++) { acc0[r] = (ck_vf16){0}; acc1[r] = (ck_vf16){0}; sums[r] = 0.0f; }
    // The tile's rows of C, fetched for writing while the k loop runs: C is written once per tile and
    // its lines are in no cache, so the stores at the end of the tile would each wait for one (the
    // forward products with K = 192: 143 → 161-184 GFLOP/s in the MAE step; the step 1.06-1.13x).
    for (int r = 0; r < ROWS; r++) { __builtin_prefetch(c + r * ldc, 1, 3); __builtin_prefetch(c + r * ldc + 16, 1, 3); }
    for (int64_t k = 0; k < kc; k++) {
        const ck_vf16 b0 = ck_vload(bp + k * b_ks), b1 = ck_vload(bp + k * b_ks + 16);
        const float *ak = a + k * a_ks;
        // Rows PREFETCH_K steps ahead: B's (two lines) and, for op(A) = Aᵀ, A's. Their strides of
        // kilobytes cross a page every step or two, where the hardware prefetchers stop; in the
        // step these operands come cold (x saved by the forward, dout just written). Prefetches
        // past the end of an operand are harmless (they never fault).
        __builtin_prefetch(bp + (k + PREFETCH_K) * b_ks);
        __builtin_prefetch(bp + (k + PREFETCH_K) * b_ks + 16);
        if (a_rs == 1) {
            __builtin_prefetch(ak + PREFETCH_K * a_ks);
            __builtin_prefetch(ak + PREFETCH_K * a_ks + ROWS - 1);
        }
        if (SUM == 2) vsums += ck_vload(ak);
        #pragma clang loop unroll(full)
        for (int r = 0; r < ROWS; r++) {
            const float x = ak[r * a_rs];
            acc0[r] += x * b0;
            acc1[r] += x * b1;
            if (SUM == 1) sums[r] += x;
        }
    }
    for (int r = 0; r < ROWS; r++) store_row(c + r * ldc, acc0[r], acc1[r], cols, alpha, beta);
    if (SUM == 2) for (int r = 0; r < ROWS; r++) sums[r] = vsums[r];
    if (SUM) for (int r = 0; r < ROWS; r++) CK_PUT(sum_accumulate, rowsum[r], sums[r]);
}

// A tile of `rows` ≤ MR rows: dispatched to a tile with that many rows as a constant.
// vector_sums: the caller found 16 floats readable at every k (SUM = 2 above).
#define TILE_CASE(n) case n: \
    if (rowsum && vector_sums) tile(n, 2, kc, a, a_rs, a_ks, bp, b_ks, c, ldc, cols, alpha, beta, rowsum, sum_accumulate); \
    else if (rowsum) tile(n, 1, kc, a, a_rs, a_ks, bp, b_ks, c, ldc, cols, alpha, beta, rowsum, sum_accumulate); \
    else tile(n, 0, kc, a, a_rs, a_ks, bp, b_ks, c, ldc, cols, alpha, beta, NULL, 0); \
    break;

__attribute__((target("avx512f"))) static void tile_avx512(int64_t rows, int64_t kc, const float *a, int64_t a_rs, int64_t a_ks,
                                                           const float *bp, int64_t b_ks, float *c, int64_t ldc, int64_t cols,
                                                           float alpha, float beta, float *rowsum, int sum_accumulate, int vector_sums) {
    switch (rows) {
        TILE_CASE(1) TILE_CASE(2) TILE_CASE(3) TILE_CASE(4) TILE_CASE(5) TILE_CASE(6) TILE_CASE(7)
        TILE_CASE(8) TILE_CASE(9) TILE_CASE(10) TILE_CASE(11) TILE_CASE(12) TILE_CASE(13) TILE_CASE(14)
        default: break;
    }
}

// The AVX2 tile: ROWS ≤ 6 rows × 16 columns in 12 accumulators of 8 floats, over kc steps of packed
// operands: ap[k·8 + r] (the tile's rows of op(A) at k, adjacent) and bp[k·16 + j] (a strip of op(B)).
// The same arithmetic per element as `tile` (one fused multiply-add per k, in k order; row sums in k
// order, here one 8-float load and add per k), so both tiles give the same bits. Unrolling k by two
// spilled accumulators (0.6x). No software prefetch: both operands are read sequentially; without
// the old tile's per-k prefetches the weight-gradient products ran 7-19% faster (docs/log/benchmarks.md).
CK_ALWAYS_INLINE void tile8(const int ROWS, const int SUM, int64_t kc, const float *restrict ap, const float *restrict bp,
                            float *restrict c, int64_t ldc, int64_t cols, float alpha, float beta, float *restrict rowsum,
                            int sum_accumulate) {
    ck_vf8 acc0[MR_AVX2], acc1[MR_AVX2], sums = (ck_vf8){0};
    for (int r = 0; r < ROWS; r++) { acc0[r] = (ck_vf8){0}; acc1[r] = (ck_vf8){0}; }
    for (int r = 0; r < ROWS; r++) { __builtin_prefetch(c + r * ldc, 1, 3); __builtin_prefetch(c + r * ldc + 15, 1, 3); }
    #pragma clang loop unroll(disable)
    for (int64_t k = 0; k < kc; k++, ap += 8, bp += STRIP) {
        const ck_vf8 b0 = ck_vload8(bp), b1 = ck_vload8(bp + 8);
        if (SUM) sums += ck_vload8(ap);
        #pragma clang loop unroll(full)
        for (int r = 0; r < ROWS; r++) {
            acc0[r] += ap[r] * b0;
            acc1[r] += ap[r] * b1;
        }
    }
    for (int r = 0; r < ROWS; r++) store_strip_row(c + r * ldc, acc0[r], acc1[r], cols, alpha, beta);
    if (SUM) for (int r = 0; r < ROWS; r++) CK_PUT(sum_accumulate, rowsum[r], sums[r]);
}

#define TILE8_CASE(n) case n: \
    if (rowsum) tile8(n, 1, kc, ap, bp, c, ldc, cols, alpha, beta, rowsum, sum_accumulate); \
    else tile8(n, 0, kc, ap, bp, c, ldc, cols, alpha, beta, NULL, 0); \
    break;

__attribute__((target("avx2,fma"))) static void tile_avx2(int64_t rows, int64_t kc, const float *ap, const float *bp, float *c,
                                                          int64_t ldc, int64_t cols, float alpha, float beta, float *rowsum,
                                                          int sum_accumulate) {
    switch (rows) {
        TILE8_CASE(1) TILE8_CASE(2) TILE8_CASE(3) TILE8_CASE(4) TILE8_CASE(5) TILE8_CASE(6)
        default: break;
    }
}

CK_CLONES static void tile_portable(int64_t rows, int64_t kc, const float *a, int64_t a_rs, int64_t a_ks,
                                    const float *bp, int64_t b_ks, float *c, int64_t ldc, int64_t cols, float alpha, float beta,
                                    float *rowsum, int sum_accumulate) {
    const int vector_sums = 0;   // a 16-lane vector is four SSE registers here: no gain
    switch (rows) {
        TILE_CASE(1) TILE_CASE(2) TILE_CASE(3) TILE_CASE(4)
        default: break;
    }
}

// The bias epilogue of a Linear layer on a finished tile of C (still in L1): bias[j0 + j] added (the
// same arithmetic as ck_bias_add_forward, which the BLAS path runs as a separate pass).
CK_CLONES static void bias_epilogue(float *c, int64_t ldc, int64_t rows, int64_t cols, const float *bias) {
    for (int64_t r = 0; r < rows; r++) {
        float *restrict cr = c + r * ldc;
        #pragma omp simd
        for (int64_t j = 0; j < cols; j++) cr[j] += bias[j];
    }
}

// The tile's rows i0 ..< i0 + rows of op(A) over k0 ..< k0 + kc, packed as ap[k·8 + r] = op(A)[i0 + r][k0 + k]:
// the tile's values at k in one aligned 8-float load. For op(A) = Aᵀ where 8 floats from i0 are inside
// A's row they are copied whole (lanes past `rows` are the next tile's, never read as this tile's);
// else zeros pad them.
static void pack_a_tile(float *restrict ap, const float *restrict A, int64_t lda, int trans_a, int64_t k0, int64_t kc, int64_t i0,
                        int64_t rows) {
    if (trans_a && i0 + 8 <= lda) {
        for (int64_t k = 0; k < kc; k++) memcpy(ap + k * 8, A + (k0 + k) * lda + i0, 8 * sizeof(float));
        return;
    }
    for (int64_t r = rows; r < 8; r++)
        for (int64_t k = 0; k < kc; k++) ap[k * 8 + r] = 0.0f;
    if (trans_a) {
        for (int64_t k = 0; k < kc; k++)
            for (int64_t r = 0; r < rows; r++) ap[k * 8 + r] = A[(k0 + k) * lda + i0 + r];
    } else {
        for (int64_t r = 0; r < rows; r++) {   // row by row: each row a sequential read
            const float *src = A + (i0 + r) * lda + k0;
            for (int64_t k = 0; k < kc; k++) ap[k * 8 + r] = src[k];
        }
    }
}

// Row k of a block of op(B) = B (its nc columns at src) into the strips, bp[s][k][j] = src[s·16 + j],
// zero past nc: B is read along its rows, one stream (strip by strip, it came from DRAM at a stride
// of one row per k: a third of a weight-gradient product's time went to packing).
static void pack_strips_row(float *restrict bp, const float *restrict src, int64_t nc, int64_t strips, int64_t kc, int64_t k) {
    for (int64_t s = 0; s < strips; s++) {
        float *dst = bp + (s * kc + k) * STRIP;
        const int64_t n = ck_min64(STRIP, nc - s * STRIP);
        if (n == STRIP) memcpy(dst, src + s * STRIP, STRIP * sizeof(float));
        else for (int64_t j = 0; j < STRIP; j++) dst[j] = j < n ? src[s * STRIP + j] : 0.0f;
    }
}

// The AVX2 CPUs' driver, blocked for their caches (Zen 3: L1 32 KB 8-way, L2 512 KB) as BLIS does:
// op(B) is packed per block of K into strips of 16 columns (all of N within PACK_MAX_FLOATS, else in
// blocks of N), read along B's rows; op(A) per block of row tiles as [tile][k][8] (≤ AVX2_A_FLOATS,
// kept in L2). Each strip (16 KB at KC_BLOCK, in L1) then passes every tile of the block. A thread
// owns whole blocks of rows. Read in place instead, a strip or a tile at a row stride of kilobytes
// put its k rows in a few of L1's sets (1024 columns: one set), and the weight-gradient products ran
// at 0.6-0.85x OpenBLAS (docs/log/benchmarks.md has what this layout measures). The same K blocks and
// per-element order as every other tile: the same bits.
static void matmul_avx2(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                        const float *B, int64_t ldb, float beta, float *C, int64_t ldc, const ck_linear_epilogue *ep) {
    const int64_t tiles = (M + MR_AVX2 - 1) / MR_AVX2;
    const int64_t kc_max = k_block(K);
    const int64_t nc_max = ck_max64(STRIP, PACK_MAX_FLOATS / kc_max / STRIP * STRIP);
    const int parallel = M * N * K >= 64 * CK_PAR_MIN;
    const int64_t threads = parallel ? ck_get_num_threads() : 1;
    // Row tiles per block: the block's op(A) within AVX2_A_FLOATS, and at least one block per thread.
    const int64_t block_tiles = ck_max64(1, ck_min64(AVX2_A_FLOATS / (kc_max * 8), (tiles + threads - 1) / threads));
    const int64_t blocks = (tiles + block_tiles - 1) / block_tiles;
    float *const bp = pack_buffer;
    for (int64_t n0 = 0; n0 < N; n0 += nc_max) {
        const int64_t nc = ck_min64(nc_max, N - n0), strips = (nc + STRIP - 1) / STRIP;
        for (int64_t k0 = 0; k0 < K; k0 += kc_max) {
            const int64_t kc = ck_min64(kc_max, K - k0);
            const float b = k0 == 0 ? beta : 1.0f;   // later K blocks add to the first block's result
            const int sum_acc = k0 == 0 ? (ep ? ep->row_sums.accumulate : 0) : 1;
            #pragma omp parallel if (parallel)
            {
                if (trans_b) {
                    #pragma omp for schedule(static)
                    for (int64_t s = 0; s < strips; s++) pack_columns(STRIP, bp + s * STRIP * kc, B, ldb, 1, k0, kc, n0 + s * STRIP, N);
                } else {
                    #pragma omp for schedule(static)
                    for (int64_t k = 0; k < kc; k++) pack_strips_row(bp, B + (k0 + k) * ldb + n0, nc, strips, kc, k);
                }
                float ap[AVX2_A_FLOATS] __attribute__((aligned(32)));   // this thread's block of op(A), packed
                #pragma omp for schedule(static)
                for (int64_t blk = 0; blk < blocks; blk++) {
                    const int64_t t0 = blk * block_tiles, t1 = ck_min64(tiles, t0 + block_tiles);
                    for (int64_t t = t0; t < t1; t++)
                        pack_a_tile(ap + (t - t0) * kc * 8, A, lda, trans_a, k0, kc, t * MR_AVX2, ck_min64(MR_AVX2, M - t * MR_AVX2));
                    for (int64_t s = 0; s < strips; s++) {
                        const int64_t j0 = n0 + s * STRIP, cols = ck_min64(STRIP, N - j0);
                        for (int64_t t = t0; t < t1; t++) {
                            const int64_t i0 = t * MR_AVX2, rows = ck_min64(MR_AVX2, M - i0);
                            float *c = C + i0 * ldc + j0;
                            // op(A)'s row sums ride on the first strip's tiles, every K block adding to the last.
                            float *sum = ep && ep->row_sums.data && j0 == 0 ? ep->row_sums.data + i0 : NULL;
                            tile_avx2(rows, kc, ap + (t - t0) * kc * 8, bp + s * STRIP * kc, c, ldc, cols, alpha, b, sum, sum_acc);
                            if (ep && ep->bias && k0 + kc == K) bias_epilogue(c, ldc, rows, cols, ep->bias + j0);   // on the final sums
                        }
                    }
                }
            }
        }
    }
}

// The tile this process runs: the level the row kernels are dispatched for (ck_cpu_level: the CPU's,
// or the one a TESSERA_CPU build was made for, whose tests then exercise that tile).
const char *ck_matmul_tile_name(void) {
    switch (ck_cpu_level_id()) {
    case CK_LEVEL_AVX512: return "AVX-512 14x32";
    case CK_LEVEL_AVX2: return "AVX2 6x16";
    default: return "portable 4x32";
    }
}

void ck_matmul(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    ck_matmul_epilogue(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

// The precision of this GEMM's products (ck_gemm_set_precision): fp32, or bf16 operands (below).
static int gemm_precision = CK_PRECISION_FP32;
void ck_gemm_set_precision(int precision) { gemm_precision = precision == CK_PRECISION_BF16 ? CK_PRECISION_BF16 : CK_PRECISION_FP32; }
int ck_gemm_precision(void) { return gemm_precision; }

static void matmul_bf16(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                        const float *B, int64_t ldb, float beta, float *C, int64_t ldc, const ck_linear_epilogue *ep);

void ck_matmul_epilogue(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                        const float *B, int64_t ldb, float beta, float *C, int64_t ldc, const ck_linear_epilogue *ep) {
    if (gemm_precision == CK_PRECISION_BF16) { matmul_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep); return; }
    if (ep && (ep->gelu_a || ep->b_bf16)) ck_fatal("matmul: GELU and bf16 operands are the bf16 driver's only");
    const ck_level level = ck_cpu_level_id();
    if (level == CK_LEVEL_AVX2) { matmul_avx2(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep); return; }
    const int64_t mr = level == CK_LEVEL_AVX512 ? MR : MR_PORTABLE, tiles = (M + mr - 1) / mr;
    const int64_t a_rs = trans_a ? 1 : lda, a_ks = trans_a ? lda : 1;
    const int64_t kc_max = k_block(K);
    const int64_t work = M * N * K;
    const int panel_major = M < N;
    // op(B) = B in whole 32-column panels is read in place (row stride ldb); Bᵀ and a partial last
    // panel are packed. K goes in blocks beyond KC_MAX (each block's panels shared by every row tile
    // while they are in L2), N in blocks of whole panels within the packing budget.
    const int in_place = !trans_b && N % NR == 0;
    const int64_t fit = PACK_MAX_FLOATS / (NR * kc_max);
    const int64_t nc_max = in_place ? N : ck_min64((N + NR - 1) / NR, fit > 0 ? fit : 1) * NR;
    float *const bp = pack_buffer;   // nc_max · kc_max ≤ PACK_MAX_FLOATS: fit ≥ 5 panels since kc_max ≤ KC_MAX
    for (int64_t n0 = 0; n0 < N; n0 += nc_max) {
        const int64_t nc = ck_min64(nc_max, N - n0), panels = (nc + NR - 1) / NR;
        for (int64_t k0 = 0; k0 < K; k0 += kc_max) {
            const int64_t kc = ck_min64(kc_max, K - k0);
            #pragma omp parallel if (work >= 64 * CK_PAR_MIN)
            {
                if (!in_place) {
                    #pragma omp for schedule(static)
                    for (int64_t p = 0; p < panels; p++) pack_columns(NR, bp + p * NR * kc, B, ldb, trans_b, k0, kc, n0 + p * NR, N);
                }
                // (row tile, panel) pairs, ordered so that a thread's consecutive pairs share the tile
                // of A (tile-major) when op(A) has at least as many rows as op(B) has columns, else the
                // panel of B (panel-major: the weight gradients of layers that widen, e.g. fc2's
                // 192 × 768, measured 1.09x, and the decoder's 128 × 512, 1.23x; tile-major stays
                // 1.11-1.14x faster where M > N).
                #pragma omp for schedule(static)
                for (int64_t item = 0; item < tiles * panels; item++) {
                    const int64_t t = panel_major ? item % tiles : item / panels, p = panel_major ? item / tiles : item % panels;
                    // The tile of C at rows i0.., columns j0.., over k0 ..< k0 + kc, from its panel of op(B).
                    const int64_t i0 = t * mr, j0 = n0 + p * NR;
                    const int64_t rows = ck_min64(mr, M - i0), cols = ck_min64(NR, N - j0);
                    const float *panel = in_place ? B + k0 * ldb + j0 : bp + p * NR * kc;
                    const int64_t b_ks = in_place ? ldb : NR;
                    const float *a = trans_a ? A + k0 * lda + i0 : A + i0 * lda + k0;
                    float *c = C + i0 * ldc + j0;
                    const float b = k0 == 0 ? beta : 1.0f;   // later K blocks add to the first block's result
                    // op(A)'s row sums ride on the first panel's tiles, every K block adding to the last.
                    float *sum = ep && ep->row_sums.data && j0 == 0 ? ep->row_sums.data + i0 : NULL;
                    const int sum_acc = k0 == 0 ? (ep ? ep->row_sums.accumulate : 0) : 1;
                    // The vector row sums read op(A) = Aᵀ at columns i0 ..< i0 + 16 of A's rows: inside
                    // them unless this is the last tile.
                    if (level == CK_LEVEL_AVX512)
                        tile_avx512(rows, kc, a, a_rs, a_ks, panel, b_ks, c, ldc, cols, alpha, b, sum, sum_acc, trans_a && i0 + 16 <= lda);
                    else tile_portable(rows, kc, a, a_rs, a_ks, panel, b_ks, c, ldc, cols, alpha, b, sum, sum_acc);
                    if (ep && ep->bias && k0 + kc == K) bias_epilogue(c, ldc, rows, cols, ep->bias + j0);   // on the final sums
                }
            }
        }
    }
}

// ---- bf16 products (the precision setting, ck_gemm_set_precision) ----
//
// C = alpha · op(A) · op(B) + beta · C as above, but the operands rounded to bf16 while they are
// packed, their products summed in fp32: what `vdpbf16ps` computes, at twice the fp32 FMA rate on
// AMD Zen 4/5. One definition of the arithmetic, which every path below and the reference in
// Tests/CKernelsRef follow bit for bit:
//   * rounding: fp32 → bf16 to nearest even, fp32 denormals read as ±0, NaN kept (quiet) — what
//     `vcvtne2ps2bf16` does (checked on Zen 4 over 128M random values);
//   * sums: op(A)'s row and op(B)'s column in pairs of k (k0 + 2q, k0 + 2q + 1, a zero past K); per
//     pair, acc ← acc + a[odd]·b[odd], then acc ← acc + a[even]·b[even], each rounded to nearest even
//     (a bf16 × bf16 product is exact in fp32), denormal sums flushed to ±0 and a denormal acc read as
//     ±0 — the documented `vdpbf16ps` (Intel SDM), matched by Zen 4 on 32M random lanes;
//   * the same K blocks (k_block), the same per-block store (alpha · acc + beta · C) and epilogues as
//     the fp32 tiles; bias-gradient row sums in fp32 from the unrounded op(A), in k order (the fp32
//     path's bits).
// So the AVX512-BF16 tile and the portable one (any CPU: a slow emulation, for --precision bf16
// where the instruction is missing and for tests) give the same bits, at any thread count.

#define KP_MAX ((KC_MAX + 1) / 2)   // pairs per K block at most

// A row of a tile's sums stored as the fp32 tiles store theirs (store_row), from memory: vectors do
// not cross the call into a function compiled for another instruction set.
CK_ALWAYS_INLINE void store_row_floats(float *restrict c, const float *acc, int64_t cols, float alpha, float beta) {
    store_row(c, ck_vload(acc), ck_vload(acc + 16), cols, alpha, beta);
}

// The two conversions of fp32 values into bf16 pairs (declared in ck_internal.h; attention.c packs its
// operands with them too). ck_bf16_pairs: n pairs from two rows, dst[j] = (even[j], odd[j]), odd null
// for a missing row (zeros). The AVX512-BF16 conversion (`vcvtne2ps2bf16`, then one permute that interleaves the two halves) where
// the CPU has it, 16 pairs per step; ck_bf16_pair elsewhere: the same bits (the rule above).
#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void pairs_avx512(uint32_t *restrict dst, const float *restrict even,
                                                                               const float *restrict odd, int64_t n) {
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 e = _mm512_loadu_ps(even + j), o = odd ? _mm512_loadu_ps(odd + j) : _mm512_setzero_ps();
        _mm512_storeu_si512(dst + j, _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(o, e)));
    }
    if (j < n) {   // the last 1-15 pairs, masked (a tile of 14 rows is all tail)
        const __mmask16 m = (__mmask16)((1u << (n - j)) - 1);
        const __m512 e = _mm512_maskz_loadu_ps(m, even + j), o = odd ? _mm512_maskz_loadu_ps(m, odd + j) : _mm512_setzero_ps();
        _mm512_mask_storeu_epi32(dst + j, m, _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(o, e)));
    }
}
__attribute__((target("avx512f,avx512bf16"))) static inline void pack_row_avx512(uint32_t *restrict dst, const float *restrict x) {
    _mm512_storeu_si512(dst, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 16), _mm512_loadu_ps(x)));
}
#endif
void ck_bf16_pairs(uint32_t *restrict dst, const float *restrict even, const float *restrict odd, int64_t n, int fast) {
#if defined(__x86_64__)
    if (fast) { pairs_avx512(dst, even, odd, n); return; }
#endif
    for (int64_t j = 0; j < n; j++) dst[j] = ck_bf16_pair(even[j], odd ? odd[j] : 0.0f);
}

// ck_bf16_row_pairs: the (kc + 1) / 2 pairs of kc values lying along a row (a zero after an odd last
// one): dst[q] = (x[2q], x[2q + 1]).
void ck_bf16_row_pairs(uint32_t *restrict dst, const float *restrict x, int64_t kc, int fast) {
    int64_t q = 0;
#if defined(__x86_64__)
    if (fast) {   // 32 consecutive floats are 16 pairs in order: one conversion, no permute
        for (; 2 * q + 32 <= kc; q += 16) pack_row_avx512(dst + q, x + 2 * q);
    }
#endif
    for (; q < (kc + 1) / 2; q++) dst[q] = ck_bf16_pair(x[2 * q], 2 * q + 1 < kc ? x[2 * q + 1] : 0.0f);
}

// The NR columns of op(B) from n0 over rows k0 ..< k0 + kc as pairs: bp[q·NR + j] = (op(B)[k0 + 2q][n0 + j],
// op(B)[k0 + 2q + 1][n0 + j]), zeros past K and past N.
static void pack_pairs_b(uint32_t *restrict bp, const float *restrict B, int64_t ldb, int trans_b, int64_t k0, int64_t kc,
                         int64_t n0, int64_t N, int fast) {
    const int64_t nr = ck_min64(NR, N - n0), kp = (kc + 1) / 2;
    if (trans_b) {   // op(B)'s columns are B's rows (the forward's weights): each converted as it lies, then
        uint32_t row[KP_MAX];   // spread down its column of the panel
        for (int64_t j = 0; j < nr; j++) {
            ck_bf16_row_pairs(row, B + (n0 + j) * ldb + k0, kc, fast);
            for (int64_t q = 0; q < kp; q++) bp[q * NR + j] = row[q];
        }
    } else {         // op(B)'s rows are B's: two rows, converted together
        for (int64_t q = 0; q < kp; q++) {
            const float *even = B + (k0 + 2 * q) * ldb + n0;
            ck_bf16_pairs(bp + q * NR, even, 2 * q + 1 < kc ? even + ldb : NULL, nr, fast);
        }
    }
    for (int64_t q = 0; nr < NR && q < kp; q++)
        for (int64_t j = nr; j < NR; j++) bp[q * NR + j] = 0;
}

// op(A)'s rows i0 ..< i0 + rows over k0 ..< k0 + kc as pairs, for the tile to read pair q of row r at
// ap[r·a_rs + q·a_qs]. op(A) = Aᵀ (the weight gradients): the rows' values at k are adjacent in A, so
// each pair of A's rows is converted together, ap[q·width + r] (a_rs = 1, a_qs = width ≥ rows). op(A) =
// A: a row's pairs are adjacent in A, so each row is converted as it lies, ap[r·kp + q] (a_rs = kp,
// a_qs = 1). Zeros past K.
// With gelu (op(A) = A only), each row's values go through the GELU first: op(A) = gelu(A).
static void pack_pairs_a(uint32_t *restrict ap, const float *restrict A, int64_t lda, int trans_a, int64_t k0, int64_t kc,
                         int64_t i0, int64_t rows, int64_t width, int gelu, int fast) {
    const int64_t kp = (kc + 1) / 2;
    if (gelu) {
        float row[KC_MAX];
        for (int64_t r = 0; r < rows; r++) {
            ck_gelu_values(row, A + (i0 + r) * lda + k0, kc);
            ck_bf16_row_pairs(ap + r * kp, row, kc, fast);
        }
        return;
    }
    if (trans_a) {
        for (int64_t q = 0; q < kp; q++) {
            const float *even = A + (k0 + 2 * q) * lda + i0;
            ck_bf16_pairs(ap + q * width, even, 2 * q + 1 < kc ? even + lda : NULL, rows, fast);
        }
        return;
    }
    for (int64_t r = 0; r < rows; r++) ck_bf16_row_pairs(ap + r * kp, A + (i0 + r) * lda + k0, kc, fast);
}

// The NR columns from n0 over rows k0 ..< k0 + kc of op(B) = B given as bf16 values (row stride ldb), as
// pack_pairs_b lays them out: the two rows' values side by side, nothing to round.
static void pack_pairs_b_bf16(uint32_t *restrict bp, const uint16_t *restrict B, int64_t ldb, int64_t k0, int64_t kc, int64_t n0,
                              int64_t N) {
    const int64_t nr = ck_min64(NR, N - n0), kp = (kc + 1) / 2;
    for (int64_t q = 0; q < kp; q++) {
        const uint16_t *even = B + (k0 + 2 * q) * ldb + n0, *odd = 2 * q + 1 < kc ? even + ldb : NULL;
        uint32_t *restrict dst = bp + q * NR;
        if (odd) {
            #pragma omp simd
            for (int64_t j = 0; j < nr; j++) dst[j] = (uint32_t)even[j] | (uint32_t)odd[j] << 16;
        } else {
            for (int64_t j = 0; j < nr; j++) dst[j] = even[j];
        }
        for (int64_t j = nr; j < NR; j++) dst[j] = 0;
    }
}

// Row sums of op(A)'s rows i0 ..< i0 + rows over k0 ..< k0 + kc, unrounded, in k order (the fp32 tiles'
// bias-gradient sums), put into rowsum by the gradient contract.
CK_CLONES static void row_sums_fp32(float *restrict rowsum, int accumulate, const float *restrict A, int64_t lda, int trans_a, int64_t k0,
                                    int64_t kc, int64_t i0, int64_t rows) {
    float sums[MR] = {0};
    if (trans_a && i0 + CK_VW <= lda) {   // the rows' values at k are adjacent: one 16-lane add per k, in a
        ck_vf16 acc = (ck_vf16){0};          // register, each lane in k order (lanes past `rows` unused)
        for (int64_t k = k0; k < k0 + kc; k++) {
            ck_vf16 v;
            memcpy(&v, A + k * lda + i0, sizeof v);
            acc += v;
        }
        for (int64_t r = 0; r < rows; r++) sums[r] = acc[r];
    } else if (trans_a) {
        for (int64_t k = k0; k < k0 + kc; k++)
            for (int64_t r = 0; r < rows; r++) sums[r] += A[k * lda + i0 + r];
    } else {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = k0; k < k0 + kc; k++) sums[r] += A[(i0 + r) * lda + k];
    }
    for (int64_t r = 0; r < rows; r++) CK_PUT(accumulate, rowsum[r], sums[r]);
}

// The AVX512-BF16 tile: ROWS ≤ MR rows × 32 columns in 2·ROWS accumulators, one `vdpbf16ps` per row and
// half-panel per pair of k, op(A)'s pair broadcast from memory. ROWS and the layout of op(A)'s pairs
// (Q_MAJOR: ap[q·a_qs + r], the rows of a pair adjacent; else ap[r·a_rs + q]) are constants at each
// call, so the row loop unrolls with fixed offsets. Written as a macro-generated switch first, clang
// interchanged the loops (one accumulator over all k, B reloaded per row): 296 GFLOP/s on the forward
// product; this form keeps the 28 accumulators in registers.
#if defined(__x86_64__)
static inline __attribute__((always_inline, target("avx512f,avx512bf16")))
void tile_bf16_rows(const int ROWS, const int Q_MAJOR, int64_t kp, const uint32_t *restrict ap, int64_t a_stride,
                    const uint32_t *restrict bp, float *restrict c, int64_t ldc, int64_t cols, float alpha, float beta) {
    __m512 acc0[MR], acc1[MR];
    #pragma clang loop unroll(full)
    for (int r = 0; r < ROWS; r++) { acc0[r] = _mm512_setzero_ps(); acc1[r] = _mm512_setzero_ps(); }
    for (int r = 0; r < ROWS; r++) { __builtin_prefetch(c + r * ldc, 1, 3); __builtin_prefetch(c + r * ldc + 16, 1, 3); }
    for (int64_t q = 0; q < kp; q++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + q * NR), b1 = (__m512bh)_mm512_loadu_si512(bp + q * NR + 16);
        const uint32_t *aq = Q_MAJOR ? ap + q * a_stride : ap + q;
        #pragma clang loop unroll(full)
        for (int r = 0; r < ROWS; r++) {
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)(Q_MAJOR ? aq[r] : aq[r * a_stride]));
            acc0[r] = _mm512_dpbf16_ps(acc0[r], a, b0);
            acc1[r] = _mm512_dpbf16_ps(acc1[r], a, b1);
        }
    }
    #pragma clang loop unroll(full)
    for (int r = 0; r < ROWS; r++) {
        float out[NR];
        _mm512_storeu_ps(out, acc0[r]); _mm512_storeu_ps(out + 16, acc1[r]);
        store_row_floats(c + r * ldc, out, cols, alpha, beta);
    }
}

#define BF16_TILE(n) case n: \
    if (a_rs == 1) tile_bf16_rows(n, 1, kp, ap, a_qs, bp, c, ldc, cols, alpha, beta); \
    else tile_bf16_rows(n, 0, kp, ap, a_rs, bp, c, ldc, cols, alpha, beta); \
    break;

__attribute__((target("avx512f,avx512bf16"))) static void tile_bf16_avx512(int64_t rows, int64_t kp, const uint32_t *ap, int64_t a_rs,
                                                                          int64_t a_qs, const uint32_t *bp, float *c, int64_t ldc,
                                                                          int64_t cols, float alpha, float beta) {
    switch (rows) {
        BF16_TILE(1) BF16_TILE(2) BF16_TILE(3) BF16_TILE(4) BF16_TILE(5) BF16_TILE(6) BF16_TILE(7)
        BF16_TILE(8) BF16_TILE(9) BF16_TILE(10) BF16_TILE(11) BF16_TILE(12) BF16_TILE(13) BF16_TILE(14)
        default: break;
    }
}
#else
static void tile_bf16_avx512(int64_t rows, int64_t kp, const uint32_t *ap, int64_t a_rs, int64_t a_qs, const uint32_t *bp, float *c,
                             int64_t ldc, int64_t cols, float alpha, float beta) {}
#endif

// The portable tile: the same sums, one lane at a time (CPUs without AVX512-BF16; tests).
CK_CLONES static void tile_bf16_portable(int64_t rows, int64_t kp, const uint32_t *ap, int64_t a_rs, int64_t a_qs, const uint32_t *bp,
                                         float *c, int64_t ldc, int64_t cols, float alpha, float beta) {
    for (int64_t r = 0; r < rows; r++) {
        float out[NR];
        for (int j = 0; j < NR; j++) {
            float acc = 0.0f;
            for (int64_t q = 0; q < kp; q++) {
                const uint32_t a = ap[r * a_rs + q * a_qs], b = bp[q * NR + j];
                acc = ck_flush_denormal(acc + ck_bf16_half(a, 1) * ck_bf16_half(b, 1));
                acc = ck_flush_denormal(acc + ck_bf16_half(a, 0) * ck_bf16_half(b, 0));
            }
            out[j] = acc;
        }
        store_row_floats(c + r * ldc, out, cols, alpha, beta);
    }
}

// Which bf16 kernels run (ck_internal.h): the AVX512-BF16 ones where the CPU has it (and the kernels are
// not a TESSERA_CPU build for a lower level, whose tests then run the portable ones), else the portable ones.
int ck_bf16_instructions(void) {
    static int cached = -1;
    if (cached < 0) cached = ck_cpu_level_id() == CK_LEVEL_AVX512 && ck_cpu_has_avx512_bf16();
    return cached;
}

const char *ck_matmul_bf16_tile_name(void) { return ck_bf16_instructions() ? "AVX512-BF16 14x32" : "portable bf16 14x32"; }

// The share [lo, hi) of n items that thread `tid` of `threads` takes: contiguous, the first n % threads
// one longer. Every loop of the bf16 driver's parallel region is divided by it, so which thread does what
// is a function of the trip count alone: a thread knows while computing one block which rows of the next
// it will pack, and each tile of C goes to the same thread in every K block.
static inline void share(int64_t n, int tid, int threads, int64_t *lo, int64_t *hi) {
    const int64_t base = n / threads, extra = n % threads;
    *lo = tid * base + ck_min64(tid, extra);
    *hi = *lo + base + (tid < extra);
}

// Part `part` of `parts` of rows [r0, r0 + rows) × columns [c0, c0 + cols) of a row-major matrix of
// `size`-byte elements, by whole rows, asked into L2.
static inline void prefetch_part(const void *x, int64_t size, int64_t ld, int64_t r0, int64_t rows, int64_t c0, int64_t cols,
                                 int64_t part, int64_t parts) {
    for (int64_t r = r0 + part * rows / parts; r < r0 + (part + 1) * rows / parts; r++)
        ck_prefetch_l2((const float *)((const char *)x + (r * ld + c0) * size), cols * size / (int64_t)sizeof(float));
}

// Two sets of pair buffers, which blocks alternate between (below).
#define PACK_A_WORDS (128 * 1024)   // op(A)'s shared block: 512 KB
static uint32_t pairs_b[2][PACK_MAX_FLOATS] __attribute__((aligned(64)));
static uint32_t pairs_a[2][PACK_A_WORDS] __attribute__((aligned(64)));

// The driver: the fp32 driver's blocking (K blocks by k_block, N in blocks of whole panels within the
// packing budget), in one parallel region per product, every loop divided by `share`.
//   * B's panels are packed as pairs by all threads per block; so is all of op(A)'s block when it fits
//     PACK_A_WORDS (the weight gradients, whose op(A) has a few hundred rows). Otherwise each thread
//     packs the row tile its item needs, and items go tile-major so that happens once per tile and block.
//   * Blocks alternate between the two sets of buffers, so one barrier per block suffices: a thread packs
//     block b + 1 while others may still compute block b from the other set, which every thread finished
//     reading before the barrier of block b.
//   * The weight gradients prefetch the next block's op(B) rows while computing (below).
// Measured on Zen 4 (2 threads, perf on the product alone): repacking row tiles per item cost the
// panel-major weight gradients 45% of their time before op(A) was shared; a region with three
// synchronizations per K block showed 7% spinning in libomp at K = 17,920, which with one barrier
// became waiting in the packing (the rows come from memory) at no change in speed.
static void matmul_bf16(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                        const float *B, int64_t ldb, float beta, float *C, int64_t ldc, const ck_linear_epilogue *ep) {
    const int fast = ck_bf16_instructions();
    const int64_t tiles = (M + MR - 1) / MR, kc_max = k_block(K), kp_max = (kc_max + 1) / 2;
    const int64_t fit = PACK_MAX_FLOATS / (NR * kp_max);
    const int64_t nc_max = ck_min64((N + NR - 1) / NR, fit > 0 ? fit : 1) * NR;   // nc_max · kp_max ≤ PACK_MAX_FLOATS words
    const int shared_a = M * kp_max <= PACK_A_WORDS;
    // Panel-major only when op(A) is shared: a thread packs its own row tile whenever its item changes
    // tile, so without sharing the items go tile-major and each tile is packed once per block (panel-major,
    // 800 × 3072 · K 768 packed every tile 96 times: 16-21% of its time in pack_row_avx512).
    const int panel_major = shared_a && M < N;
    const int64_t k_blocks = (K + kc_max - 1) / kc_max, blocks = (N + nc_max - 1) / nc_max * k_blocks;
    const int sums = ep && ep->row_sums.data;
    // While computing the second half of its items, a thread prefetches the rows of op(B) = B it will pack
    // for the next block (the weight gradients: B read from memory once, its packing waiting on memory).
    // Measured on Zen 4, 2 threads, 7-11 alternating rounds (medians): +6-13% on the products whose B is
    // the wide operand (192×768 and 128×512 · K 12,800), -2% (noise) on 768×192 · 12,800; prefetching
    // op(A)'s rows too cost that product 8% (its packed op(A), read in strided tiles, lost L2 to them).
    const int prefetch_b = shared_a && trans_a && !trans_b;
    const int gelu_a = ep && ep->gelu_a;
    const uint16_t *const b_bf16 = ep ? ep->b_bf16 : NULL;
    if ((gelu_a && (trans_a || sums)) || (b_bf16 && trans_b)) ck_fatal("matmul: a GELU or bf16 operand must not be transposed or row-summed");
    #pragma omp parallel if (M * N * K >= 64 * CK_PAR_MIN)
    {
        uint32_t own[KP_MAX * MR] __attribute__((aligned(64)));   // this thread's row tile of op(A), as pairs
        const int tid = ck_thread_id(), threads = ck_thread_count();
        for (int64_t blk = 0; blk < blocks; blk++) {
            const int64_t n0 = blk / k_blocks * nc_max, k0 = blk % k_blocks * kc_max;
            const int64_t nc = ck_min64(nc_max, N - n0), panels = (nc + NR - 1) / NR;
            const int64_t kc = ck_min64(kc_max, K - k0), kp = (kc + 1) / 2;
            uint32_t *const bp = pairs_b[blk & 1], *const pa = pairs_a[blk & 1];
            int64_t lo, hi;
            share(panels, tid, threads, &lo, &hi);
            for (int64_t p = lo; p < hi; p++) {
                if (b_bf16) pack_pairs_b_bf16(bp + p * NR * kp, b_bf16, ldb, k0, kc, n0 + p * NR, N);
                else pack_pairs_b(bp + p * NR * kp, B, ldb, trans_b, k0, kc, n0 + p * NR, N, fast);
            }
            if (shared_a && trans_a) {   // the whole block of op(A) = Aᵀ: by pairs of A's rows, each pair whole
                share(kp, tid, threads, &lo, &hi);
                for (int64_t q = lo; q < hi; q++) {
                    const float *even = A + (k0 + 2 * q) * lda;
                    ck_bf16_pairs(pa + q * M, even, 2 * q + 1 < kc ? even + lda : NULL, M, fast);
                }
            } else if (shared_a) {       // of op(A) = A: by tiles of rows
                share(tiles, tid, threads, &lo, &hi);
                for (int64_t t = lo; t < hi; t++)
                    pack_pairs_a(pa + t * MR * kp, A, lda, 0, k0, kc, t * MR, ck_min64(MR, M - t * MR), M, gelu_a, fast);
            }
            if (shared_a && sums && n0 == 0) {   // op(A)'s row sums (the bias gradient), spread over the threads
                share(tiles, tid, threads, &lo, &hi);
                for (int64_t t = lo; t < hi; t++)
                    row_sums_fp32(ep->row_sums.data + t * MR, k0 == 0 ? ep->row_sums.accumulate : 1, A, lda, trans_a, k0, kc, t * MR,
                                  ck_min64(MR, M - t * MR));
            }
            #pragma omp barrier
            int64_t nk0 = 0, nkc = 0, nc0 = 0, ncols = 0;   // this thread's rows of the next block's op(B)
            if (prefetch_b && blk + 1 < blocks) {
                const int64_t nn0 = (blk + 1) / k_blocks * nc_max, nnc = ck_min64(nc_max, N - nn0);
                int64_t plo, phi;
                share((nnc + NR - 1) / NR, tid, threads, &plo, &phi);
                nk0 = (blk + 1) % k_blocks * kc_max; nkc = ck_min64(kc_max, K - nk0);
                nc0 = nn0 + plo * NR; ncols = ck_min64(phi * NR, nnc) - plo * NR;
            }
            share(tiles * panels, tid, threads, &lo, &hi);
            const int64_t half = lo + (hi - lo) / 2;
            int64_t packed = -1;
            for (int64_t item = lo; item < hi; item++) {
                if (ncols > 0 && item >= half) {
                    if (b_bf16) prefetch_part(b_bf16, sizeof *b_bf16, ldb, nk0, nkc, nc0, ncols, item - half, hi - half);
                    else prefetch_part(B, sizeof *B, ldb, nk0, nkc, nc0, ncols, item - half, hi - half);
                }
                const int64_t t = panel_major ? item % tiles : item / panels, p = panel_major ? item / tiles : item % panels;
                const int64_t i0 = t * MR, j0 = n0 + p * NR;
                const int64_t rows = ck_min64(MR, M - i0), cols = ck_min64(NR, N - j0);
                const uint32_t *ap;
                int64_t a_rs, a_qs;
                if (shared_a) {
                    ap = trans_a ? pa + i0 : pa + i0 * kp;
                    a_rs = trans_a ? 1 : kp; a_qs = trans_a ? M : 1;
                } else {
                    if (packed != t) { pack_pairs_a(own, A, lda, trans_a, k0, kc, i0, rows, MR, gelu_a, fast); packed = t; }
                    ap = own;
                    a_rs = trans_a ? 1 : kp; a_qs = trans_a ? MR : 1;
                }
                float *c = C + i0 * ldc + j0;
                const float b = k0 == 0 ? beta : 1.0f;   // later K blocks add to the first block's result
                if (fast) tile_bf16_avx512(rows, kp, ap, a_rs, a_qs, bp + p * NR * kp, c, ldc, cols, alpha, b);
                else tile_bf16_portable(rows, kp, ap, a_rs, a_qs, bp + p * NR * kp, c, ldc, cols, alpha, b);
                if (!shared_a && sums && j0 == 0)   // op(A)'s row sums, once per tile and K block
                    row_sums_fp32(ep->row_sums.data + i0, k0 == 0 ? ep->row_sums.accumulate : 1, A, lda, trans_a, k0, kc, i0, rows);
                if (ep && ep->bias && k0 + kc == K) bias_epilogue(c, ldc, rows, cols, ep->bias + j0);   // on the final sums
            }
        }
    }
}
