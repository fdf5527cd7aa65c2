#pragma once
#include <stdint.h>

// Optimizer steps over one flat parameter buffer. N = total parameters. Parameters are laid out so
// the first N_decay of them receive weight decay and the rest (biases, norms, 1-D tensors) do not.

/// AdamW (Loshchilov & Hutter), as torch.optim.AdamW:
///   p ← p − lr·wd·p   (first N_decay elements only)
///   m ← β1 m + (1 − β1) g ;  v ← β2 v + (1 − β2) g²
///   p ← p − lr · (m / (1 − β1^t)) / (√(v / (1 − β2^t)) + eps)
/// step t counts from 1.
void ck_adamw_step(float *params, float *m, float *v, const float *grads, int64_t N, int64_t N_decay,
                   float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step);

/// EMA of a teacher: t ← m·t + (1 − m)·s.
void ck_ema_update(float *teacher, const float *student, int64_t N, float momentum);

/// Number of doubles of scratch ck_sum_squares needs.
int64_t ck_sum_squares_scratch(int64_t N);
/// Σ g² in double, over fixed blocks of 4096 summed in order (same bits for any thread count).
double ck_sum_squares(const float *g, int64_t N, double *scratch);

/// g ← s·g (gradient clipping by a precomputed factor).
void ck_scale(float *g, int64_t N, float s);
