// Decoders for the data pipeline's file formats: gzip (zlib), PNG (libpng), JPEG (libjpeg-turbo),
// and a PNG encoder for image grids. Inputs are whole files in memory and are treated as hostile:
// every function returns 0 or a negative CK_IO_* code and never aborts the process.
#pragma once
#include <stddef.h>
#include <stdint.h>

enum {
    CK_IO_OK = 0,
    CK_IO_CORRUPT = -1,      // not a valid stream of that format
    CK_IO_TOO_LARGE = -2,    // more pixels/bytes than the caller's cap
    CK_IO_TRUNCATED = -3,    // the stream ends early
    CK_IO_SIZE_MISMATCH = -4,// decoded size differs from the expected size
    CK_IO_UNSUPPORTED = -5,
};

// gzip: inflate src[0..n) into dst[0..cap). *out_len gets the decoded length; more than cap bytes
// gives CK_IO_TOO_LARGE. Concatenated members are decoded one after the other.
int ck_gunzip(uint8_t *dst, size_t cap, size_t *out_len, const uint8_t *src, size_t n);

// Image header: width, height, and channels stored in the file (1 gray, 2 gray+alpha, 3, 4).
// kind: 1 PNG, 2 JPEG (by magic bytes), 0 neither.
int ck_image_kind(const uint8_t *src, size_t n);
int ck_image_info(const uint8_t *src, size_t n, int64_t *width, int64_t *height, int64_t *channels);

// Decodes to 8-bit HWC with `channels` = 1 (luma) or 3 (RGB), alpha dropped. dst holds
// width·height·channels bytes; max_pixels caps width·height before any allocation.
int ck_image_decode(uint8_t *dst, const uint8_t *src, size_t n, int64_t width, int64_t height, int64_t channels,
                    int64_t max_pixels);

// Decodes part of an image, reduced: JPEG scaled by 1/denom in the DCT domain (denom 1, 2, 4 or 8; the
// reduced image is ck_jpeg_reduced_size(width, denom) × ck_jpeg_reduced_size(height, denom)), rows
// [want[1], want[3]) only and the columns [want[0], want[2]) widened to whole iMCU columns; PNG: denom 1,
// the whole image. want is in reduced pixels and is clamped to the image. dst (cap bytes) gets 8-bit HWC
// rows of got[4] pixels; got = {reduced width, reduced height, region x, region y, region width, region height}.
int ck_image_decode_region(uint8_t *dst, size_t cap, const uint8_t *src, size_t n, int64_t channels, int64_t max_pixels,
                           int64_t denom, const int64_t want[4], int64_t got[6]);
int64_t ck_jpeg_reduced_size(int64_t size, int64_t denom);

// PNG encoding of 8-bit HWC pixels (channels 1 or 3) into dst (cap bytes); *out_len the size.
// Pass dst = NULL to get the needed size in *out_len.
int ck_png_encode(uint8_t *dst, size_t cap, size_t *out_len, const uint8_t *pixels, int64_t width, int64_t height,
                  int64_t channels);
