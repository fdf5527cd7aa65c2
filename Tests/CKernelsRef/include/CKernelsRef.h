// Naive reference implementations of every CKernels kernel: plain loops, double accumulation, no
// OpenMP, no BLAS, no cleverness. Used by the tests and the benchmark's correctness check only.
#pragma once
#include <stdint.h>

void ref_patchify(float *out, const float *imgs, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P);
void ref_masking_ids(int32_t *ids_shuffle, int32_t *ids_restore, int32_t *ids_keep, float *mask,
                     const float *noise, int64_t B, int64_t L, int64_t K);
void ref_gather_rows(float *out, const float *x, const int32_t *ids, int64_t ids_bstride,
                     int64_t B, int64_t L, int64_t K, int64_t D);
void ref_unshuffle(float *out, const float *x, const float *mask_token, const int32_t *ids_restore,
                   int64_t B, int64_t S, int64_t L, int64_t K, int64_t D);
void ref_softmax(float *out, const float *x, int64_t R, int64_t C);
void ref_log_softmax(float *out, const float *x, int64_t R, int64_t C);
void ref_cross_entropy(float *loss, const float *logits, const float *target, int64_t R, int64_t C);
/// Materializes the full [N, N] probability matrix per head.
void ref_attention_forward(float *out, const float *qkv, int64_t B, int64_t N, int64_t H, int64_t D, float scale);
/// dqkv is overwritten (not accumulated).
void ref_attention_backward(float *dqkv, const float *dout, const float *qkv, int64_t B, int64_t N, int64_t H,
                            int64_t D, float scale);
void ref_layernorm(float *out, const float *x, const float *w, const float *b, int64_t R, int64_t C, float eps);
void ref_batchnorm_train(float *out, const float *x, const float *w, const float *b, int64_t R, int64_t C, float eps);
void ref_l2norm(float *out, const float *x, int64_t R, int64_t C, float eps);
void ref_standardize(float *out, const float *x, int64_t R, int64_t C, float eps);
void ref_gelu(float *out, const float *x, int64_t N);
void ref_adamw(float *p, float *m, float *v, const float *g, int64_t N, int64_t N_decay, float lr, float b1,
               float b2, float eps, float wd, int64_t step);
void ref_matmul(float *out, const float *a, const float *b, int64_t M, int64_t K, int64_t N);
