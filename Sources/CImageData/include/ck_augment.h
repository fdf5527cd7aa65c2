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

// Photometric augmentation of a batch in pixel space [0, 1], in place, parallel over images.
//   x [B, C, S, S]; params [B, CK_PHOTO_PARAMS] per image (see CK_PHOTO_*): the order of the four
//   color-jitter ops (a permutation of 0 brightness, 1 contrast, 2 saturation, 3 hue), their factors
//   (1, 1, 1, 0 = identity), a grayscale flag, a Gaussian blur sigma in pixels (0 = none) and a
//   solarize flag (v ≥ 0.5 → 1 − v). Semantics of torchvision's ColorJitter / Grayscale (ITU-R 601
//   luma 0.2989/0.587/0.114 as torchvision), a separable Gaussian blur with radius ceil(3σ) and edge clamping, and PIL's solarize at 128.
//   Saturation, hue and grayscale need C = 3 and are skipped for C = 1. Values are clamped to [0, 1].
//   scratch: ck_photometric_scratch_floats(S, C, threads) floats.
enum {
    CK_PHOTO_ORDER = 0,        // 4 entries
    CK_PHOTO_BRIGHTNESS = 4, CK_PHOTO_CONTRAST = 5, CK_PHOTO_SATURATION = 6, CK_PHOTO_HUE = 7,
    CK_PHOTO_GRAYSCALE = 8, CK_PHOTO_BLUR_SIGMA = 9, CK_PHOTO_SOLARIZE = 10,
    CK_PHOTO_PARAMS = 11,
};
int64_t ck_photometric_scratch_floats(int64_t S, int64_t C, int64_t threads);
void ck_photometric_batch(float *x, const float *params, int64_t B, int64_t C, int64_t S, float *scratch, int threads);

// x [B, C, S, S] ← (x − mean[c]) / std[c], in place.
void ck_normalize_batch(float *x, const float *mean, const float *std, int64_t B, int64_t C, int64_t S);
