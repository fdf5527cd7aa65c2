// AdamW, EMA and gradient-norm clipping over one flat parameter buffer.
#include "ck_internal.h"
#include "ck_optim.h"

// Elements [i0, i1) of one range, a vector of lanes at a time. The square root and the divisions round
// exactly per lane and nothing is contracted into a fused multiply-add, so every clone (and the scalar
// loop this replaced, which the errno of sqrtf kept from vectorizing: 1.9% of the MAE vit-tiny step)
// gives the same bits.
CK_CLONES static void adamw_chunk(float *restrict params, float *restrict m, float *restrict v, const float *restrict grads,
                                  int64_t i0, int64_t i1, float decay, float beta1, float beta2, float eps, float step_size,
                                  float bc2_sqrt) {
    #pragma clang fp contract(off)
    #pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
        const float g = grads[i];
        const float mi = beta1 * m[i] + (1.0f - beta1) * g;
        const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi; v[i] = vi;
        params[i] = params[i] * decay - step_size * mi / (__builtin_elementwise_sqrt(vi) / bc2_sqrt + eps);
    }
}

// One contiguous range with a fixed decay factor (1 for the no-decay tail), in chunks across threads.
static void adamw_range(float *params, float *m, float *v, const float *grads, int64_t N, float decay, float beta1,
                        float beta2, float eps, float step_size, float bc2_sqrt) {
    FOR_EACH_CHUNK(N, adamw_chunk(params, m, v, grads, i0, i0 + n, decay, beta1, beta2, eps, step_size, bc2_sqrt));
}

void ck_adamw_step(float *params, float *m, float *v, const float *grads, int64_t N, int64_t N_decay,
                   float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step) {
    const float bc1 = 1.0f - powf(beta1, (float)step);
    const float bc2 = 1.0f - powf(beta2, (float)step);
    const float step_size = lr / bc1, bc2_sqrt = sqrtf(bc2);
    adamw_range(params, m, v, grads, N_decay, 1.0f - lr * weight_decay, beta1, beta2, eps, step_size, bc2_sqrt);
    adamw_range(params + N_decay, m + N_decay, v + N_decay, grads + N_decay, N - N_decay, 1.0f,
                beta1, beta2, eps, step_size, bc2_sqrt);
}

void ck_ema_update(float *teacher, const float *student, int64_t N, float momentum) {
    const float a = 1.0f - momentum;
    #pragma omp parallel for simd schedule(static) if (N >= CK_PAR_MIN)
    for (int64_t i = 0; i < N; i++) teacher[i] = momentum * teacher[i] + a * student[i];
}

int64_t ck_sum_squares_scratch(int64_t N) { return (N + CK_REDUCE_BLOCK - 1) / CK_REDUCE_BLOCK; }

double ck_sum_squares(const float *g, int64_t N, double *partial) {
    const int64_t nblk = ck_sum_squares_scratch(N);
    #pragma omp parallel for schedule(static) if (N >= CK_PAR_MIN)
    for (int64_t blk = 0; blk < nblk; blk++) {
        const int64_t i0 = blk * CK_REDUCE_BLOCK, i1 = ck_min64(i0 + CK_REDUCE_BLOCK, N);
        double s = 0.0;
        for (int64_t i = i0; i < i1; i++) s += (double)g[i] * (double)g[i];
        partial[blk] = s;
    }
    double total = 0.0;
    for (int64_t blk = 0; blk < nblk; blk++) total += partial[blk];
    return total;
}

void ck_scale(float *g, int64_t N, float s) {
    #pragma omp parallel for simd schedule(static) if (N >= CK_PAR_MIN)
    for (int64_t i = 0; i < N; i++) g[i] *= s;
}
