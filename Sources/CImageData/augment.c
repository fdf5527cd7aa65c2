// Crop + resize + flip + normalize of uint8 images into a float32 batch (RandomResizedCrop's work).
//
// Resampling follows PIL's `Image.resize(size, filter, box)`: separable, the filter support widened
// by the scale factor when shrinking (antialiasing), weights normalized per output pixel, source
// pixel centres at i + 0.5. Bicubic is Keys' kernel with a = −0.5, bilinear the triangle.
// Horizontal pass first (into a float scratch of the needed source rows), then vertical.
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#  if __has_include(<omp.h>)
#    include <omp.h>
#  else
int omp_get_max_threads(void);   /* same C ABI in LLVM libomp and GNU libgomp */
int omp_get_thread_num(void);
#  endif
#endif
#include "ck_augment.h"

// Per-thread scratch is padded to this many floats so two threads never share a cache line.
#define CACHE_LINE_F32 16

static inline double filter_bicubic(double x) {
    const double a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}
static inline double filter_bilinear(double x) {
    if (x < 0) x = -x;
    return x < 1 ? 1 - x : 0;
}

// rintf for |v| < 2^22 (sums of 8-bit pixels): adding and subtracting 1.5·2^23 rounds to the nearest
// integer, ties to even, in the default rounding mode, without a libm call on baseline x86-64 (rintf
// was 5% of the loader's profile). Without -ffast-math the compiler keeps both operations.
static inline float round_even(float v) { return (v + 12582912.0f) - 12582912.0f; }

// Taps an axis of `in_size` pixels resampled from [start, start + length) to `out_size` needs at most.
static int64_t max_taps(double length, int64_t out_size, int interp) {
    double scale = length / (double)out_size;
    double support = (interp == CK_INTERP_BICUBIC ? 2.0 : 1.0) * (scale > 1 ? scale : 1);
    return (int64_t)ceil(support) * 2 + 1;
}

// For each output i: first source index first[i], count n[i], weights w[i·K ...].
static void axis_weights(int64_t *first, int64_t *n, float *w, int64_t K, double start, double length,
                         int64_t in_size, int64_t out_size, int interp) {
    double scale = length / (double)out_size;
    double fscale = scale > 1 ? scale : 1;
    double support = (interp == CK_INTERP_BICUBIC ? 2.0 : 1.0) * fscale;
    for (int64_t i = 0; i < out_size; i++) {
        double center = start + (i + 0.5) * scale;
        int64_t lo = (int64_t)floor(center - support + 0.5);
        int64_t hi = (int64_t)floor(center + support + 0.5);
        // Only pixels inside the crop contribute (torchvision crops, then resizes the crop).
        int64_t box_lo = (int64_t)floor(start), box_hi = (int64_t)ceil(start + length);
        if (box_lo < 0) box_lo = 0;
        if (box_hi > in_size) box_hi = in_size;
        if (lo < box_lo) lo = box_lo;
        if (hi > box_hi) hi = box_hi;
        if (hi - lo > K) hi = lo + K;
        if (hi <= lo) { lo = center < 0 ? 0 : (center >= in_size ? in_size - 1 : (int64_t)center); hi = lo + 1; }
        double total = 0, tmp[hi - lo];
        for (int64_t j = lo; j < hi; j++) {
            double x = (j + 0.5 - center) / fscale;
            tmp[j - lo] = interp == CK_INTERP_BICUBIC ? filter_bicubic(x) : filter_bilinear(x);
            total += tmp[j - lo];
        }
        first[i] = lo;
        n[i] = hi - lo;
        for (int64_t j = 0; j < hi - lo; j++) w[i * K + j] = (float)(total != 0 ? tmp[j] / total : (j == 0));
    }
}

