// Image augmentation: crop + resize (PIL-style separable filters) + horizontal flip + normalize,
// from uint8 HWC images of any size to a float32 NCHW batch. Parallel over images.
#pragma once
#include <stdint.h>

enum { CK_INTERP_BILINEAR = 0, CK_INTERP_BICUBIC = 1 };

// Floats of scratch the caller passes to ck_crop_resize_batch: enough for `threads` workers on
// source images up to max_h × max_w and S×S outputs with C channels.
int64_t ck_crop_resize_scratch_floats(int64_t max_h, int64_t max_w, int64_t S, int64_t C, int64_t threads);

// out [B, C, S, S] ← normalize(flip(resize(crop(src[b]))))
//   src[b]        uint8 [heights[b], widths[b], C] (row-major HWC)
//   boxes [B, 4]  crop (top, left, height, width) in source pixels, floats (fractional boxes allowed)
//   flips [B]     nonzero: mirror the output horizontally
//   mean, std [C] out = (v/255 − mean) / std, v the resized value rounded and clamped to 0…255 as PIL does
// threads: workers to use (≤ 0: the OpenMP default). A loader thread passes 1 so it does not compete
// with the training step's parallel regions. Returns 0, or −1 if scratch_floats is too small.
int ck_crop_resize_batch(float *out, const uint8_t *const *src, const int64_t *heights, const int64_t *widths,
                         const float *boxes, const uint8_t *flips, int64_t B, int64_t C, int64_t S,
                         int interp, const float *mean, const float *std, float *scratch, int64_t scratch_floats,
                         int threads);
