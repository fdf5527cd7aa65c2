// The MPI calls of data-parallel training (see include/tessera_mpi.h).
#include "tessera_mpi.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef TESSERA_NO_MPI

int tmpi_compiled(void) { return 0; }
void tmpi_library_version(char *out, int capacity) { if (capacity > 0) out[0] = 0; }
static int unavailable(char *error, int capacity) {
    snprintf(error, capacity, "this tessera was built without MPI (TESSERA_MPI=off); rebuild with libopenmpi-dev installed");
    return TMPI_UNAVAILABLE;
}
int tmpi_init(int *rank, int *size, int *local_rank, int *local_size, char *error, int capacity) {
    *rank = 0; *size = 1; *local_rank = 0; *local_size = 1;
    return unavailable(error, capacity);
}
int tmpi_initialized(void) { return 0; }
void tmpi_finalize(void) {}
void tmpi_abort(int code) { exit(code); }
int tmpi_sum_float(float *d, int64_t n, int64_t b, double t, char *e, int c) { (void)d; (void)n; (void)b; (void)t; return unavailable(e, c); }
int tmpi_sum_double(double *d, int64_t n, int64_t b, double t, char *e, int c) { (void)d; (void)n; (void)b; (void)t; return unavailable(e, c); }
int tmpi_broadcast(void *d, int64_t n, int r, double t, char *e, int c) { (void)d; (void)n; (void)r; (void)t; return unavailable(e, c); }
int tmpi_allgather(const void *i, void *o, int64_t n, double t, char *e, int c) { (void)i; (void)o; (void)n; (void)t; return unavailable(e, c); }

#else

#include <mpi.h>

int tmpi_compiled(void) { return 1; }

void tmpi_library_version(char *out, int capacity) {
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    if (MPI_Get_library_version(v, &len) != MPI_SUCCESS) len = 0;
    v[len < MPI_MAX_LIBRARY_VERSION_STRING ? len : MPI_MAX_LIBRARY_VERSION_STRING - 1] = 0;
    char *nl = strchr(v, '\n');
    if (nl) *nl = 0;
    snprintf(out, capacity, "%s", v);
}

static int mpi_failed(int rc, const char *what, char *error, int capacity) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
    text[len] = 0;
    snprintf(error, capacity, "%s failed: %s", what, len ? text : "unknown MPI error");
    return TMPI_ERROR;
}

int tmpi_init(int *rank, int *size, int *local_rank, int *local_size, char *error, int capacity) {
    int provided = 0, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return mpi_failed(rc, "MPI_Init_thread", error, capacity);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    MPI_Comm local;
    rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, *rank, MPI_INFO_NULL, &local);
    if (rc != MPI_SUCCESS) return mpi_failed(rc, "MPI_Comm_split_type", error, capacity);
    MPI_Comm_rank(local, local_rank);
    MPI_Comm_size(local, local_size);
    MPI_Comm_free(&local);
    return TMPI_OK;
}

int tmpi_initialized(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

void tmpi_finalize(void) { if (tmpi_initialized()) MPI_Finalize(); }
void tmpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); exit(code); }

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Waits for a started collective until `timeout_s` has passed: polls (MPI_Test drives the progress
// engine), spinning for the first millisecond, then yielding 20 µs between polls.
static int wait_bounded(MPI_Request *req, const char *what, double timeout_s, char *error, int capacity) {
    const double start = seconds();
    for (long polls = 0;; polls++) {
        int done = 0, rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, what, error, capacity);
        if (done) return TMPI_OK;
        if ((polls & 63) == 0) {
            double waited = seconds() - start;
            if (waited > timeout_s) {
                snprintf(error, capacity, "%s: no answer from the other ranks within %.0f s", what, timeout_s);
                return TMPI_TIMEOUT;
            }
            if (waited > 1e-3) {
                struct timespec ts = {0, 20000};
                nanosleep(&ts, NULL);
            }
        }
    }
}

