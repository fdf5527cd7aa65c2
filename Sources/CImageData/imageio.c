// gzip, PNG and JPEG decoding (zlib, libpng, libjpeg-turbo) and PNG encoding for the data pipeline.
// Everything reads from memory; every failure is a return code, including libjpeg's fatal errors
// (caught with setjmp) and libpng's (its simplified API reports them in png_image.message).
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <string.h>
#include <zlib.h>
#include <png.h>
#include <jpeglib.h>
#include "ck_imageio.h"

int ck_gunzip(uint8_t *dst, size_t cap, size_t *out_len, const uint8_t *src, size_t n) {
    *out_len = 0;
    if (n < 18 || src[0] != 0x1f || src[1] != 0x8b) return CK_IO_CORRUPT;
    size_t used = 0, produced = 0;
    while (used < n) {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return CK_IO_CORRUPT;
        int rc = Z_OK;
        zs.next_in = (Bytef *)(src + used);
        zs.next_out = dst + produced;
        zs.avail_out = 0;
        size_t in_left = n - used, out_left = cap - produced;
        while (rc == Z_OK) {
            if (zs.avail_in == 0) {   // feed in chunks: avail_in is 32-bit
                uInt chunk = in_left > 0x40000000u ? 0x40000000u : (uInt)in_left;
                zs.avail_in = chunk; in_left -= chunk;
            }
            if (zs.avail_out == 0) {
                uInt chunk = out_left > 0x40000000u ? 0x40000000u : (uInt)out_left;
                zs.avail_out = chunk; out_left -= chunk;
            }
            uInt before_in = zs.avail_in, before_out = zs.avail_out;
            rc = inflate(&zs, Z_NO_FLUSH);
            if (rc == Z_BUF_ERROR || (rc == Z_OK && zs.avail_in == before_in && zs.avail_out == before_out)) {
                int truncated = zs.avail_in == 0 && in_left == 0;
                int full = zs.avail_out == 0 && out_left == 0;
                inflateEnd(&zs);
                return full ? CK_IO_TOO_LARGE : (truncated ? CK_IO_TRUNCATED : CK_IO_CORRUPT);
            }
        }
        size_t consumed = (size_t)zs.total_in, written = (size_t)zs.total_out;
        inflateEnd(&zs);
        if (rc != Z_STREAM_END) return rc == Z_DATA_ERROR ? CK_IO_CORRUPT : CK_IO_TRUNCATED;
        used += consumed;
        produced += written;
        // Another member follows only if it starts with the gzip magic; trailing zeros are tolerated.
        if (used + 2 <= n && src[used] == 0x1f && src[used + 1] == 0x8b) continue;
        break;
    }
    *out_len = produced;
    return CK_IO_OK;
}

int ck_image_kind(const uint8_t *src, size_t n) {
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    if (n >= 8 && memcmp(src, png_magic, 8) == 0) return 1;
    if (n >= 3 && src[0] == 0xff && src[1] == 0xd8 && src[2] == 0xff) return 2;
    return 0;
}

// ---- Pixels as PIL gives them (torchvision's loader: Image.open(f).convert("RGB"), and "L" for
// 1-channel data). Gray from RGB is PIL's ITU-R 601 luma on the stored values, in fixed point.
static inline uint8_t pil_luma(const uint8_t *rgb) {
    return (uint8_t)(((uint32_t)rgb[0] * 19595u + (uint32_t)rgb[1] * 38470u + (uint32_t)rgb[2] * 7471u + 0x8000u) >> 16);
}

