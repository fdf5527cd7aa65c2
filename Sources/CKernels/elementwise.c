// Elementwise ops, reductions and copies for the autograd engine.
#include "ck_internal.h"
#include "ck_elementwise.h"

void ck_bias_add_forward(float *out, const float *x, const float *bias, int64_t R, int64_t C) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        #pragma omp simd
        for (int64_t c = 0; c < C; c++) out[r * C + c] = x[r * C + c] + bias[c];
    }
}

// dst[c] (=|+=) Σ_r src[r·C + c] for c0 ≤ c < c1 (at most 32 columns), rows in order.
CK_CLONES static void column_block_sum(float *restrict dst, int accumulate, const float *restrict src, int64_t R, int64_t C,
                                       int64_t c0, int64_t c1) {
    float acc[32] = {0};
    for (int64_t r = 0; r < R; r++) {
        const float *row = src + r * C;
        #pragma omp simd
        for (int64_t c = c0; c < c1; c++) acc[c - c0] += row[c];
    }
    for (int64_t c = c0; c < c1; c++) CK_PUT(accumulate, dst[c], acc[c - c0]);
}

// Column sums split into blocks of 32 columns across threads (C = 192 gives 6 blocks, which two
// threads share evenly); each column's rows are summed in order, so the bits do not depend on the
// thread count.
static void column_sum(ck_grad dst, const float *src, int64_t R, int64_t C) {
    const int64_t CB = 32, nblk = (C + CB - 1) / CB;
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t blk = 0; blk < nblk; blk++)
        column_block_sum(dst.data, dst.accumulate, src, R, C, blk * CB, ck_min64(blk * CB + CB, C));
}

void ck_bias_add_backward(ck_grad dx, ck_grad dbias, const float *dout, int64_t R, int64_t C) {
    if (dx.data) ck_copy_rows(dx.data, C, dout, C, R, C, dx.accumulate);
    if (dbias.data) column_sum(dbias, dout, R, C);
}

static inline float binary_apply(ck_binary_op op, float a, float b) {
    switch (op) {
    case CK_ADD: return a + b;
    case CK_SUB: return a - b;
    case CK_MUL: return a * b;
    default:     return a / b;
    }
}

// Offsets of the first element of output row `row` (all dims but the last) in a and b.
static void row_offsets(int64_t row, const int64_t *shape, int ndim, const int64_t *as, const int64_t *bs,
                        int64_t *ao, int64_t *bo) {
    int64_t a = 0, b = 0;
    for (int d = ndim - 2; d >= 0; d--) {
        int64_t i = row % shape[d]; row /= shape[d];
        a += i * as[d]; b += i * bs[d];
    }
    *ao = a; *bo = b;
}

void ck_binary_forward(ck_binary_op op, float *out, const float *a, const int64_t *as,
                       const float *b, const int64_t *bs, const int64_t *shape, int ndim) {
    if (ndim == 1) {   // one flat run (same-shape operands, or one scalar operand)
        const int64_t N = shape[0], ac = as[0], bc = bs[0];
        #pragma omp parallel for schedule(static) if (N >= CK_PAR_MIN)
        for (int64_t i = 0; i < N; i++) out[i] = binary_apply(op, a[i * ac], b[i * bc]);
        return;
    }
    const int64_t C = shape[ndim - 1];
    int64_t R = 1;
    for (int d = 0; d < ndim - 1; d++) R *= shape[d];
    const int64_t ac = as[ndim - 1], bc = bs[ndim - 1];
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        int64_t ao, bo;
        row_offsets(r, shape, ndim, as, bs, &ao, &bo);
        float *o = out + r * C;
        if (ac == 1 && bc == 1) {
            for (int64_t c = 0; c < C; c++) o[c] = binary_apply(op, a[ao + c], b[bo + c]);
        } else {
            for (int64_t c = 0; c < C; c++) o[c] = binary_apply(op, a[ao + c * ac], b[bo + c * bc]);
        }
    }
}

static int has_broadcast(const int64_t *strides, const int64_t *shape, int ndim) {
    for (int d = 0; d < ndim; d++) if (strides[d] == 0 && shape[d] > 1) return 1;
    return 0;
}

