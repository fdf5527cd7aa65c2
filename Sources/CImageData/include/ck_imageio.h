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

// PNG encoding of 8-bit HWC pixels (channels 1 or 3) into dst (cap bytes); *out_len the size.
// Pass dst = NULL to get the needed size in *out_len.
int ck_png_encode(uint8_t *dst, size_t cap, size_t *out_len, const uint8_t *pixels, int64_t width, int64_t height,
                  int64_t channels);