// CMYK (as PIL holds it: 0 = no ink) to RGB, PIL's cmyk2rgb: each channel (255 - K) - C (255 - K) / 255,
// the product rounded as PIL's MULDIV255.
static inline void pil_cmyk_to_rgb(uint8_t *rgb, const uint8_t *cmyk) {
    int nk = 255 - cmyk[3];
    for (int c = 0; c < 3; c++) {
        int t = cmyk[c] * nk + 128;
        int v = nk - (((t >> 8) + t) >> 8);
        rgb[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

// ---- JPEG: libjpeg reports fatal errors through error_exit, which must not return.
struct jpeg_guard { struct jpeg_error_mgr mgr; jmp_buf jump; };
static void jpeg_fail(j_common_ptr cinfo) { longjmp(((struct jpeg_guard *)cinfo->err)->jump, 1); }
static void jpeg_quiet(j_common_ptr cinfo, int level) { (void)cinfo; (void)level; }

// The one JPEG decoder. dst == NULL: the header only, got = {width, height, components}. Otherwise the
// image reduced by 1/denom in the DCT domain (scale_denom), the region want = {x0, y0, x1, y1} of the
// reduced image (clamped to it): the rows above it skipped (jpeg_skip_scanlines), only the iMCU columns
// that cover it decoded (jpeg_crop_scanline), nothing after its last row; got = {reduced width, reduced
// height, region x, y, width, height}. expect (non-null): the image must be exactly expect[0] × expect[1].
// A full decode is the region of the whole image at denom 1.
static int jpeg_decode(uint8_t *dst, size_t cap, const uint8_t *src, size_t n, int64_t channels, int64_t max_pixels,
                       int64_t denom, const int64_t want[4], const int64_t *expect, int64_t got[6]) {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_guard guard;
    cinfo.err = jpeg_std_error(&guard.mgr);
    guard.mgr.error_exit = jpeg_fail;
    guard.mgr.emit_message = jpeg_quiet;
    if (setjmp(guard.jump)) { jpeg_destroy_decompress(&cinfo); return CK_IO_CORRUPT; }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, src, (unsigned long)n);
    if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK) { jpeg_destroy_decompress(&cinfo); return CK_IO_CORRUPT; }
    if (!dst) {
        got[0] = cinfo.image_width; got[1] = cinfo.image_height; got[2] = cinfo.num_components;
        jpeg_destroy_decompress(&cinfo);
        return CK_IO_OK;
    }
    if ((int64_t)cinfo.image_width * (int64_t)cinfo.image_height > max_pixels) { jpeg_destroy_decompress(&cinfo); return CK_IO_TOO_LARGE; }
    if (expect && ((int64_t)cinfo.image_width != expect[0] || (int64_t)cinfo.image_height != expect[1])) {
        jpeg_destroy_decompress(&cinfo); return CK_IO_SIZE_MISMATCH;
    }
    // CMYK (and YCCK) files are read as CMYK and converted as PIL converts them (libjpeg has no CMYK to
    // RGB); PIL reads a file with an Adobe marker as inverted CMYK (Photoshop's convention).
    const int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    const int inverted = cmyk && cinfo.saw_Adobe_marker;
    cinfo.out_color_space = cmyk ? JCS_CMYK : channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    cinfo.scale_num = 1;
    cinfo.scale_denom = (unsigned)denom;
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != (cmyk ? 4 : channels)) { jpeg_destroy_decompress(&cinfo); return CK_IO_UNSUPPORTED; }
    int64_t W = cinfo.output_width, H = cinfo.output_height;
    int64_t x0 = want[0] < 0 ? 0 : want[0], y0 = want[1] < 0 ? 0 : want[1];
    int64_t x1 = want[2] > W ? W : want[2], y1 = want[3] > H ? H : want[3];
    if (x1 <= x0 || y1 <= y0) { jpeg_destroy_decompress(&cinfo); return CK_IO_SIZE_MISMATCH; }
    JDIMENSION xoff = (JDIMENSION)x0, cw = (JDIMENSION)(x1 - x0);
    if (x0 > 0 || x1 < W) jpeg_crop_scanline(&cinfo, &xoff, &cw);   // widens to whole iMCU columns
    const size_t stride = (size_t)cw * (size_t)channels;
    if (stride * (size_t)(y1 - y0) > cap) { jpeg_destroy_decompress(&cinfo); return CK_IO_TOO_LARGE; }
    if (y0 > 0 && jpeg_skip_scanlines(&cinfo, (JDIMENSION)y0) != (JDIMENSION)y0) { jpeg_destroy_decompress(&cinfo); return CK_IO_TRUNCATED; }
    // A CMYK row goes through a row of libjpeg's own memory (freed with the decompressor, also on error).
    JSAMPARRAY ink = cmyk ? (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, cw * 4, 1) : NULL;
    while ((int64_t)cinfo.output_scanline < y1) {
        JSAMPROW row = dst + (size_t)((int64_t)cinfo.output_scanline - y0) * stride;
        if (jpeg_read_scanlines(&cinfo, cmyk ? ink : &row, 1) != 1) { jpeg_destroy_decompress(&cinfo); return CK_IO_TRUNCATED; }
        for (JDIMENSION x = 0; cmyk && x < cw; x++) {
            uint8_t k[4], rgb[3];
            for (int c = 0; c < 4; c++) k[c] = inverted ? (uint8_t)(255 - ink[0][4 * x + c]) : ink[0][4 * x + c];
            pil_cmyk_to_rgb(rgb, k);
            if (channels == 3) memcpy(row + 3 * x, rgb, 3); else row[x] = pil_luma(rgb);
        }
    }
    // A truncated file makes libjpeg pad with grey and warn; treat that warning as an error.
    int damaged = guard.mgr.num_warnings > 0;
    got[0] = W; got[1] = H; got[2] = (int64_t)xoff; got[3] = y0; got[4] = (int64_t)cw; got[5] = y1 - y0;
    jpeg_abort_decompress(&cinfo);   // the rows below the region are never decoded
    jpeg_destroy_decompress(&cinfo);
    return damaged ? CK_IO_TRUNCATED : CK_IO_OK;
}

