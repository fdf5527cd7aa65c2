// CKernels: Tessera's hand-written float32 kernels.
//
// Every kernel family lives in one .c file with its forward and backward side by side and one header
// here. Conventions (see Sources/CKernels/README.md):
//   * shapes in one vocabulary: B batch, N tokens, L patches, K kept patches, H heads, D head dim or
//     channels, C channels/classes, R rows, P patch size; all tensors contiguous row-major float32;
//   * argument order: outputs, saved-for-backward outputs, inputs, parameters, sizes; the backward
//     mirrors it with d-prefixed gradients;
//   * every backward kernel writes each gradient through a ck_grad (ck_grad.h): add to it
//     (accumulate = 1) or overwrite every element (accumulate = 0), as the engine decides;
//   * kernels never allocate, print or exit; the Swift caller validates shapes and owns scratch;
//   * OpenMP `parallel for` on the outermost independent loop only; reductions that cross rows are
//     split so that results do not depend on the thread count;
//   * the BLAS is called from gemm.c only, never inside a parallel region.
//
// Example, a LayerNorm over R rows of C channels and its backward:
//   ck_layernorm_forward(y, mean, rstd, x, w, b, R, C, 1e-6f);
//   ck_layernorm_backward((ck_grad){dx, 0}, (ck_grad){dw, 1}, (ck_grad){db, 1}, dy, x, w, mean, rstd, scratch, R, C);
//   (dx overwritten; dw and db added to the parameter gradients already there)
#pragma once
#include "ck_grad.h"
#include "ck_runtime.h"
#include "ck_gemm.h"
#include "ck_patchify.h"
#include "ck_gather.h"
#include "ck_softmax.h"
#include "ck_attention.h"
#include "ck_norm.h"
#include "ck_activation.h"
#include "ck_elementwise.h"
#include "ck_optim.h"
#include "ck_probe.h"
