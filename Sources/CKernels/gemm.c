// The single BLAS call site, and the GEMM backend switch: OpenBLAS, oneDNN, or Tessera's own
// kernel (matmul.c).
//
// Two backends: OpenBLAS, linked (the default dependency), and oneDNN's dnnl_sgemm, loaded at run
// time with dlopen when libdnnl is installed (Debian: libdnnl2 or libdnnl3), so no build option and
// no second binary are needed. oneDNN is 1.3-2x faster on the skinny training shapes and scales
// past 4 threads where OpenBLAS 0.3.21 does not (docs/log/benchmarks.md, "Against PyTorch on the same machine"). Its OpenMP calls bind
// to the libomp the kernels already use, so there is one thread pool.
#include "ck_internal.h"
#include "ck_gemm.h"
#include "ck_activation.h"
#include "ck_elementwise.h"
#include "ck_runtime.h"
#include <cblas.h>
#include <dlfcn.h>
#include <stdio.h>
#include <time.h>

// OpenBLAS extensions (declared in its cblas.h on Debian; repeated here for other layouts).
void openblas_set_num_threads(int num_threads);
char *openblas_get_config(void);
char *openblas_get_corename(void);

// The backend: dnnl_sgemm and dnnl_version as oneDNN 2.x and 3.x declare them (row-major,
// dnnl_dim_t = int64_t, dnnl_status_t an int enum, 0 = success), and which backend ck_sgemm calls.
typedef int (*dnnl_sgemm_fn)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha,
                             const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                             float *C, int64_t ldc);
typedef struct { int major, minor, patch; } dnnl_version_prefix;
typedef const dnnl_version_prefix *(*dnnl_version_fn)(void);
static dnnl_sgemm_fn onednn_sgemm = NULL;      // non-null: ck_sgemm calls oneDNN
static char onednn_name[64];
static int tessera_gemm = 0;                    // 1: ck_sgemm calls ck_matmul (matmul.c)

// Every product goes through these two: the start time (when profiling), then the FLOP count and the
// profile row (probe.c) of op(A)[M, K] · op(B)[K, N] done as `op` on the backend in use.
static double product_begin(void) { return ck_probe_product_begin(); }
static void product_end(double t0, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, const char *op) {
    ck_probe_product_end(t0, trans_a, trans_b, M, N, K, op, tessera_gemm ? "tessera" : onednn_sgemm ? "onednn" : "openblas");
}

void ck_gemm_use_tessera(int on) {
    tessera_gemm = on != 0;
    if (on) onednn_sgemm = NULL;
}

int ck_gemm_use_onednn(int on) {
    if (!on) { onednn_sgemm = NULL; return 0; }
    static dnnl_sgemm_fn loaded = NULL;
    if (!loaded) {
        static const char *names[] = {"libdnnl.so.3", "libdnnl.so.2", "libdnnl.so"};
        for (size_t i = 0; i < sizeof names / sizeof names[0] && !loaded; i++) {
            void *lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
            if (!lib) continue;
            loaded = (dnnl_sgemm_fn)dlsym(lib, "dnnl_sgemm");
            dnnl_version_fn version = (dnnl_version_fn)dlsym(lib, "dnnl_version");
            if (loaded && version) {
                const dnnl_version_prefix *v = version();
                snprintf(onednn_name, sizeof onednn_name, "oneDNN %d.%d.%d dnnl_sgemm", v->major, v->minor, v->patch);
            } else if (loaded) {
                snprintf(onednn_name, sizeof onednn_name, "oneDNN dnnl_sgemm (%s)", names[i]);
            } else {
                dlclose(lib);
            }
        }
        if (!loaded) return -1;   // nothing changed: the GEMM in use stays
    }
    tessera_gemm = 0;
    onednn_sgemm = loaded;
    return 0;
}

int ck_gemm_choice(void) { return tessera_gemm ? CK_GEMM_TESSERA : onednn_sgemm ? CK_GEMM_ONEDNN : CK_GEMM_OPENBLAS; }

int ck_gemm_choose(int choice) {
    switch (choice) {
    case CK_GEMM_TESSERA: ck_gemm_use_tessera(1); return 0;
    case CK_GEMM_ONEDNN: return ck_gemm_use_onednn(1);
    case CK_GEMM_OPENBLAS: ck_gemm_use_tessera(0); ck_gemm_use_onednn(0); return 0;
    default: return -1;
    }
}

