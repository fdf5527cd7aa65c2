#pragma once
#include <stdint.h>

// Instruments (probe.c): what `tessera bench` and `tessera-bench` measure the kernels with. Not
// kernels: nothing here changes a result.

// The FMA peak: every thread runs `iterations` rounds of 12 independent 16-lane multiply-adds;
// returns the floating-point operations done (time the call for GFLOP/s). `tessera bench` reports
// the model's FLOP rate as a share of it.
uint64_t ck_fma_peak_run(int64_t iterations);
// The bf16 peak: every thread runs `iterations` rounds of 12 independent `vdpbf16ps` (64 FLOPs each);
// returns the FLOPs done, or 0 on a CPU without AVX512-BF16.
uint64_t ck_bf16_peak_run(int64_t iterations);
// Matrix-product FLOP counter, counted from shapes outside the kernels: every GEMM entry point adds
// 2·M·N·K per call (the product probe), the engine's fused-attention op its QKᵀ/PV products (forward
// 4·B·H·N²·D, backward 10·B·H·N²·D) with ck_flop_counter_add. Not thread-safe: call from the thread
// that runs ops.
uint64_t ck_flop_counter_read(void);
void ck_flop_counter_reset(void);
void ck_flop_counter_add(uint64_t flops);

/// One row of the per-shape GEMM profile: op(A)[M, K] · op(B)[K, N] done as `op` ("product",
/// "product+bias", "product+bias-grad") on `backend` ("tessera", "openblas",
/// "onednn"), `calls` times in `seconds` of wall time in all.
typedef struct {
    int trans_a, trans_b;
    int64_t M, N, K;
    const char *op, *backend;
    uint64_t calls;
    double seconds;
} ck_gemm_shape_stat;
/// on = 1: clears the profile and starts recording every product (a clock read before and after
/// each); on = 0: stops. For `tessera bench`; like the FLOP counter, call from the thread that runs ops.
void ck_gemm_profile(int on);
/// The number of rows recorded, and row i (0 ≤ i < count).
int64_t ck_gemm_profile_count(void);
ck_gemm_shape_stat ck_gemm_profile_row(int64_t i);
/// The seconds of every product recorded since the profile started (shapes past the table's size
/// included): read before and after a stretch of work, the time its products took.
double ck_gemm_profile_seconds(void);
