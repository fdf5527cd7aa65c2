#pragma once
#include <stdint.h>
#include "ck_grad.h"

// N = element count. GELU is the exact erf form, as torch.nn.GELU() (approximate='none'):
//   gelu(x) = x · Φ(x) = ½ x (1 + erf(x / √2)).

/// out[N] = gelu(x).
void ck_gelu_forward(float *out, const float *x, int64_t N);
/// dx (=|+=) dout · (Φ(x) + x · φ(x)); reads the input x.
void ck_gelu_backward(ck_grad dx, const float *dout, const float *x, int64_t N);

/// Fused bias + GELU for a Linear's output: pre[R, C] += bias[C] (in place, kept for the backward),
/// out[R, C] = gelu(pre). bias may be null.
void ck_bias_gelu_forward(float *out, float *pre, const float *bias, int64_t R, int64_t C);