// Reads a PNG header into img (freed on failure). Returns 1 on success.
static int png_open(png_image *img, const uint8_t *src, size_t n) {
    memset(img, 0, sizeof *img);
    img->version = PNG_IMAGE_VERSION;
    if (png_image_begin_read_from_memory(img, src, n)) return 1;
    png_image_free(img);
    return 0;
}

int ck_image_info(const uint8_t *src, size_t n, int64_t *width, int64_t *height, int64_t *channels) {
    int kind = ck_image_kind(src, n);
    if (kind == 1) {
        png_image img;
        if (!png_open(&img, src, n)) return CK_IO_CORRUPT;
        *width = img.width; *height = img.height;
        *channels = (int64_t)PNG_IMAGE_SAMPLE_CHANNELS(img.format);
        png_image_free(&img);
        return CK_IO_OK;
    }
    if (kind == 2) {
        int64_t got[6];
        int rc = jpeg_decode(NULL, 0, src, n, 0, 0, 1, NULL, NULL, got);
        if (rc == CK_IO_OK) { *width = got[0]; *height = got[1]; *channels = got[2]; }
        return rc;
    }
    return CK_IO_UNSUPPORTED;
}

// ---- PNG through libpng's low-level API, for PIL's pixels: the stored values, with no gamma
// correction (a gAMA chunk is ignored, as PIL does); alpha dropped, not composited (PIL's convert drops
// it); a palette looked up with its transparency ignored; gray below 8 bits scaled to 0-255; 16-bit
// samples keep their high byte, except 16-bit gray, which PIL reads as a 32-bit integer image and
// converts by clipping at 255.
struct png_source { const uint8_t *src; size_t n, at; };
struct png_guard { jmp_buf jump; };
static void png_fail(png_structp png, png_const_charp msg) { (void)msg; longjmp(((struct png_guard *)png_get_error_ptr(png))->jump, 1); }
static void png_quiet(png_structp png, png_const_charp msg) { (void)png; (void)msg; }
static void png_from_memory(png_structp png, png_bytep out, size_t count) {
    struct png_source *s = png_get_io_ptr(png);
    if (count > s->n - s->at) png_error(png, "truncated");
    memcpy(out, s->src + s->at, count);
    s->at += count;
}