// One bucket of the fixed-order sum: `len` values at `data`, `chunk` = ⌈len / size⌉ per rank.
#define DEFINE_SUM(NAME, T, MPI_T)                                                                        \
int NAME(T *data, int64_t n, int64_t bucket, double timeout_s, char *error, int capacity) {               \
    int rank = 0, size = 1;                                                                               \
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);                                                                 \
    MPI_Comm_size(MPI_COMM_WORLD, &size);                                                                 \
    if (size == 1 || n == 0) return TMPI_OK;                                                              \
    if (bucket < size) bucket = size;                                                                     \
    if (bucket > ((int64_t)1 << 30)) bucket = (int64_t)1 << 30;                                           \
    const int64_t most = bucket < n ? bucket : n, chunkMost = (most + size - 1) / size;                   \
    T *send = malloc(sizeof(T) * (size_t)(chunkMost * size)), *recv = malloc(sizeof(T) * (size_t)(chunkMost * size)); \
    if (!send || !recv) { free(send); free(recv); snprintf(error, capacity, "out of memory for the gradient reduction"); return TMPI_ERROR; } \
    int status = TMPI_OK;                                                                                 \
    for (int64_t off = 0; off < n && status == TMPI_OK; off += bucket) {                                  \
        const int64_t len = n - off < bucket ? n - off : bucket, chunk = (len + size - 1) / size;         \
        memcpy(send, data + off, sizeof(T) * (size_t)len);                                                \
        memset(send + len, 0, sizeof(T) * (size_t)(chunk * size - len));                                 \
        MPI_Request req;                                                                                  \
        int rc = MPI_Ialltoall(send, (int)chunk, MPI_T, recv, (int)chunk, MPI_T, MPI_COMM_WORLD, &req);   \
        if (rc != MPI_SUCCESS) { status = mpi_failed(rc, "MPI_Ialltoall", error, capacity); break; }      \
        if ((status = wait_bounded(&req, "MPI_Ialltoall", timeout_s, error, capacity)) != TMPI_OK) break; \
        T *mine = send + (int64_t)rank * chunk;   /* send is free again: sum into it */                    \
        for (int64_t i = 0; i < chunk; i++) mine[i] = recv[i];                                            \
        for (int r = 1; r < size; r++) {                                                                  \
            const T *part = recv + (int64_t)r * chunk;                                                    \
            for (int64_t i = 0; i < chunk; i++) mine[i] += part[i];                                       \
        }                                                                                                 \
        rc = MPI_Iallgather(mine, (int)chunk, MPI_T, recv, (int)chunk, MPI_T, MPI_COMM_WORLD, &req);      \
        if (rc != MPI_SUCCESS) { status = mpi_failed(rc, "MPI_Iallgather", error, capacity); break; }     \
        if ((status = wait_bounded(&req, "MPI_Iallgather", timeout_s, error, capacity)) != TMPI_OK) break; \
        memcpy(data + off, recv, sizeof(T) * (size_t)len);                                                \
    }                                                                                                     \
    free(send); free(recv);                                                                               \
    return status;                                                                                        \
}

DEFINE_SUM(tmpi_sum_float, float, MPI_FLOAT)
DEFINE_SUM(tmpi_sum_double, double, MPI_DOUBLE)

int tmpi_broadcast(void *data, int64_t bytes, int root, double timeout_s, char *error, int capacity) {
    const int64_t piece = (int64_t)1 << 30;
    for (int64_t off = 0; off < bytes; off += piece) {
        const int64_t len = bytes - off < piece ? bytes - off : piece;
        MPI_Request req;
        int rc = MPI_Ibcast((char *)data + off, (int)len, MPI_BYTE, root, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, "MPI_Ibcast", error, capacity);
        int s = wait_bounded(&req, "MPI_Ibcast", timeout_s, error, capacity);
        if (s != TMPI_OK) return s;
    }
    return TMPI_OK;
}

int tmpi_allgather(const void *in, void *out, int64_t bytes, double timeout_s, char *error, int capacity) {
    if (bytes > ((int64_t)1 << 30)) { snprintf(error, capacity, "allgather of %lld bytes per rank is too large", (long long)bytes); return TMPI_ERROR; }
    MPI_Request req;
    int rc = MPI_Iallgather(in, (int)bytes, MPI_BYTE, out, (int)bytes, MPI_BYTE, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS) return mpi_failed(rc, "MPI_Iallgather", error, capacity);
    return wait_bounded(&req, "MPI_Iallgather", timeout_s, error, capacity);
}

#endif
