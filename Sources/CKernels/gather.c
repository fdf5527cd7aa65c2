// Masked gather / shuffle: MAE's random masking, the kept-row gather and the decoder's unshuffle.
#include "ck_internal.h"
#include "ck_gather.h"
#include <stdlib.h>

// Map a float to a uint32 whose unsigned order equals the float order (-0 < +0 ties aside).
static inline uint32_t sortable_bits(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

// Keys are (noise bits << 32 | index): sorting them ascending is a stable argsort of the noise.
void ck_masking_ids(int32_t *ids_shuffle, int32_t *ids_restore, int32_t *ids_keep, float *mask,
                    uint64_t *scratch, const float *noise, int64_t B, int64_t L, int64_t K) {
    #pragma omp parallel for schedule(static) if (B * L >= CK_PAR_MIN)
    for (int64_t b = 0; b < B; b++) {
        uint64_t *keys = scratch + b * L;
        for (int64_t l = 0; l < L; l++)
            keys[l] = ((uint64_t)sortable_bits(noise[b * L + l]) << 32) | (uint64_t)l;
        qsort(keys, (size_t)L, sizeof(uint64_t), cmp_u64);
        for (int64_t j = 0; j < L; j++) {
            int32_t l = (int32_t)(keys[j] & 0xffffffffu);
            ids_shuffle[b * L + j] = l;
            if (ids_restore) ids_restore[b * L + l] = (int32_t)j;
            if (mask) mask[b * L + l] = j < K ? 0.0f : 1.0f;
            if (ids_keep && j < K) ids_keep[b * K + j] = l;
        }
    }
}

void ck_gather_rows_forward(float *out, const float *x, const int32_t *ids, int64_t ids_bstride,
                            int64_t B, int64_t L, int64_t K, int64_t D) {
    #pragma omp parallel for schedule(static) if (B * K * D >= CK_PAR_MIN)
    for (int64_t bk = 0; bk < B * K; bk++) {
        int64_t b = bk / K, k = bk % K;
        memcpy(out + bk * D, x + (b * L + ids[b * ids_bstride + k]) * D, (size_t)D * sizeof(float));
    }
}

void ck_gather_rows_backward(ck_grad g, const float *dout, const int32_t *ids, int64_t ids_bstride,
                             int64_t B, int64_t L, int64_t K, int64_t D) {
    float *dx = ck_grad_for_scatter(g, B * L * D).data;   // rows not gathered get nothing
    // One sample per iteration: ids are distinct inside a sample, so no two threads hit one row.
    #pragma omp parallel for schedule(static) if (B * K * D >= CK_PAR_MIN)
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < K; k++) {
            float *d = dx + (b * L + ids[b * ids_bstride + k]) * D;
            const float *g = dout + (b * K + k) * D;
            #pragma omp simd
            for (int64_t i = 0; i < D; i++) d[i] += g[i];
        }
}

void ck_unshuffle_forward(float *out, const float *x, const float *mask_token, const int32_t *ids_restore,
                          int64_t B, int64_t S, int64_t L, int64_t K, int64_t D) {
    const size_t row = (size_t)D * sizeof(float);
    #pragma omp parallel for schedule(static) if (B * L * D >= CK_PAR_MIN)
    for (int64_t b = 0; b < B; b++) {
        const float *xb = x + b * (S + K) * D;
        float *ob = out + b * (S + L) * D;
        if (S) memcpy(ob, xb, (size_t)S * row);
        for (int64_t l = 0; l < L; l++) {
            int32_t r = ids_restore[b * L + l];
            memcpy(ob + (S + l) * D, r < K ? xb + (S + r) * D : mask_token, row);
        }
    }
}

void ck_unshuffle_backward(ck_grad dx, ck_grad dmask_token, const float *dout, const int32_t *ids_restore,
                           int64_t B, int64_t S, int64_t L, int64_t K, int64_t D) {
    if (dx.data) {
        // Every row of dx receives exactly one row of dout (its special row, or its kept token's position).
        const int acc = dx.accumulate;
        #pragma omp parallel for schedule(static) if (B * L * D >= CK_PAR_MIN)
        for (int64_t b = 0; b < B; b++) {
            float *dxb = dx.data + b * (S + K) * D;
            const float *gb = dout + b * (S + L) * D;
            for (int64_t s = 0; s < S; s++)
                for (int64_t i = 0; i < D; i++) CK_PUT(acc, dxb[s * D + i], gb[s * D + i]);
            for (int64_t l = 0; l < L; l++) {
                int32_t r = ids_restore[b * L + l];
                if (r >= K) continue;
                float *d = dxb + (S + r) * D;
                const float *g = gb + (S + l) * D;
                #pragma omp simd
                for (int64_t i = 0; i < D; i++) CK_PUT(acc, d[i], g[i]);
            }
        }
    }
    if (dmask_token.data) {
        // The shared token sums over every masked position: columns are split across threads and
        // each column is summed in (b, l) order, so the result does not depend on the thread count.
        #pragma omp parallel for schedule(static) if (B * L * D >= CK_PAR_MIN)
        for (int64_t i = 0; i < D; i++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < B; b++)
                for (int64_t l = 0; l < L; l++)
                    if (ids_restore[b * L + l] >= K) acc += dout[(b * (S + L) + S + l) * D + i];
            CK_PUT(dmask_token.accumulate, dmask_token.data[i], acc);
        }
    }
}
