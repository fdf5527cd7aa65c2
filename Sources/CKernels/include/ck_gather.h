#pragma once
#include <stdint.h>
#include "ck_grad.h"

// Random masking as in MAE's `random_masking`, and the row gathers around it.
// B = batch, L = patches, K = kept patches (len_keep), D = channels.
// ids are int32. "Shared" variants use one permutation for the whole batch (ids batch stride 0),
// which is what MSN's patch drop does.

/// From noise[B, L] build, per sample, the stable ascending argsort ids_shuffle[B, L], its inverse
/// ids_restore[B, L], ids_keep[B, K] = ids_shuffle[:, :K] and mask[B, L] (0 kept, 1 removed, in the
/// original patch order). scratch: B·L uint64 (caller-owned). Any output but ids_shuffle may be null.
void ck_masking_ids(int32_t *ids_shuffle, int32_t *ids_restore, int32_t *ids_keep, float *mask,
                    uint64_t *scratch, const float *noise, int64_t B, int64_t L, int64_t K);

/// out[B, K, D] = x[b, ids[b·ids_bstride + k], :]. ids_bstride = K per sample, 0 for a shared permutation.
void ck_gather_rows_forward(float *out, const float *x, const int32_t *ids, int64_t ids_bstride,
                            int64_t B, int64_t L, int64_t K, int64_t D);
/// dx[b, ids[..k], :] (=|+=) dout[b, k, :], rows not gathered zero when overwriting (ids within a
/// sample must be distinct; with a shared permutation the batch's rows are summed in batch order).
void ck_gather_rows_backward(ck_grad dx, const float *dout, const int32_t *ids, int64_t ids_bstride,
                             int64_t B, int64_t L, int64_t K, int64_t D);

/// The MAE decoder's unshuffle. x[B, S + K, D] holds S leading special rows (0 or 1: the CLS token)
/// followed by the K kept tokens in shuffled order; out[B, S + L, D] copies the special rows, then
///   out[b, S + l] = r < K ? x[b, S + r] : mask_token[D],  r = ids_restore[b, l].
void ck_unshuffle_forward(float *out, const float *x, const float *mask_token, const int32_t *ids_restore,
                          int64_t B, int64_t S, int64_t L, int64_t K, int64_t D);
/// dx[B, S + K, D] (=|+=) the rows of dout at their source positions, dmask_token[D] (=|+=) the sum of
/// dout over the masked positions. Either gradient may be null.
void ck_unshuffle_backward(ck_grad dx, ck_grad dmask_token, const float *dout, const int32_t *ids_restore,
                           int64_t B, int64_t S, int64_t L, int64_t K, int64_t D);
