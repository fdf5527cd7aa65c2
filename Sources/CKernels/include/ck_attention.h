#pragma once
#include <stdint.h>
#include "ck_grad.h"

// Fused multi-head self-attention, read straight from one qkv Linear's packed output.
//   B = batch, N = tokens, H = heads, D = head dim.
//   qkv [B, N, 3, H, D]   (q = qkv[:, :, 0], k = qkv[:, :, 1], v = qkv[:, :, 2]; timm's reshape order)
//   out [B, N, H·D]       (heads concatenated, ready for the proj Linear)
//   lse [B, H, N]         (log Σ_j exp(scale · q_i·k_j): all the backward needs besides out)
// No [B, H, N, N] buffer is ever kept: the backward recomputes P = exp(scale · Q Kᵀ − lse).
// Parallel over B·H. Per-thread scratch is caller-owned: ck_attention_scratch_floats(N, D) floats for
// each of ck_get_num_threads() threads, contiguous.
// Under ck_gemm_set_precision(CK_PRECISION_BF16) the products of sequences longer than 16 take bf16
// operands with fp32 sums, by the GEMM's bf16 rule (attention.c); the softmax and its gradient stay fp32.

/// Floats of scratch one thread needs for sequence length N and head dim D.
int64_t ck_attention_scratch_floats(int64_t N, int64_t D);

/// out = softmax(Q Kᵀ · scale) V per (b, h); writes lse.
void ck_attention_forward(float *out, float *lse, const float *qkv, float *scratch,
                          int64_t B, int64_t N, int64_t H, int64_t D, float scale);

/// dqkv[B, N, 3, H, D] (+)= gradients of q, k and v. Reads qkv and lse from the forward.
///   P = exp(scale·QKᵀ − lse), dV = Pᵀ dO, dP = dO Vᵀ, dS = P ⊙ (dP − rowsum(P ⊙ dP)),
///   dQ = scale · dS K, dK = scale · dSᵀ Q.
/// dqkv (=|+=) the gradient of the packed qkv.
void ck_attention_backward(ck_grad dqkv, const float *dout, const float *qkv, const float *lse,
                           float *scratch, int64_t B, int64_t N, int64_t H, int64_t D, float scale);