static int png_decode_as_pil(uint8_t *dst, const uint8_t *src, size_t n, int64_t width, int64_t height, int64_t channels) {
    struct png_guard guard;
    struct png_source source = {src, n, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &guard, png_fail, png_quiet);
    if (!png) return CK_IO_CORRUPT;
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile buffer = NULL;
    png_bytep *volatile rows = NULL;
    if (!info || setjmp(guard.jump)) {
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        free(buffer); free(rows);
        return CK_IO_CORRUPT;
    }
    png_set_read_fn(png, &source, png_from_memory);
    png_read_info(png, info);
    if ((int64_t)png_get_image_width(png, info) != width || (int64_t)png_get_image_height(png, info) != height) {
        png_destroy_read_struct(&png, &info, NULL);
        return CK_IO_SIZE_MISMATCH;
    }
    int type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    int gray = !(type & PNG_COLOR_MASK_COLOR) && type != PNG_COLOR_TYPE_PALETTE;
    int wide_gray = type == PNG_COLOR_TYPE_GRAY && depth == 16;   // PIL: "I;16", clipped at 255 below (16-bit gray + alpha is "LA": high byte)
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (gray && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16 && !wide_gray) png_set_strip_16(png);
    // Alpha, and the alpha libpng's expansions make of a tRNS chunk, dropped.
    if ((type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
    if (wide_gray) png_set_swap(png);   // host order (little-endian) for the 16-bit reads below
    // Gray wanted as RGB is replicated by libpng (PIL's L to RGB), so that every 8-bit case but color to
    // gray decodes straight into dst; color to gray and 16-bit gray go through a buffer and a pass below.
    if (gray && !wide_gray && channels == 3) { png_set_gray_to_rgb(png); gray = 0; }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    int samples = gray ? 1 : 3, bytes = wide_gray ? 2 : 1;
    if (row_bytes != (size_t)width * (size_t)(samples * bytes)) { png_destroy_read_struct(&png, &info, NULL); return CK_IO_UNSUPPORTED; }
    const int direct = samples == channels && !wide_gray;
    if (!direct) buffer = malloc(row_bytes * (size_t)height);
    rows = malloc(sizeof(png_bytep) * (size_t)height);
    if ((!direct && !buffer) || !rows) { png_destroy_read_struct(&png, &info, NULL); free(buffer); free(rows); return CK_IO_TOO_LARGE; }
    for (int64_t y = 0; y < height; y++) rows[y] = (direct ? dst : buffer) + (size_t)y * row_bytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    if (direct) { free(rows); return CK_IO_OK; }
    const size_t count = (size_t)width * (size_t)height;
    for (size_t i = 0; i < count; i++) {
        uint8_t *out = dst + i * (size_t)channels;
        if (samples == 1) {
            uint8_t v = buffer[i];
            if (wide_gray) { uint16_t w; memcpy(&w, buffer + 2 * i, 2); v = w > 255 ? 255 : (uint8_t)w; }
            for (int c = 0; c < channels; c++) out[c] = v;
        } else if (channels == 3) {
            memcpy(out, buffer + 3 * i, 3);
        } else {
            out[0] = pil_luma(buffer + 3 * i);
        }
    }
    free(buffer); free(rows);
    return CK_IO_OK;
}

int ck_image_decode(uint8_t *dst, const uint8_t *src, size_t n, int64_t width, int64_t height, int64_t channels,
                    int64_t max_pixels) {
    if (channels != 1 && channels != 3) return CK_IO_UNSUPPORTED;
    if (width <= 0 || height <= 0) return CK_IO_CORRUPT;
    if (width * height > max_pixels) return CK_IO_TOO_LARGE;
    int kind = ck_image_kind(src, n);
    if (kind == 1) {
        return png_decode_as_pil(dst, src, n, width, height, channels);
    }
    if (kind == 2) {
        const int64_t whole[4] = {0, 0, width, height}, expect[2] = {width, height};
        int64_t got[6];
        return jpeg_decode(dst, (size_t)(width * height * channels), src, n, channels, max_pixels, 1, whole, expect, got);
    }
    return CK_IO_UNSUPPORTED;
}

int ck_png_encode(uint8_t *dst, size_t cap, size_t *out_len, const uint8_t *pixels, int64_t width, int64_t height,
                  int64_t channels) {
    if ((channels != 1 && channels != 3) || width <= 0 || height <= 0) return CK_IO_UNSUPPORTED;
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)width;
    img.height = (png_uint_32)height;
    img.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    png_alloc_size_t size = dst ? cap : 0;
    int ok = png_image_write_to_memory(&img, dst, &size, 0, pixels, (png_int_32)(width * channels), NULL);
    png_image_free(&img);
    *out_len = (size_t)size;
    if (!ok) return dst && size > cap ? CK_IO_TOO_LARGE : CK_IO_CORRUPT;
    return CK_IO_OK;
}

int64_t ck_jpeg_reduced_size(int64_t size, int64_t denom) { return (size + denom - 1) / denom; }

int ck_image_decode_region(uint8_t *dst, size_t cap, const uint8_t *src, size_t n, int64_t channels, int64_t max_pixels,
                           int64_t denom, const int64_t want[4], int64_t got[6]) {
    if (channels != 1 && channels != 3) return CK_IO_UNSUPPORTED;
    int kind = ck_image_kind(src, n);
    if (kind == 2) {
        if (denom != 1 && denom != 2 && denom != 4 && denom != 8) return CK_IO_UNSUPPORTED;
        return jpeg_decode(dst, cap, src, n, channels, max_pixels, denom, want, NULL, got);
    }
    if (kind == 1) {   // PNG: rows come in order from one zlib stream; the whole image is decoded
        if (denom != 1) return CK_IO_UNSUPPORTED;
        png_image img;
        if (!png_open(&img, src, n)) return CK_IO_CORRUPT;
        int64_t w = img.width, h = img.height;
        png_image_free(&img);
        if (w * h > max_pixels) return CK_IO_TOO_LARGE;
        if ((size_t)(w * h * channels) > cap) return CK_IO_TOO_LARGE;
        int rc = ck_image_decode(dst, src, n, w, h, channels, max_pixels);
        if (rc != CK_IO_OK) return rc;
        got[0] = w; got[1] = h; got[2] = 0; got[3] = 0; got[4] = w; got[5] = h;
        return CK_IO_OK;
    }
    return CK_IO_UNSUPPORTED;
}
