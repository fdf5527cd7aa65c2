// Crop + resize + flip + normalize of uint8 images into a float32 batch (RandomResizedCrop's work).
//
// Resampling follows PIL's `Image.resize(size, filter, box)`: separable, the filter support widened
// by the scale factor when shrinking (antialiasing), weights normalized per output pixel, source
// pixel centres at i + 0.5. Bicubic is Keys' kernel with a = −0.5, bilinear the triangle.
// Horizontal pass first (into a float scratch of the needed source rows), then vertical.
#include "ck_internal.h"
#include "ck_augment.h"

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

// Per worker: 4·S int64 firsts/counts (8·S floats), K_max·S weights per axis, plus the
// horizontally resampled rows [rows, S, C].
static int64_t worker_floats(int64_t max_h, int64_t max_w, int64_t S, int64_t C) {
    int64_t kx = max_taps((double)max_w, S, CK_INTERP_BICUBIC), ky = max_taps((double)max_h, S, CK_INTERP_BICUBIC);
    int64_t f = (kx + ky) * S + 8 * S + max_h * S * C;
    return (f + CK_CACHE_LINE_F32 - 1) / CK_CACHE_LINE_F32 * CK_CACHE_LINE_F32;
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
                acc = __builtin_rintf(acc);
                dr[x * C + c] = acc < 0 ? 0 : (acc > 255 ? 255 : acc);
            }
        }
    }
    for (int64_t y = 0; y < S; y++) {
        const float *w = wy + y * ky;
        for (int64_t x = 0; x < S; x++) {
            int64_t xo = flip ? S - 1 - x : x;
            for (int64_t c = 0; c < C; c++) {
                float acc = 0;
                for (int64_t j = 0; j < ny[y]; j++) acc += w[j] * rows[((fy[y] - r0 + j) * S + x) * C + c];
                float v = __builtin_rintf(acc);
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
#ifdef _OPENMP
    if (threads <= 0) threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    if (threads > B) threads = (int)B;
    if (threads < 1) threads = 1;
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
