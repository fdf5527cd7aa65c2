#pragma once
#include <stdint.h>

// A thin shim over standard MPI-3 calls (nothing implementation-specific, so it builds against Open
// MPI and MPICH), for Sources/Distributed. Built without MPI (TESSERA_MPI=off) every call reports
// TMPI_UNAVAILABLE.
//
// Every collective is MPI_COMM_WORLD, started non-blocking and waited for with a deadline: a rank that
// died or stopped answering makes the others return TMPI_TIMEOUT instead of waiting forever.

enum { TMPI_OK = 0, TMPI_TIMEOUT = 1, TMPI_ERROR = 2, TMPI_UNAVAILABLE = 3 };

/// 1 when built against an MPI library.
int tmpi_compiled(void);
/// The MPI library's version string (MPI_Get_library_version), or "" without MPI.
void tmpi_library_version(char *out, int capacity);
/// MPI_Init_thread (funneled: only the main thread calls MPI), errors returned rather than fatal.
/// Fills the world rank and size and the rank and size among the processes of this machine.
/// On failure writes a message to `error`.
int tmpi_init(int *rank, int *size, int *local_rank, int *local_size, char *error, int capacity);
int tmpi_initialized(void);
void tmpi_finalize(void);
/// MPI_Abort on the world: ends every rank of the job with `code`.
void tmpi_abort(int code);

/// Sums `n` values elementwise over all ranks, in place, in a fixed order: the world is split into
/// size chunks, MPI_Alltoall gives rank r every rank's copy of chunk r, which it adds in rank order
/// 0, 1, …, size − 1, and MPI_Allgather returns the sums. Every rank gets the same bits whatever
/// the MPI implementation, algorithm or message size. Works through buckets of at most
/// `bucket` values (scratch memory: 2 buckets).
int tmpi_sum_float(float *data, int64_t n, int64_t bucket, double timeout_s, char *error, int capacity);
int tmpi_sum_double(double *data, int64_t n, int64_t bucket, double timeout_s, char *error, int capacity);
/// Copies `bytes` bytes from rank `root` to every rank.
int tmpi_broadcast(void *data, int64_t bytes, int root, double timeout_s, char *error, int capacity);
/// Gathers `bytes` bytes from every rank into `out` (size · bytes), in rank order.
int tmpi_allgather(const void *in, void *out, int64_t bytes, double timeout_s, char *error, int capacity);
