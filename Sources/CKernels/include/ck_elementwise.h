#pragma once
#include <stdint.h>
#include "ck_grad.h"

// Elementwise building blocks of the autograd engine. R = rows, C = columns, N = element count.

/// out[R, C] = x[R, C] + bias[C].
void ck_bias_add_forward(float *out, const float *x, const float *bias, int64_t R, int64_t C);
/// dx[R, C] (=|+=) dout, dbias[C] (=|+=) Σ_r dout[r, :] (rows in order, 32-column blocks across threads).
void ck_bias_add_backward(ck_grad dx, ck_grad dbias, const float *dout, int64_t R, int64_t C);

typedef enum { CK_ADD = 0, CK_SUB = 1, CK_MUL = 2, CK_DIV = 3 } ck_binary_op;

/// Broadcasting binary op over an output of `ndim` dims `shape`: out = a ∘ b with per-dim element
/// strides for a and b (0 along a broadcast dim). out is contiguous. Callers pass coalesced shapes
/// (adjacent dims merged wherever both operands allow): same-shape operands, such as the residual
/// stream `x + attn(x)`, are then one flat run of ndim = 1 and split evenly across threads.
void ck_binary_forward(ck_binary_op op, float *out, const float *a, const int64_t *a_strides,
                       const float *b, const int64_t *b_strides, const int64_t *shape, int ndim);
/// da (shaped like a) (=|+=) ∂(a ∘ b)/∂a · dout summed over a's broadcast dims, db likewise;
/// reductions over broadcast dims happen in output order, on one thread for a broadcast operand.
/// da and db may share a buffer (a and b the same tensor): da is written first.
void ck_binary_backward(ck_binary_op op, ck_grad da, ck_grad db, const float *dout, const float *a,
                        const int64_t *a_strides, const float *b, const int64_t *b_strides,
                        const int64_t *shape, int ndim);

typedef enum { CK_EXP = 0, CK_LOG = 1, CK_SQRT = 2, CK_POW = 3, CK_SCALE = 4, CK_SHIFT = 5 } ck_unary_op;

/// out[N] = f(x): exp, log, sqrt, x^p, p·x, x + p.
void ck_unary_forward(ck_unary_op op, float *out, const float *x, int64_t N, float p);
/// dx (=|+=) f'(x) · dout (reads x and/or out).
void ck_unary_backward(ck_unary_op op, ck_grad dx, const float *dout, const float *x, const float *out,
                       int64_t N, float p);

/// out[O, I] = Σ_a x[O, A, I].
void ck_sum_axis_forward(float *out, const float *x, int64_t O, int64_t A, int64_t I);
/// dx[O, A, I] (=|+=) dout[O, I].
void ck_sum_axis_backward(ck_grad dx, const float *dout, int64_t O, int64_t A, int64_t I);
/// Σ x[N] in double, in index order (the same bits for any thread count).
double ck_sum_all(const float *x, int64_t N);

/// out[O, length, I] = x[O, A, I] rows start ..< start + length of the middle axis (narrow, select).
void ck_narrow_forward(float *out, const float *x, int64_t O, int64_t A, int64_t start, int64_t length, int64_t I);
/// dx[O, A, I] (=|+=) dout placed at rows start ..< start + length, zero elsewhere.
void ck_narrow_backward(ck_grad dx, const float *dout, int64_t O, int64_t A, int64_t start, int64_t length, int64_t I);
/// dst[r, 0:C] (=|+=) src[r, 0:C] for r < R, row strides dst_ld and src_ld (concat and its backward,
/// reshape's backward).
void ck_copy_rows(float *dst, int64_t dst_ld, const float *src, int64_t src_ld, int64_t R, int64_t C,
                  int accumulate);
/// out[Bt, N, M] (=|+=) x[Bt, M, N]ᵀ per batch (transpose of the last two axes and its backward).
void ck_transpose(float *out, const float *x, int64_t Bt, int64_t M, int64_t N, int accumulate);
/// y[N] += a · x[N].
void ck_axpy(float *y, float a, const float *x, int64_t N);
