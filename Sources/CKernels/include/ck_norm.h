#pragma once
#include <stdint.h>
#include "ck_grad.h"

// R = rows (B·N tokens, or a batch for BatchNorm1d), C = channels.

/// LayerNorm over the last axis: out = (x − mean) · rstd · weight + bias, rstd = 1/√(var + eps),
/// biased variance. Saves mean[R] and rstd[R] for the backward. weight/bias may be null (no affine).
void ck_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                          const float *bias, int64_t R, int64_t C, float eps);
/// The forward's output from its saved mean[R] and rstd[R] (the same bits as ck_layernorm_forward's),
/// for a backward that recomputes the normalized rows instead of keeping them.
void ck_layernorm_apply(float *out, const float *x, const float *weight, const float *bias, const float *mean,
                        const float *rstd, int64_t R, int64_t C);
/// dx (=|+=) ..., dweight (=|+=) Σ_r dout · x̂, dbias (=|+=) Σ_r dout. Reads x, weight and the saved
/// mean/rstd. Any gradient may be null. The parameter gradients sum blocks of 64 rows into `scratch`
/// (ck_layernorm_backward_scratch(R, C) floats; may be null when neither is wanted), then the blocks
/// in order (the same bits at any thread count).
void ck_layernorm_backward(ck_grad dx, ck_grad dweight, ck_grad dbias, const float *dout, const float *x,
                           const float *weight, const float *mean, const float *rstd, float *scratch, int64_t R, int64_t C);
int64_t ck_layernorm_backward_scratch(int64_t R, int64_t C);

/// BatchNorm1d over the rows of x[R, C] (PyTorch semantics). training = 1: normalize with the batch
/// mean and biased variance, then running = (1 − momentum)·running + momentum·batch (unbiased variance
/// for running_var; running stats may be null). training = 0: normalize with the running statistics.
/// Saves mean[C] and rstd[C] (of whichever statistics were used). weight/bias may be null.
void ck_batchnorm_forward(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                          const float *x, const float *weight, const float *bias, int64_t R, int64_t C,
                          float eps, float momentum, int training);
/// Backward of the forward above with the same `training` flag. Any gradient may be null.
void ck_batchnorm_backward(ck_grad dx, ck_grad dweight, ck_grad dbias, const float *dout, const float *x,
                           const float *weight, const float *mean, const float *rstd, int64_t R, int64_t C,
                           int training);

/// SyncBatchNorm in phases (the caller sums each phase's partial sums over the processes in
/// between). sum[C] = Σ_r x, or Σ_r (x − center)² when center is non-null.
void ck_column_sums(float *sum, const float *x, const float *center, int64_t R, int64_t C);
/// out = (x − mean) · rstd · weight + bias with given statistics (weight/bias may be null).
void ck_batchnorm_apply(float *out, const float *x, const float *mean, const float *rstd, const float *weight,
                        const float *bias, int64_t R, int64_t C);
/// sdy[C] = Σ_r dout, sdyx[C] = Σ_r dout · x̂ (x̂ = (x − mean) · rstd): this process's rows.
void ck_batchnorm_backward_sums(float *sdy, float *sdyx, const float *dout, const float *x, const float *mean,
                                const float *rstd, int64_t R, int64_t C);
/// dx (=|+=) rstd · (w·dout − w·sdy/count − x̂ · w·sdyx/count), with sdy and sdyx summed over all
/// `count` rows of every process.
void ck_batchnorm_backward_apply(ck_grad dx, const float *dout, const float *x, const float *weight,
                                 const float *mean, const float *rstd, const float *sdy, const float *sdyx,
                                 float count, int64_t R, int64_t C);

/// L2-normalize rows: out = x / max(‖x‖, eps) (F.normalize). Saves norm[R] = ‖x‖.
void ck_l2norm_forward(float *out, float *norm, const float *x, int64_t R, int64_t C, float eps);
/// dx (=|+=) (dy − y⟨y, dy⟩)/‖x‖ where ‖x‖ > eps, else dy/eps. Reads the output y.
void ck_l2norm_backward(ck_grad dx, const float *dout, const float *out, const float *norm, int64_t R,
                        int64_t C, float eps);

/// MAE's norm-pix target per row: out = (x − mean) / √(var + eps), *unbiased* variance (C − 1),
/// eps inside the square root. Saves mean[R] and rstd[R]. Needs C ≥ 2.
void ck_standardize_forward(float *out, float *mean, float *rstd, const float *x, int64_t R, int64_t C, float eps);
/// dx (=|+=) rstd · (dy − mean(dy) − y · ⟨dy, y⟩/(C − 1)). Reads the output y.
void ck_standardize_backward(ck_grad dx, const float *dout, const float *out, const float *rstd, int64_t R, int64_t C);
