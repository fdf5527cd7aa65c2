// Times ck_attention_forward (or, with a ninth argument, the backward) on B x N tokens of H heads of D,
// in one precision (0 fp32, 1 bf16) and thread count: the best of 5 runs of REPS calls, in ms and in µs
// per head per thread. Linked against a build's CKernels objects by Bench/ab_attention.sh.
//   attention_head B N H D REPS PRECISION THREADS [backward]
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct { float *data; int accumulate; } ck_grad;
void ck_attention_forward(float *out, float *lse, const float *qkv, float *scratch, int64_t B, int64_t N, int64_t H, int64_t D, float scale);
void ck_attention_backward(ck_grad g, const float *dout, const float *qkv, const float *lse, float *scratch, int64_t B, int64_t N,
                           int64_t H, int64_t D, float scale);
int64_t ck_attention_scratch_floats(int64_t N, int64_t D);
void ck_gemm_set_precision(int precision);
void ck_set_num_threads(int threads);

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

int main(int argc, char **argv) {
    if (argc < 8) { fprintf(stderr, "usage: %s B N H D REPS PRECISION THREADS [backward]\n", argv[0]); return 2; }
    const int64_t B = atol(argv[1]), N = atol(argv[2]), H = atol(argv[3]), D = atol(argv[4]);
    const int reps = atoi(argv[5]), precision = atoi(argv[6]), threads = atoi(argv[7]), backward = argc > 8;
    ck_set_num_threads(threads);
    float *qkv = malloc(sizeof(float) * B * N * 3 * H * D), *out = malloc(sizeof(float) * B * N * H * D);
    float *lse = malloc(sizeof(float) * B * H * N), *dqkv = malloc(sizeof(float) * B * N * 3 * H * D);
    float *scratch = malloc(sizeof(float) * ck_attention_scratch_floats(N, D) * threads);
    for (int64_t i = 0; i < B * N * 3 * H * D; i++) qkv[i] = (float)((i * 7919) % 1000) / 500.0f - 1;
    ck_gemm_set_precision(precision);
    const float scale = 1.0f / 8;
    ck_attention_forward(out, lse, qkv, scratch, B, N, H, D, scale);
    double best = 1e30;
    for (int k = 0; k < 5; k++) {
        const double t0 = now();
        for (int r = 0; r < reps; r++) {
            if (backward) ck_attention_backward((ck_grad){dqkv, 0}, out, qkv, lse, scratch, B, N, H, D, scale);
            else ck_attention_forward(out, lse, qkv, scratch, B, N, H, D, scale);
        }
        const double t = (now() - t0) / reps;
        if (t < best) best = t;
    }
    printf("B%ld N%ld H%ld D%ld precision %d threads %d %s: %.3f ms (%.2f us per head per thread)\n", (long)B, (long)N, (long)H, (long)D,
           precision, threads, backward ? "backward" : "forward", best * 1e3, best * 1e6 * threads / (double)(B * H));
    return 0;
}
