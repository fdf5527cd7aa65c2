#pragma once
#include <stdint.h>

/// Row-major single-precision GEMM, the only place the BLAS is called:
///   C[M, N] = alpha · op(A)[M, K] · op(B)[K, N] + beta · C
/// op(X) = X when trans_x == 0, Xᵀ when 1. lda/ldb/ldc are row strides of the stored matrices.
/// Never call it from inside an OpenMP parallel region.
void ck_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
              float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
              float beta, float *C, int64_t ldc);

/// Tessera's own GEMM (matmul.c), the same contract as ck_sgemm: AVX-512 or AVX2 tiles where the CPU
/// has them (the same bits on both), a portable tile elsewhere; the same bits at any thread count.
void ck_matmul(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/// A Linear layer's forward, out[R, Dout] = x[R, Din] · weight[Dout, Din]ᵀ + bias[Dout] (bias may be
/// null); with gelu = 1, pre[R, Dout] = that sum (saved for the backward) and out = gelu(pre). On Tessera's GEMM the
/// bias is the product's epilogue, applied to each tile while it is in L1, and the GELU a pass of its own
/// (measured faster than in the tile); on a BLAS both are separate passes (ck_bias_add_forward,
/// ck_bias_gelu_forward). The same arithmetic either way.
void ck_linear_forward(float *out, float *pre, const float *x, const float *weight, const float *bias,
                       int64_t R, int64_t Din, int64_t Dout, int gelu);
/// Its backward for dout[R, Dout]: dx[R, Din] (=|+=) dout · weight, dweight[Dout, Din] (=|+=) doutᵀ · x,
/// dbias[Dout] (=|+=) the column sums of dout (any gradient may be null). On Tessera's GEMM the bias
/// gradient is summed by the weight-gradient product's own tiles (no pass of its own).
void ck_linear_backward(ck_grad dx, ck_grad dweight, ck_grad dbias, const float *dout, const float *x,
                        const float *weight, int64_t R, int64_t Din, int64_t Dout);
/// An MLP's second layer on its first layer's pre-activation: out[R, Dout] = gelu(pre[R, Din]) ·
/// weight[Dout, Din]ᵀ + bias[Dout] (bias may be null). `hidden` is scratch of ck_gelu_linear_scratch(0, R,
/// Din) floats (null when 0): with fp32 products, or another GEMM, gelu(pre) is written there and read by
/// the product; with bf16 products on Tessera's GEMM the GELU is computed while the product packs its
/// operand. The same bits as ck_gelu_forward then ck_linear_forward either way.
void ck_gelu_linear_forward(float *out, const float *pre, float *hidden, const float *weight, const float *bias, int64_t R,
                            int64_t Din, int64_t Dout);
/// Its backward for dout[R, Dout]: dpre[R, Din] (=|+=) (dout · weight) · gelu'(pre), dweight (=|+=) doutᵀ ·
/// gelu(pre), dbias (=|+=) the column sums of dout (any gradient may be null). `hidden`: scratch of
/// ck_gelu_linear_scratch(1, R, Din) floats, for gelu(pre) (needed only for dweight). The same bits as
/// ck_gelu_forward, ck_linear_backward, then ck_gelu_backward.
void ck_gelu_linear_backward(ck_grad dpre, ck_grad dweight, ck_grad dbias, const float *dout, const float *pre, float *hidden,
                             const float *weight, int64_t R, int64_t Din, int64_t Dout);
/// Floats of scratch that ck_gelu_linear_forward (backward = 0) or ck_gelu_linear_backward (1) needs for
/// pre[R, Din]: R · Din where gelu(pre) is kept in fp32, its bf16 values (half as much) or nothing with bf16
/// products on Tessera's GEMM.
int64_t ck_gelu_linear_scratch(int backward, int64_t R, int64_t Din);
/// on = 1: routes ck_sgemm to ck_matmul (and off oneDNN); on = 0: back to the linked BLAS.
void ck_gemm_use_tessera(int on);
/// on = 1: routes ck_sgemm to oneDNN's dnnl_sgemm, loading libdnnl at the first call; returns -1
/// (and changes nothing: the GEMM in use stays) when no libdnnl can be loaded. on = 0: back to
/// OpenBLAS. Call it before any GEMM runs, from one thread (the engine does so at start-up, from
/// TESSERA_GEMM).
int ck_gemm_use_onednn(int on);
/// The GEMM ck_sgemm calls, as one value (tests save it and restore it around their own choice).
enum { CK_GEMM_OPENBLAS = 0, CK_GEMM_ONEDNN = 1, CK_GEMM_TESSERA = 2 };
int ck_gemm_choice(void);
/// Selects a GEMM by ck_gemm_choice's value; -1 (nothing changed) for oneDNN when it cannot be loaded.
int ck_gemm_choose(int choice);
/// The precision of Tessera's GEMM (ck_matmul and, when it is the GEMM in use, ck_sgemm and the Linear
/// kernels): fp32, or bf16 operands (rounded to nearest even while packed) with fp32 sums, bit for bit
/// what `vdpbf16ps` computes (matmul.c states the rule; the AVX512-BF16 tile where the CPU has it, a
/// portable tile with the same bits elsewhere). The other backends are fp32 only.
enum { CK_PRECISION_FP32 = 0, CK_PRECISION_BF16 = 1 };
void ck_gemm_set_precision(int precision);
int ck_gemm_precision(void);
/// The bf16 tile that runs here: "AVX512-BF16 14x32" or "portable bf16 14x32".
const char *ck_matmul_bf16_tile_name(void);
/// What the CPU offers for bf16 products, from CPUID: 2 for AMX (tiles and the kernel's permission to
/// use them), 1 for AVX512-BF16 on a CPU that runs it at twice its fp32 FMA rate (AMD Zen 4 and later),
/// -1 for AVX512-BF16 at a lower rate (Intel without AMX), 0 for none.
int ck_cpu_bf16_products(void);
/// Name and configuration of the GEMM in use, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ... SkylakeX".
const char *ck_gemm_backend(void);
// The BLAS's CPU kernel family (OpenBLAS core name, e.g. "Prescott", "SkylakeX").
const char *ck_gemm_core_name(void);
