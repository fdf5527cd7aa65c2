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
/// The attention with its products in bf16 (the kernels' bf16 path, ck_gemm_set_precision): Q, K, V,
/// dO, the probabilities and dS rounded to bf16 where they enter a product, sums in double.
void ref_attention_forward_bf16(float *out, const float *qkv, int64_t B, int64_t N, int64_t H, int64_t D, float scale);
void ref_attention_backward_bf16(float *dqkv, const float *dout, const float *qkv, int64_t B, int64_t N, int64_t H, int64_t D,
                                 float scale);
void ref_layernorm(float *out, const float *x, const float *w, const float *b, int64_t R, int64_t C, float eps);
void ref_batchnorm_train(float *out, const float *x, const float *w, const float *b, int64_t R, int64_t C, float eps);
void ref_l2norm(float *out, const float *x, int64_t R, int64_t C, float eps);
void ref_standardize(float *out, const float *x, int64_t R, int64_t C, float eps);
void ref_gelu(float *out, const float *x, int64_t N);
void ref_adamw(float *p, float *m, float *v, const float *g, int64_t N, int64_t N_decay, float lr, float b1,
               float b2, float eps, float wd, int64_t step);
void ref_matmul(float *out, const float *a, const float *b, int64_t M, int64_t K, int64_t N);

// Backward references (and the remaining forwards). Each backward OVERWRITES its gradients; any
// gradient pointer may be null where the kernel allows it.
void ref_unpatchify(float *imgs, const float *x, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P);
void ref_patchify_backward(float *dimgs, const float *dout, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P);
void ref_unpatchify_backward(float *dx, const float *dimgs, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P);
void ref_gather_rows_backward(float *dx, const float *dout, const int32_t *ids, int64_t ids_bstride,
                              int64_t B, int64_t L, int64_t K, int64_t D);
void ref_unshuffle_backward(float *dx, float *dmask_token, const float *dout, const int32_t *ids_restore,
                            int64_t B, int64_t S, int64_t L, int64_t K, int64_t D);
void ref_softmax_backward(float *dx, const float *dout, const float *x, int64_t R, int64_t C);
void ref_log_softmax_backward(float *dx, const float *dout, const float *x, int64_t R, int64_t C);
void ref_cross_entropy_backward(float *dlogits, float *dtarget, const float *dloss, const float *logits,
                                const float *target, int64_t R, int64_t C);
void ref_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                            int64_t R, int64_t C, float eps);
void ref_batchnorm_eval(float *out, const float *x, const float *w, const float *b, const float *running_mean,
                        const float *running_var, int64_t R, int64_t C, float eps);
void ref_batchnorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                            const float *running_mean, const float *running_var, int64_t R, int64_t C, float eps,
                            int training);
void ref_l2norm_backward(float *dx, const float *dout, const float *x, int64_t R, int64_t C, float eps);
void ref_standardize_backward(float *dx, const float *dout, const float *x, int64_t R, int64_t C, float eps);
void ref_gelu_backward(float *dx, const float *dout, const float *x, int64_t N);
void ref_bias_gelu(float *out, float *pre, const float *x, const float *bias, int64_t R, int64_t C);
void ref_bias_add(float *out, const float *x, const float *bias, int64_t R, int64_t C);
void ref_bias_add_backward(float *dx, float *dbias, const float *dout, int64_t R, int64_t C);
/// op: 0 add, 1 sub, 2 mul, 3 div; operands read through per-dim strides of the output shape (0: broadcast).
void ref_binary(int op, float *out, const float *a, const int64_t *as, const float *b, const int64_t *bs,
                const int64_t *shape, int ndim);
void ref_binary_backward(int op, float *da, float *db, const float *dout, const float *a, const int64_t *as,
                         const float *b, const int64_t *bs, const int64_t *shape, int ndim);
/// op: 0 exp, 1 log, 2 sqrt, 3 pow p, 4 scale p, 5 shift p.
void ref_unary(int op, float *out, const float *x, int64_t N, float p);
void ref_unary_backward(int op, float *dx, const float *dout, const float *x, int64_t N, float p);
void ref_sum_axis(float *out, const float *x, int64_t O, int64_t A, int64_t I);
void ref_sum_axis_backward(float *dx, const float *dout, int64_t O, int64_t A, int64_t I);
double ref_sum_all(const float *x, int64_t N);
void ref_narrow(float *out, const float *x, int64_t O, int64_t A, int64_t start, int64_t length, int64_t I);
void ref_narrow_backward(float *dx, const float *dout, int64_t O, int64_t A, int64_t start, int64_t length, int64_t I);
void ref_transpose(float *out, const float *x, int64_t Bt, int64_t M, int64_t N);
void ref_ema_update(float *teacher, const float *student, int64_t N, float momentum);
double ref_sum_squares(const float *g, int64_t N);
/// C[M, N] = alpha · op(A) · op(B) + beta · C with row strides (beta = 0: C is not read).
void ref_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *a, int64_t lda,
               const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/// The same product in bf16: operands rounded to bf16, pairs of k summed in fp32 as `vdpbf16ps` does,
/// in the kernels' K blocks (the definition in Sources/CKernels/matmul.c): the kernels' exact bits.
void ref_sgemm_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *a, int64_t lda,
                    const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
