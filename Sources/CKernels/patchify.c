// patchify / unpatchify: NCHW images <-> [B, L, P·P·C] patch rows in MAE's order.
#include "ck_internal.h"
#include "ck_patchify.h"

// One worker moves the patches of image row-band (b, r) in either direction:
//   to_patches = 1: x[b, r·gw + c, (i·P + j)·C + ch]  (=|+=)  img[b, ch, r·P + i, c·P + j]
//   to_patches = 0: the same assignment the other way round.
static void patch_band(float *x, float *img, int64_t b, int64_t r, int64_t C, int64_t Hh, int64_t Ww,
                       int64_t P, int to_patches, int accumulate) {
    const int64_t gw = Ww / P, L = (Hh / P) * gw, F = P * P * C;
    if (C == 1) {   // one channel: each patch row is P contiguous floats on both sides
        for (int64_t c = 0; c < gw; c++)
            for (int64_t i = 0; i < P; i++) {
                float *xp = x + (b * L + r * gw + c) * F + i * P;
                float *ip = img + (b * Hh + r * P + i) * Ww + c * P;
                if (to_patches) {
                    if (accumulate) for (int64_t j = 0; j < P; j++) xp[j] += ip[j];
                    else            for (int64_t j = 0; j < P; j++) xp[j] = ip[j];
                } else {
                    if (accumulate) for (int64_t j = 0; j < P; j++) ip[j] += xp[j];
                    else            for (int64_t j = 0; j < P; j++) ip[j] = xp[j];
                }
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

void ck_patchify_backward(float *dimgs, const float *dout, int64_t B, int64_t C, int64_t Hh, int64_t Ww, int64_t P) {
    patch_all((float *)dout, dimgs, B, C, Hh, Ww, P, 0, 1);
}

void ck_unpatchify_forward(float *imgs, const float *x, int64_t B, int64_t C, int64_t Hh, int64_t Ww, int64_t P) {
    patch_all((float *)x, imgs, B, C, Hh, Ww, P, 0, 0);
}

void ck_unpatchify_backward(float *dx, const float *dimgs, int64_t B, int64_t C, int64_t Hh, int64_t Ww, int64_t P) {
    patch_all(dx, (float *)dimgs, B, C, Hh, Ww, P, 1, 1);
}
