#pragma once
#include <stdint.h>

/// The one contract of every backward kernel: each gradient it produces is passed as a ck_grad.
///   data        the gradient buffer, shaped like the input it belongs to; NULL: not wanted.
///   accumulate  1: the kernel adds its contribution to what `data` holds;
///               0: the kernel overwrites every element of `data` (which may hold anything before).
/// The engine decides `accumulate` in one place (Tensor.gradTarget): 0 for a gradient's first
/// contribution, 1 afterwards and for parameters, whose gradients live in the optimizer's arena.
/// GEMMs express the same choice as beta (0 or 1).
typedef struct {
    float *data;
    int accumulate;
} ck_grad;