// Per worker: 4·S int64 firsts/counts (8·S floats), K_max·S weights per axis, the horizontally
// resampled rows [rows, S, C] and one output row of sums [S, C].
static int64_t worker_floats(int64_t max_h, int64_t max_w, int64_t S, int64_t C) {
    int64_t kx = max_taps((double)max_w, S, CK_INTERP_BICUBIC), ky = max_taps((double)max_h, S, CK_INTERP_BICUBIC);
    int64_t f = (kx + ky) * S + 8 * S + max_h * S * C + S * C;
    return (f + CACHE_LINE_F32 - 1) / CACHE_LINE_F32 * CACHE_LINE_F32;
}

// Workers for a batch of B images: the request (≤ 0: the OpenMP default), at most B, at least 1.
static int worker_count(int threads, int64_t B) {
#ifdef _OPENMP
    if (threads <= 0) threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    if (threads > B) threads = (int)B;
    return threads < 1 ? 1 : threads;
}

int64_t ck_crop_resize_scratch_floats(int64_t max_h, int64_t max_w, int64_t S, int64_t C, int64_t threads) {
    return worker_floats(max_h, max_w, S, C) * (threads < 1 ? 1 : threads);
}

static void crop_resize_one(float *out, const uint8_t *src, int64_t Hh, int64_t Ww, const float *box, int flip,
                            int64_t C, int64_t S, int interp, const float *mean, const float *std, float *scratch) {
    const double top = box[0], left = box[1], bh = box[2], bw = box[3];
    const int64_t kx = max_taps(bw, S, interp), ky = max_taps(bh, S, interp);
    int64_t *fx = (int64_t *)scratch, *nx = fx + S, *fy = nx + S, *ny = fy + S;   // scratch is 64-byte aligned
    float *wx = (float *)(ny + S), *wy = wx + kx * S, *rows = wy + ky * S;
    axis_weights(fx, nx, wx, kx, left, bw, Ww, S, interp);
    axis_weights(fy, ny, wy, ky, top, bh, Hh, S, interp);
    const int64_t r0 = fy[0], r1 = fy[S - 1] + ny[S - 1];   // source rows the vertical pass reads
    // Horizontal pass: rows[r − r0, x, c] = Σ_j wx · src[r, fx[x] + j, c], rounded and clamped to 0…255
    // as PIL's 8-bit intermediate image (bicubic overshoots, and PIL clips before the vertical pass).
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *sr = src + r * Ww * C;
        float *dr = rows + (r - r0) * S * C;
        for (int64_t x = 0; x < S; x++) {
            const float *w = wx + x * kx;
            const uint8_t *sp = sr + fx[x] * C;
            for (int64_t c = 0; c < C; c++) {
                float acc = 0;
                for (int64_t j = 0; j < nx[x]; j++) acc += w[j] * (float)sp[j * C + c];
                acc = round_even(acc);
                dr[x * C + c] = acc < 0 ? 0 : (acc > 255 ? 255 : acc);
            }
        }
    }
    // Vertical pass, a whole output row at a time: acc[x, c] = Σ_j wy · rows[fy[y] − r0 + j, x, c], the
    // taps outermost so the inner loop runs along contiguous memory (each sum keeps its order in j).
    float *acc = rows + (r1 - r0) * S * C;
    const int64_t SC = S * C;
    for (int64_t y = 0; y < S; y++) {
        const float *w = wy + y * ky;
        for (int64_t i = 0; i < SC; i++) acc[i] = 0;
        for (int64_t j = 0; j < ny[y]; j++) {
            const float wj = w[j], *rj = rows + (fy[y] - r0 + j) * SC;
            for (int64_t i = 0; i < SC; i++) acc[i] += wj * rj[i];
        }
        for (int64_t x = 0; x < S; x++) {
            int64_t xo = flip ? S - 1 - x : x;
            for (int64_t c = 0; c < C; c++) {
                float v = round_even(acc[x * C + c]);
                v = v < 0 ? 0 : (v > 255 ? 255 : v);
                out[(c * S + y) * S + xo] = (v * (1.0f / 255.0f) - mean[c]) / std[c];
            }
        }
    }
}