// ∂(a∘b)/∂a and ∂(a∘b)/∂b at one element.
static inline float partial(ck_binary_op op, int wrt_b, float a, float b) {
    switch (op) {
    case CK_ADD: return 1.0f;
    case CK_SUB: return wrt_b ? -1.0f : 1.0f;
    case CK_MUL: return wrt_b ? a : b;
    default:     return wrt_b ? -a / (b * b) : 1.0f / b;
    }
}

static void binary_grad_one(ck_binary_op op, int wrt_b, float *dt, const float *dout, const float *a,
                            const int64_t *as, const float *b, const int64_t *bs, const int64_t *shape,
                            int ndim, int accumulate) {
    const int64_t C = shape[ndim - 1];
    int64_t R = 1;
    for (int d = 0; d < ndim - 1; d++) R *= shape[d];
    const int64_t ac = as[ndim - 1], bc = bs[ndim - 1];
    const int64_t *ts = wrt_b ? bs : as;
    const int64_t tc = ts[ndim - 1];
    // A broadcast target receives sums from many output elements: one thread, output order.
    const int serial = has_broadcast(ts, shape, ndim);
    if (ndim == 1 && !serial) {   // one flat run, split evenly across threads
        const int64_t N = shape[0];
        if (op == CK_ADD || op == CK_SUB) {   // ∂ = ±1 (the residual stream): a vector copy or add of ±dout
            const float sign = op == CK_SUB && wrt_b ? -1.0f : 1.0f;
            if (accumulate) { ck_axpy(dt, sign, dout, N); return; }
            #pragma omp parallel for simd schedule(static) if (N >= CK_PAR_MIN)
            for (int64_t i = 0; i < N; i++) dt[i] = sign * dout[i];
            return;
        }
        #pragma omp parallel for schedule(static) if (N >= CK_PAR_MIN)
        for (int64_t i = 0; i < N; i++) {
            const float v = dout[i] * partial(op, wrt_b, a[i * ac], b[i * bc]);
            dt[i] = accumulate ? dt[i] + v : v;
        }
        return;
    }
    #pragma omp parallel for schedule(static) if (!serial && R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        int64_t ao, bo;
        row_offsets(r, shape, ndim, as, bs, &ao, &bo);
        const int64_t to = wrt_b ? bo : ao;
        const float *g = dout + r * C;
        for (int64_t c = 0; c < C; c++) {
            const float v = g[c] * partial(op, wrt_b, a[ao + c * ac], b[bo + c * bc]);
            dt[to + c * tc] = accumulate ? dt[to + c * tc] + v : v;
        }
    }
}

// A broadcast operand's gradient sums several output elements into one: zeroed first when overwritten.
static void binary_grad(ck_binary_op op, int wrt_b, ck_grad g, const float *dout, const float *a,
                        const int64_t *as, const float *b, const int64_t *bs, const int64_t *shape, int ndim) {
    const int64_t *ts = wrt_b ? bs : as;
    if (has_broadcast(ts, shape, ndim)) {
        int64_t n = 1;   // elements of the operand: the product of its non-broadcast dims
        for (int d = 0; d < ndim; d++) if (ts[d] != 0) n *= shape[d];
        g = ck_grad_for_scatter(g, n);
    }
    binary_grad_one(op, wrt_b, g.data, dout, a, as, b, bs, shape, ndim, g.accumulate);
}

void ck_binary_backward(ck_binary_op op, ck_grad da, ck_grad db, const float *dout, const float *a,
                        const int64_t *as, const float *b, const int64_t *bs, const int64_t *shape, int ndim) {
    if (da.data) binary_grad(op, 0, da, dout, a, as, b, bs, shape, ndim);
    if (db.data) binary_grad(op, 1, db, dout, a, as, b, bs, shape, ndim);
}

void ck_unary_forward(ck_unary_op op, float *out, const float *x, int64_t N, float p) {
    #pragma omp parallel for schedule(static) if (N >= CK_PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        float v = x[i];
        switch (op) {
        case CK_EXP:   out[i] = expf(v); break;
        case CK_LOG:   out[i] = logf(v); break;
        case CK_SQRT:  out[i] = sqrtf(v); break;
        case CK_POW:   out[i] = powf(v, p); break;
        case CK_SCALE: out[i] = p * v; break;
        default:       out[i] = v + p; break;
        }
    }
}

