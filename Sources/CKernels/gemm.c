// The single BLAS call site. Swapping the GEMM backend (BLIS, oneDNN, a hand-written kernel)
// means changing this file only.
#include "ck_internal.h"
#include "ck_gemm.h"
#include <cblas.h>
#include <stdio.h>
#ifdef CK_GEMM_ONEDNN
#include <dnnl.h>
#endif

// OpenBLAS extensions (declared in its cblas.h on Debian; repeated here for other layouts).
void openblas_set_num_threads(int num_threads);
char *openblas_get_config(void);
char *openblas_get_corename(void);

// Matrix-product FLOPs done so far (GEMMs and fused attention), for `tessera bench`. Updated
// outside parallel regions only, from the calling thread.
static uint64_t flop_counter = 0;
void ck_flop_counter_add(uint64_t flops) { flop_counter += flops; }
uint64_t ck_flop_counter_read(void) { return flop_counter; }
void ck_flop_counter_reset(void) { flop_counter = 0; }

void ck_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
              float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
              float beta, float *C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    flop_counter += 2 * (uint64_t)M * (uint64_t)N * (uint64_t)K;
    if (K == 0) {   // BLAS would only scale C; keep the semantics explicit
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
#ifdef CK_GEMM_ONEDNN
    // Row-major like the CBLAS call below. Fails only on invalid arguments, which the Swift callers
    // have already ruled out.
    (void)dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
#endif
}

void ck_gemm_set_num_threads(int n) { openblas_set_num_threads(n); }

const char *ck_gemm_backend(void) {
    static char buf[256];
    const char *cfg = openblas_get_config();
    const char *core = openblas_get_corename();
#ifdef CK_GEMM_ONEDNN
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, sizeof buf, "oneDNN %d.%d.%d dnnl_sgemm (OpenBLAS %s, core %s, linked but unused)",
             v->major, v->minor, v->patch, cfg ? cfg : "?", core ? core : "?");
#else
    snprintf(buf, sizeof buf, "%s (core %s)", cfg ? cfg : "OpenBLAS", core ? core : "?");
#endif
    return buf;
}

const char *ck_gemm_core_name(void) {
    const char *core = openblas_get_corename();
    return core ? core : "";
}
