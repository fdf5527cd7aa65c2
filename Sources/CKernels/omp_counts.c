// OpenMP accounting for `tessera bench`: the parallel regions a stretch of work opens, the barriers
// it passes and the time threads wait in them, counted by the OpenMP runtime itself through its tools
// interface (OMPT, OpenMP 5.0 §4). The runtime calls ompt_start_tool once, when it starts; returning
// a tool there registers two callbacks (a region begins; a thread begins or ends waiting in a barrier).
//
// The tool attaches only in a process started with TESSERA_OMP_COUNTS=1 (`tessera bench` restarts
// itself with it, as it does for its other runtime settings). Everywhere else ompt_start_tool returns
// null: the runtime runs with no tool, and one the user names in OMP_TOOL_LIBRARIES still loads.
//
// The OMPT types below are the few this file uses, declared as the specification defines them (the
// header, omp-tools.h, ships with clang's OpenMP runtime but not on the include path of every
// toolchain that builds this package).
#include "ck_internal.h"
#include "ck_runtime.h"
#include <stdlib.h>
#include <time.h>

#ifdef _OPENMP
typedef void (*ompt_interface_fn_t)(void);
typedef ompt_interface_fn_t (*ompt_function_lookup_t)(const char *entry_point);
typedef union { uint64_t value; void *ptr; } ompt_data_t;
typedef int (*ompt_initialize_t)(ompt_function_lookup_t lookup, int initial_device_num, ompt_data_t *tool_data);
typedef void (*ompt_finalize_t)(ompt_data_t *tool_data);
typedef struct { ompt_initialize_t initialize; ompt_finalize_t finalize; ompt_data_t tool_data; } ompt_start_tool_result_t;
typedef int (*ompt_set_callback_t)(int event, ompt_interface_fn_t callback);
enum { OMPT_CALLBACK_PARALLEL_BEGIN = 3, OMPT_CALLBACK_SYNC_REGION_WAIT = 16 };
enum { OMPT_SCOPE_BEGIN = 1, OMPT_SCOPE_END = 2 };
// Sync region kinds that are barriers: 1-4 (barrier, implicit, explicit, implementation) and 8-10
// (implicit workshare, implicit parallel, teams); 5-7 are taskwait, taskgroup and reduction.
static int is_barrier(int kind) { return (kind >= 1 && kind <= 4) || (kind >= 8 && kind <= 10); }

static int attached = 0;
static uint64_t regions = 0, barriers = 0, wait_ns = 0;   // updated atomically by every thread
static _Thread_local uint64_t wait_began;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_parallel_begin(ompt_data_t *task, const void *frame, ompt_data_t *parallel, unsigned int threads, int flags,
                              const void *code) {
    __atomic_fetch_add(&regions, 1, __ATOMIC_RELAXED);
}

// Every thread of a region passes each barrier: thread 0 counts it, every thread adds its wait.
static void on_sync_wait(int kind, int endpoint, ompt_data_t *parallel, ompt_data_t *task, const void *code) {
    if (!is_barrier(kind)) return;
    if (endpoint == OMPT_SCOPE_BEGIN) {
        if (omp_get_thread_num() == 0) __atomic_fetch_add(&barriers, 1, __ATOMIC_RELAXED);
        wait_began = now_ns();
    } else if (endpoint == OMPT_SCOPE_END && wait_began) {
        __atomic_fetch_add(&wait_ns, now_ns() - wait_began, __ATOMIC_RELAXED);
        wait_began = 0;
    }
}

static int tool_initialize(ompt_function_lookup_t lookup, int device, ompt_data_t *data) {
    ompt_set_callback_t set = (ompt_set_callback_t)lookup("ompt_set_callback");
    if (!set) return 0;
    // ompt_set_always (5) or ompt_set_sometimes (3, 4): the runtime calls it; anything lower: it never does.
    const int a = set(OMPT_CALLBACK_PARALLEL_BEGIN, (ompt_interface_fn_t)on_parallel_begin);
    const int b = set(OMPT_CALLBACK_SYNC_REGION_WAIT, (ompt_interface_fn_t)on_sync_wait);
    attached = a >= 3 && b >= 3;
    return 1;   // keep the tool (a non-zero return), even if a callback was refused: nothing else depends on it
}
static void tool_finalize(ompt_data_t *data) {}

ompt_start_tool_result_t *ompt_start_tool(unsigned int omp_version, const char *runtime_version);
ompt_start_tool_result_t *ompt_start_tool(unsigned int omp_version, const char *runtime_version) {
    static ompt_start_tool_result_t tool = {tool_initialize, tool_finalize, {0}};
    const char *on = getenv("TESSERA_OMP_COUNTS");
    return on && on[0] == '1' ? &tool : NULL;
}

int ck_omp_counts_available(void) {
    (void)omp_get_max_threads();   // starts the runtime (and so the tool) if nothing has yet
    return attached;
}
ck_omp_counts ck_omp_counts_read(void) {
    return (ck_omp_counts){__atomic_load_n(&regions, __ATOMIC_RELAXED), __atomic_load_n(&barriers, __ATOMIC_RELAXED),
                           1e-9 * (double)__atomic_load_n(&wait_ns, __ATOMIC_RELAXED)};
}
#else
int ck_omp_counts_available(void) { return 0; }
ck_omp_counts ck_omp_counts_read(void) { return (ck_omp_counts){0, 0, 0.0}; }
#endif