void ck_unary_backward(ck_unary_op op, ck_grad dx, const float *dout, const float *x, const float *out,
                       int64_t N, float p) {
    #pragma omp parallel for schedule(static) if (N >= CK_PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        float g = dout[i], d;
        switch (op) {
        case CK_EXP:   d = out[i]; break;                       // (eˣ)' = eˣ
        case CK_LOG:   d = 1.0f / x[i]; break;
        case CK_SQRT:  d = 0.5f / out[i]; break;                // (√x)' = 1/(2√x)
        case CK_POW:   d = p == 0.0f ? 0.0f : p * powf(x[i], p - 1.0f); break;
        case CK_SCALE: d = p; break;
        default:       d = 1.0f; break;
        }
        CK_PUT(dx.accumulate, dx.data[i], g * d);
    }
}

void ck_sum_axis_forward(float *out, const float *x, int64_t O, int64_t A, int64_t I) {
    #pragma omp parallel for schedule(static) if (O * A * I >= CK_PAR_MIN)
    for (int64_t o = 0; o < O; o++) {
        float *dst = out + o * I;
        for (int64_t i = 0; i < I; i++) dst[i] = 0.0f;
        for (int64_t a = 0; a < A; a++) {
            const float *src = x + (o * A + a) * I;
            #pragma omp simd
            for (int64_t i = 0; i < I; i++) dst[i] += src[i];
        }
    }
}

void ck_sum_axis_backward(ck_grad dx, const float *dout, int64_t O, int64_t A, int64_t I) {
    const int acc = dx.accumulate;
    #pragma omp parallel for schedule(static) if (O * A * I >= CK_PAR_MIN)
    for (int64_t oa = 0; oa < O * A; oa++) {
        float *dst = dx.data + oa * I;
        const float *g = dout + (oa / A) * I;
        if (acc) {
            #pragma omp simd
            for (int64_t i = 0; i < I; i++) dst[i] += g[i];
        } else {
            memcpy(dst, g, (size_t)I * sizeof(float));
        }
    }
}

void ck_narrow_forward(float *out, const float *x, int64_t O, int64_t A, int64_t start, int64_t length, int64_t I) {
    ck_copy_rows(out, length * I, x + start * I, A * I, O, length * I, 0);
}

void ck_narrow_backward(ck_grad dx, const float *dout, int64_t O, int64_t A, int64_t start, int64_t length, int64_t I) {
    if (!dx.accumulate) {   // the rows outside the slice get zero
        #pragma omp parallel for schedule(static) if (O * A * I >= CK_PAR_MIN)
        for (int64_t o = 0; o < O; o++) {
            float *d = dx.data + o * A * I;
            memset(d, 0, (size_t)(start * I) * sizeof(float));
            memset(d + (start + length) * I, 0, (size_t)((A - start - length) * I) * sizeof(float));
        }
    }
    ck_copy_rows(dx.data + start * I, A * I, dout, length * I, O, length * I, dx.accumulate);
}

double ck_sum_all(const float *x, int64_t N) {
    // Serial on purpose: used for scalars (losses, means) where the order must not depend on threads.
    double total = 0.0;
    for (int64_t i = 0; i < N; i++) total += x[i];
    return total;
}

void ck_copy_rows(float *dst, int64_t dst_ld, const float *src, int64_t src_ld, int64_t R, int64_t C,
                  int accumulate) {
    #pragma omp parallel for schedule(static) if (R * C >= CK_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        float *d = dst + r * dst_ld;
        const float *s = src + r * src_ld;
        if (accumulate) {
            #pragma omp simd
            for (int64_t c = 0; c < C; c++) d[c] += s[c];
        } else {
            memcpy(d, s, (size_t)C * sizeof(float));
        }
    }
}

void ck_transpose(float *out, const float *x, int64_t Bt, int64_t M, int64_t N, int accumulate) {
    #pragma omp parallel for schedule(static) if (Bt * M * N >= CK_PAR_MIN)
    for (int64_t bn = 0; bn < Bt * N; bn++) {
        const int64_t b = bn / N, n = bn % N;
        float *o = out + bn * M;
        const float *xs = x + b * M * N + n;
        if (accumulate) for (int64_t m = 0; m < M; m++) o[m] += xs[m * N];
        else            for (int64_t m = 0; m < M; m++) o[m] = xs[m * N];
    }
}

void ck_axpy(float *y, float a, const float *x, int64_t N) {
    #pragma omp parallel for simd schedule(static) if (N >= CK_PAR_MIN)
    for (int64_t i = 0; i < N; i++) y[i] += a * x[i];
}
