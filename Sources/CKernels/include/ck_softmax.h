#pragma once
#include <stdint.h>
#include "ck_grad.h"

// R = rows, C = classes (the last axis). Numerically stable: the row max is subtracted first.

/// out[R, C] = softmax(x) over the last axis.
void ck_softmax_forward(float *out, const float *x, int64_t R, int64_t C);
/// dx (=|+=) y ⊙ (dy − ⟨y, dy⟩) per row; reads the forward's output y, not x.
void ck_softmax_backward(ck_grad dx, const float *dout, const float *out, int64_t R, int64_t C);

/// out[R, C] = x − logsumexp(x) per row.
void ck_log_softmax_forward(float *out, const float *x, int64_t R, int64_t C);
/// dx (=|+=) dy − exp(y) · Σ dy per row; reads the forward's output y.
void ck_log_softmax_backward(ck_grad dx, const float *dout, const float *out, int64_t R, int64_t C);

/// Cross-entropy with soft targets: loss[R] = −Σ_c target[r, c] · log_softmax(logits)[r, c].
void ck_cross_entropy_forward(float *loss, const float *logits, const float *target, int64_t R, int64_t C);
/// dlogits += dloss[r] · (softmax(logits) · Σ_c target − target); dtarget += −dloss[r] · log_softmax(logits).
/// Recomputes the softmax from the logits. dlogits and dtarget may be null.
void ck_cross_entropy_backward(ck_grad dlogits, ck_grad dtarget, const float *dloss, const float *logits,
                               const float *target, int64_t R, int64_t C);