int ck_crop_resize_batch(float *out, const uint8_t *const *src, const int64_t *heights, const int64_t *widths,
                         const float *boxes, const uint8_t *flips, int64_t B, int64_t C, int64_t S,
                         int interp, const float *mean, const float *std, float *scratch, int64_t scratch_floats,
                         int threads) {
    int64_t max_h = 1, max_w = 1;
    for (int64_t b = 0; b < B; b++) {
        if (heights[b] > max_h) max_h = heights[b];
        if (widths[b] > max_w) max_w = widths[b];
    }
    const int64_t per = worker_floats(max_h, max_w, S, C);
    threads = worker_count(threads, B);
    if (per * threads > scratch_floats) {
        if (per > scratch_floats) return -1;
        threads = (int)(scratch_floats / per);
    }
    #pragma omp parallel for num_threads(threads) schedule(static) if(threads > 1)   /* dynamic needs a newer libomp than Debian ships */
    for (int64_t b = 0; b < B; b++) {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        crop_resize_one(out + b * C * S * S, src[b], heights[b], widths[b], boxes + 4 * b, flips[b] != 0,
                        C, S, interp, mean, std, scratch + t * per);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Photometric augmentation (color jitter, grayscale, blur, solarize) in pixel space [0, 1].

static inline float clamp01(float v) { return v < 0 ? 0 : (v > 1 ? 1 : v); }

static void rgb_to_hsv(float r, float g, float b, float *h, float *s, float *v) {
    float mx = r > g ? (r > b ? r : b) : (g > b ? g : b);
    float mn = r < g ? (r < b ? r : b) : (g < b ? g : b);
    float d = mx - mn;
    *v = mx;
    *s = mx > 0 ? d / mx : 0;
    if (d == 0) { *h = 0; return; }
    float hh;
    if (mx == r) hh = (g - b) / d;
    else if (mx == g) hh = 2 + (b - r) / d;
    else hh = 4 + (r - g) / d;
    hh /= 6;
    *h = hh - floorf(hh);
}

static void hsv_to_rgb(float h, float s, float v, float *r, float *g, float *b) {
    float h6 = h * 6;
    int i = (int)floorf(h6) % 6;
    float f = h6 - floorf(h6);
    float p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    switch (i) {
        case 0: *r = v; *g = t; *b = p; break;
        case 1: *r = q; *g = v; *b = p; break;
        case 2: *r = p; *g = v; *b = t; break;
        case 3: *r = p; *g = q; *b = v; break;
        case 4: *r = t; *g = p; *b = v; break;
        default: *r = v; *g = p; *b = q; break;
    }
}

static inline float luma(const float *img, int64_t P, int64_t i) {
    return 0.2989f * img[i] + 0.587f * img[P + i] + 0.114f * img[2 * P + i];
}

// One 1-D pass of a Gaussian over an S×S plane with edge clamping: along rows when step = 1,
// along columns when step = S. dst[i] = Σ_k w[k + R] · src[i clamped-shifted by k along the axis].
static void blur_pass(float *dst, const float *src, int64_t S, const float *w, int64_t R, int64_t step) {
    for (int64_t y = 0; y < S; y++)
        for (int64_t x = 0; x < S; x++) {
            const int64_t pos = step == 1 ? x : y;          // coordinate along the blurred axis
            const int64_t base = y * S + x - pos * step;   // start of this line
            float acc = 0;
            for (int64_t k = -R; k <= R; k++) {
                int64_t q = pos + k;
                q = q < 0 ? 0 : (q >= S ? S - 1 : q);
                acc += w[k + R] * src[base + q * step];
            }
            dst[y * S + x] = acc;
        }
}

static void blur_one(float *img, int64_t C, int64_t S, float sigma, float *tmp) {
    int64_t R = (int64_t)ceilf(3 * sigma);
    if (R < 1) R = 1;
    if (R > S) R = S;
    float w[2 * R + 1], total = 0;
    for (int64_t k = -R; k <= R; k++) { w[k + R] = expf(-(float)(k * k) / (2 * sigma * sigma)); total += w[k + R]; }
    for (int64_t k = 0; k <= 2 * R; k++) w[k] /= total;
    for (int64_t c = 0; c < C; c++) {
        float *p = img + c * S * S;
        blur_pass(tmp, p, S, w, R, 1);   // horizontal into tmp
        blur_pass(p, tmp, S, w, R, S);   // vertical back into the image
    }
}

static void photometric_one(float *img, const float *prm, int64_t C, int64_t S, float *tmp) {
    const int64_t P = S * S, n = C * P;
    for (int o = 0; o < 4; o++) {
        int op = (int)prm[CK_PHOTO_ORDER + o];
        if (op == 0 && prm[CK_PHOTO_BRIGHTNESS] != 1) {
            float f = prm[CK_PHOTO_BRIGHTNESS];
            for (int64_t i = 0; i < n; i++) img[i] = clamp01(img[i] * f);
        } else if (op == 1 && prm[CK_PHOTO_CONTRAST] != 1) {
            float f = prm[CK_PHOTO_CONTRAST];
            double m = 0;   // mean of the grayscale image
            if (C == 3) for (int64_t i = 0; i < P; i++) m += luma(img, P, i);
            else for (int64_t i = 0; i < n; i++) m += img[i];
            float mean = (float)(m / (double)P);
            for (int64_t i = 0; i < n; i++) img[i] = clamp01(f * img[i] + (1 - f) * mean);
        } else if (op == 2 && C == 3 && prm[CK_PHOTO_SATURATION] != 1) {
            float f = prm[CK_PHOTO_SATURATION];
            for (int64_t i = 0; i < P; i++) {
                float g = luma(img, P, i);
                for (int64_t c = 0; c < 3; c++) img[c * P + i] = clamp01(f * img[c * P + i] + (1 - f) * g);
            }
        } else if (op == 3 && C == 3 && prm[CK_PHOTO_HUE] != 0) {
            float dh = prm[CK_PHOTO_HUE];
            for (int64_t i = 0; i < P; i++) {
                float h, s, v, r, g, b;
                rgb_to_hsv(img[i], img[P + i], img[2 * P + i], &h, &s, &v);
                h += dh; h -= floorf(h);
                hsv_to_rgb(h, s, v, &r, &g, &b);
                img[i] = r; img[P + i] = g; img[2 * P + i] = b;
            }
        }
    }
    if (C == 3 && prm[CK_PHOTO_GRAYSCALE] != 0)
        for (int64_t i = 0; i < P; i++) { float g = luma(img, P, i); img[i] = img[P + i] = img[2 * P + i] = g; }
    if (prm[CK_PHOTO_BLUR_SIGMA] > 0) blur_one(img, C, S, prm[CK_PHOTO_BLUR_SIGMA], tmp);
    if (prm[CK_PHOTO_SOLARIZE] != 0)
        for (int64_t i = 0; i < n; i++) img[i] = img[i] >= 0.5f ? 1 - img[i] : img[i];
}

int64_t ck_photometric_scratch_floats(int64_t S, int64_t C, int64_t threads) {
    (void)C;
    int64_t per = (S * S + CACHE_LINE_F32 - 1) / CACHE_LINE_F32 * CACHE_LINE_F32;
    return per * (threads < 1 ? 1 : threads);
}

void ck_photometric_batch(float *x, const float *params, int64_t B, int64_t C, int64_t S, float *scratch, int threads) {
    const int64_t per = ck_photometric_scratch_floats(S, C, 1);
    threads = worker_count(threads, B);
    #pragma omp parallel for num_threads(threads) schedule(static) if(threads > 1)
    for (int64_t b = 0; b < B; b++) {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        photometric_one(x + b * C * S * S, params + b * CK_PHOTO_PARAMS, C, S, scratch + t * per);
    }
}

void ck_normalize_batch(float *x, const float *mean, const float *std, int64_t B, int64_t C, int64_t S) {
    const int64_t P = S * S;
    for (int64_t bc = 0; bc < B * C; bc++) {   // serial: called from the loader thread, and cheap
        const float m = mean[bc % C], inv = 1.0f / std[bc % C];
        float *p = x + bc * P;
        for (int64_t i = 0; i < P; i++) p[i] = (p[i] - m) * inv;
    }
}
