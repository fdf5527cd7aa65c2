// patchify / unpatchify: NCHW images <-> [B, L, P·P·C] patch rows in MAE's order.
#include "ck_internal.h"
#include "ck_patchify.h"

typedef float v4f __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));

// One channel: each patch row is P contiguous floats on both sides. Inlined with P a constant for
// the common patch sizes so that the row copies become whole vector moves.
static inline __attribute__((always_inline)) void band_one_channel(float *x, float *img, int64_t b, int64_t r,
                                                                   int64_t Hh, int64_t Ww, const int64_t P,
                                                                   int to_patches, int accumulate) {
    const int64_t gw = Ww / P, L = (Hh / P) * gw, F = P * P;
    if (P == 4 && to_patches && !accumulate) {   // a whole 4×4 patch is one 16-float vector
        const float *row0 = img + (b * Hh + r * 4) * Ww;
        float *xp = x + (b * L + r * gw) * 16;
        for (int64_t c = 0; c < gw; c++) {
            v4f q0, q1, q2, q3;
            memcpy(&q0, row0 + c * 4, 16);
            memcpy(&q1, row0 + Ww + c * 4, 16);
            memcpy(&q2, row0 + 2 * Ww + c * 4, 16);
            memcpy(&q3, row0 + 3 * Ww + c * 4, 16);
            const v8f h0 = __builtin_shufflevector(q0, q1, 0, 1, 2, 3, 4, 5, 6, 7);
            const v8f h1 = __builtin_shufflevector(q2, q3, 0, 1, 2, 3, 4, 5, 6, 7);
            const ck_vf16 patch = __builtin_shufflevector(h0, h1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            memcpy(xp + c * 16, &patch, 64);
        }
        return;
    }
    for (int64_t i = 0; i < P; i++) {
        float *ip = img + (b * Hh + r * P + i) * Ww;
        float *xp = x + (b * L + r * gw) * F + i * P;
        for (int64_t c = 0; c < gw; c++, ip += P, xp += F) {
            if (to_patches) {
                if (accumulate) for (int64_t j = 0; j < P; j++) xp[j] += ip[j];
                else            for (int64_t j = 0; j < P; j++) xp[j] = ip[j];
            } else {
                if (accumulate) for (int64_t j = 0; j < P; j++) ip[j] += xp[j];
                else            for (int64_t j = 0; j < P; j++) ip[j] = xp[j];
            }
        }
    }
}

// One worker moves the patches of image row-band (b, r) in either direction:
//   to_patches = 1: x[b, r·gw + c, (i·P + j)·C + ch]  (=|+=)  img[b, ch, r·P + i, c·P + j]
//   to_patches = 0: the same assignment the other way round.
CK_CLONES static void patch_band(float *x, float *img, int64_t b, int64_t r, int64_t C, int64_t Hh, int64_t Ww,
                       int64_t P, int to_patches, int accumulate) {
    const int64_t gw = Ww / P, L = (Hh / P) * gw, F = P * P * C;
    if (C == 1) {
        switch (P) {
            case 4:  band_one_channel(x, img, b, r, Hh, Ww, 4, to_patches, accumulate); break;
            case 8:  band_one_channel(x, img, b, r, Hh, Ww, 8, to_patches, accumulate); break;
            case 16: band_one_channel(x, img, b, r, Hh, Ww, 16, to_patches, accumulate); break;
            default: band_one_channel(x, img, b, r, Hh, Ww, P, to_patches, accumulate); break;
        }
        return;
    }
    for (int64_t c = 0; c < gw; c++) {
        float *xrow = x + (b * L + r * gw + c) * F;
        for (int64_t i = 0; i < P; i++) {
            for (int64_t ch = 0; ch < C; ch++) {
                float *irow = img + ((b * C + ch) * Hh + r * P + i) * Ww + c * P;
                float *xp = xrow + i * P * C + ch;
                if (to_patches) {
                    if (accumulate) for (int64_t j = 0; j < P; j++) xp[j * C] += irow[j];
                    else            for (int64_t j = 0; j < P; j++) xp[j * C] = irow[j];
                } else {
                    if (accumulate) for (int64_t j = 0; j < P; j++) irow[j] += xp[j * C];
                    else            for (int64_t j = 0; j < P; j++) irow[j] = xp[j * C];
                }
            }
        }
    }
}

static void patch_all(float *x, float *img, int64_t B, int64_t C, int64_t Hh, int64_t Ww, int64_t P,
                      int to_patches, int accumulate) {
    const int64_t gh = Hh / P, work = B * C * Hh * Ww;
    #pragma omp parallel for schedule(static) if (work >= CK_PAR_MIN)
    for (int64_t br = 0; br < B * gh; br++)
        patch_band(x, img, br / gh, br % gh, C, Hh, Ww, P, to_patches, accumulate);
}

void ck_patchify_forward(float *out, const float *imgs, int64_t B, int64_t C, int64_t Hh, int64_t Ww, int64_t P) {
    patch_all(out, (float *)imgs, B, C, Hh, Ww, P, 1, 0);
}

void ck_patchify_backward(ck_grad dimgs, const float *dout, int64_t B, int64_t C, int64_t Hh, int64_t Ww, int64_t P) {
    patch_all((float *)dout, dimgs.data, B, C, Hh, Ww, P, 0, dimgs.accumulate);
}

void ck_unpatchify_forward(float *imgs, const float *x, int64_t B, int64_t C, int64_t Hh, int64_t Ww, int64_t P) {
    patch_all((float *)x, imgs, B, C, Hh, Ww, P, 0, 0);
}

void ck_unpatchify_backward(ck_grad dx, const float *dimgs, int64_t B, int64_t C, int64_t Hh, int64_t Ww, int64_t P) {
    patch_all(dx.data, (float *)dimgs, B, C, Hh, Ww, P, 1, dx.accumulate);
}
