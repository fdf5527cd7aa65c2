#pragma once
#include <stdint.h>
#include "ck_grad.h"

// B = batch, C = channels, Hh x Ww = image size, P = patch size, L = (Hh/P)·(Ww/P) patches.
// Patch order is MAE's `nchpwq->nhwpqc`: patch l = r·(Ww/P) + c (row-major), and inside a patch the
// feature index is (i·P + j)·C + ch (patch row, patch column, channel fastest).

/// out[B, L, P·P·C] = patchify(imgs[B, C, Hh, Ww]).
void ck_patchify_forward(float *out, const float *imgs, int64_t B, int64_t C, int64_t Hh, int64_t Ww, int64_t P);
/// dimgs[B, C, Hh, Ww] (=|+=) unpatchify(dout[B, L, P·P·C]).
void ck_patchify_backward(ck_grad dimgs, const float *dout, int64_t B, int64_t C, int64_t Hh, int64_t Ww, int64_t P);
/// imgs[B, C, Hh, Ww] = unpatchify(x[B, L, P·P·C]) (overwrites; the inverse of the forward).
void ck_unpatchify_forward(float *imgs, const float *x, int64_t B, int64_t C, int64_t Hh, int64_t Ww, int64_t P);
/// dx[B, L, P·P·C] (=|+=) patchify(dimgs[B, C, Hh, Ww]).
void ck_unpatchify_backward(ck_grad dx, const float *dimgs, int64_t B, int64_t C, int64_t Hh, int64_t Ww, int64_t P);