void ck_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
              float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
              float beta, float *C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    if (K == 0) {   // BLAS would only scale C; keep the semantics explicit
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    const double t0 = product_begin();
    if (tessera_gemm) {
        ck_matmul(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    } else if (onednn_sgemm) {
        // Row-major like the CBLAS call below. Fails only on invalid arguments, which the Swift
        // callers have already ruled out.
        (void)onednn_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    } else {
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                    (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
    }
    product_end(t0, trans_a, trans_b, M, N, K, "product");
}

void ck_linear_forward(float *out, float *pre, const float *x, const float *weight, const float *bias,
                       int64_t R, int64_t Din, int64_t Dout, int gelu) {
    if (R == 0 || Dout == 0) return;
    if (tessera_gemm && Din > 0) {
        const double t0 = product_begin();
        const ck_linear_epilogue ep = {bias, {NULL, 0}};
        ck_matmul_epilogue(0, 1, R, Dout, Din, 1.0f, x, Din, weight, Din, 0.0f, gelu ? pre : out, Dout, &ep);
        product_end(t0, 0, 1, R, Dout, Din, bias ? "product+bias" : "product");
        if (gelu) ck_gelu_forward(out, pre, R * Dout);   // faster as its own pass than in the tile (header)
        return;
    }
    if (gelu) {
        ck_sgemm(0, 1, R, Dout, Din, 1.0f, x, Din, weight, Din, 0.0f, pre, Dout);
        ck_bias_gelu_forward(out, pre, bias, R, Dout);
    } else {
        ck_sgemm(0, 1, R, Dout, Din, 1.0f, x, Din, weight, Din, 0.0f, out, Dout);
        if (bias) ck_bias_add_forward(out, out, bias, R, Dout);
    }
}

void ck_linear_backward(ck_grad dx, ck_grad dweight, ck_grad dbias, const float *dout, const float *x,
                        const float *weight, int64_t R, int64_t Din, int64_t Dout) {
    if (dx.data) ck_sgemm(0, 0, R, Din, Dout, 1.0f, dout, Dout, weight, Din, (float)dx.accumulate, dx.data, Din);
    if (tessera_gemm && dweight.data && R > 0 && Din > 0 && Dout > 0) {
        // dW = doutᵀ · x with the bias gradient, the row sums of doutᵀ, summed by the same tiles.
        const double t0 = product_begin();
        const ck_linear_epilogue ep = {NULL, dbias};
        ck_matmul_epilogue(1, 0, Dout, Din, R, 1.0f, dout, Dout, x, Din, (float)dweight.accumulate, dweight.data, Din, &ep);
        product_end(t0, 1, 0, Dout, Din, R, dbias.data ? "product+bias-grad" : "product");
        return;
    }
    if (dweight.data) ck_sgemm(1, 0, Dout, Din, R, 1.0f, dout, Dout, x, Din, (float)dweight.accumulate, dweight.data, Din);
    if (dbias.data) ck_bias_add_backward((ck_grad){NULL, 0}, dbias, dout, R, Dout);
}

// An MLP's second layer with its GELU. In both precisions the backward's one GELU pass applies the slope
// and keeps gelu(pre) for the weight gradient, from the same exp and erfc (there was a recomputation pass
// before it). Where the products are bf16 on Tessera's GEMM, whose packing rounds every operand anyway,
// the activation never exists in fp32: the forward computes gelu(pre) as it packs fc2's input, and the
// backward keeps it as the bf16 values that the weight gradient pairs. C harness, 2 threads on Zen 4:
// bf16 fc2 backward 8.30 → 6.89 ms at 3328 × 768 · 192, 14.03 → 11.85 ms at 12800 × 512 · 128, forward
// 3.33 → 3.11 and 6.40 → 5.99 ms; fp32 backward 12.45 → 11.77 and 22.96 → 21.65 ms. The slope as an
// epilogue of the first product's tiles measured slower than the pass (7.62 and 14.42 ms in bf16): per
// 14 × 32 tile, the exp-and-erfc chain has too few values to overlap.
static int ck_gelu_linear_needs_hidden(void) { return !(tessera_gemm && ck_gemm_precision() == CK_PRECISION_BF16); }

int64_t ck_gelu_linear_scratch(int backward, int64_t R, int64_t Din) {
    if (ck_gelu_linear_needs_hidden()) return R * Din;
    return backward ? (R * Din + 1) / 2 : 0;   // the bf16 values of gelu(pre), two per float
}

void ck_gelu_linear_forward(float *out, const float *pre, float *hidden, const float *weight, const float *bias, int64_t R,
                            int64_t Din, int64_t Dout) {
    if (R == 0 || Dout == 0) return;
    if (!ck_gelu_linear_needs_hidden() && Din > 0) {
        const double t0 = product_begin();
        const ck_linear_epilogue ep = {.bias = bias, .gelu_a = 1};
        ck_matmul_epilogue(0, 1, R, Dout, Din, 1.0f, pre, Din, weight, Din, 0.0f, out, Dout, &ep);
        product_end(t0, 0, 1, R, Dout, Din, bias ? "gelu-product+bias" : "gelu-product");
        return;
    }
    ck_gelu_forward(hidden, pre, R * Din);
    ck_linear_forward(out, NULL, hidden, weight, bias, R, Din, Dout, 0);
}

void ck_gelu_linear_backward(ck_grad dpre, ck_grad dweight, ck_grad dbias, const float *dout, const float *pre, float *hidden,
                             const float *weight, int64_t R, int64_t Din, int64_t Dout) {
    // dout · weight, before the slope: in dpre itself when it is overwritten; when it is added to, in a
    // buffer of its own (no caller in this library accumulates here: the MLP's dpre is a fresh tensor).
    float *dh = NULL;
    if (dpre.data && R > 0 && Din > 0) {
        dh = dpre.accumulate ? malloc((size_t)(R * Din) * sizeof(float)) : dpre.data;
        if (!dh) ck_fatal("ck_gelu_linear_backward: out of memory for the accumulated pre-activation gradient");
    }
    if (!ck_gelu_linear_needs_hidden() && R > 0 && Din > 0 && Dout > 0) {
        uint16_t *const gelu = dweight.data ? (uint16_t *)hidden : NULL;   // bf16(gelu(pre)) [R, Din]
        if (dh) {   // dpre (=|+=) (dout · weight) · gelu'(pre), the pass writing gelu too
            ck_sgemm(0, 0, R, Din, Dout, 1.0f, dout, Dout, weight, Din, 0.0f, dh, Din);
            if (gelu) ck_gelu_backward_keeping(dpre, dh, pre, NULL, gelu, R * Din);
            else ck_gelu_backward(dpre, dh, pre, R * Din);
        } else if (gelu) {
            ck_gelu_bf16(gelu, pre, R * Din);
        }
        if (dweight.data) {   // dweight = doutᵀ · gelu(pre), the bias gradient summed by the same tiles
            const double t0 = product_begin();
            const ck_linear_epilogue ep = {.row_sums = dbias, .b_bf16 = gelu};
            ck_matmul_epilogue(1, 0, Dout, Din, R, 1.0f, dout, Dout, NULL, Din, (float)dweight.accumulate, dweight.data, Din, &ep);
            product_end(t0, 1, 0, Dout, Din, R, dbias.data ? "product+bias-grad" : "product");
        } else if (dbias.data) {
            ck_bias_add_backward((ck_grad){NULL, 0}, dbias, dout, R, Dout);
        }
    } else {   // fp32 (or another GEMM): the same order, gelu(pre) kept in fp32 for the weight gradient
        if (dh) {
            ck_sgemm(0, 0, R, Din, Dout, 1.0f, dout, Dout, weight, Din, 0.0f, dh, Din);
            if (dweight.data) ck_gelu_backward_keeping(dpre, dh, pre, hidden, NULL, R * Din);
            else ck_gelu_backward(dpre, dh, pre, R * Din);
        } else if (dweight.data) {
            ck_gelu_forward(hidden, pre, R * Din);
        }
        ck_linear_backward((ck_grad){NULL, 0}, dweight, dbias, dout, hidden, weight, R, Din, Dout);
    }
    if (dh && dh != dpre.data) free(dh);
}

void ck_gemm_set_num_threads(int n) { openblas_set_num_threads(n); }

const char *ck_gemm_backend(void) {
    static char buf[256];
    const char *cfg = openblas_get_config();
    const char *core = openblas_get_corename();
    if (tessera_gemm)
        snprintf(buf, sizeof buf, "Tessera GEMM, %s tiles (%s, core %s, linked but unused)",
                 ck_matmul_tile_name(), cfg ? cfg : "?", core ? core : "?");
    else if (onednn_sgemm)
        snprintf(buf, sizeof buf, "%s (OpenBLAS %s, core %s, linked but unused)", onednn_name,
                 cfg ? cfg : "?", core ? core : "?");
    else
        snprintf(buf, sizeof buf, "%s (core %s)", cfg ? cfg : "OpenBLAS", core ? core : "?");
    return buf;
}

const char *ck_gemm_core_name(void) {
    const char *core = openblas_get_corename();
    return core ? core : "";
}
