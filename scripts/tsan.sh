#!/usr/bin/env bash
# ThreadSanitizer over the OpenMP kernels: the kernel and engine tests built with -sanitize=thread and
# run with 4 OpenMP threads (more than this machine's cores, so threads interleave), with LLVM's
# Archer tool loaded into libomp so TSan knows OpenMP's barriers, reductions and task edges (without
# it every parallel region reads as a race). Not part of CI (about 25 minutes on 2 cores).
#   bash scripts/tsan.sh [test filter, default 'CKernelsTests|EngineTests']
# First a control: a small OpenMP loop with a deliberate race must be reported and the same loop with
# a reduction must not, so a clean run means the tool was looking. Exit status non-zero on any report.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
install_deps
FILTER="${1:-CKernelsTests|EngineTests}"
ARCHER=$(ls /usr/lib/llvm-*/lib/libarcher.so 2>/dev/null | sort -V | tail -1 || true)
[ -n "$ARCHER" ] || { echo "error: libarcher.so not found; apt-get install libomp-dev (LLVM's OpenMP ships Archer)" >&2; exit 1; }
OMPDIR=$(dirname "$ARCHER")
SWIFTLIB=$(dirname "$(dirname "$(command -v swift)")")/lib/swift/linux   # libdispatch, which TSan's runtime needs
export OMP_TOOL_LIBRARIES="$ARCHER" TSAN_OPTIONS="ignore_noninstrumented_modules=1 halt_on_error=0 second_deadlock_stack=1"
logs=.build-tsan/logs
mkdir -p "$logs"

echo "== control: Archer + TSan on a racy and a race-free OpenMP loop"
cat > "$logs/control.c" <<'C'
#include <stdio.h>
int main(void) {
    float sum = 0, a[4096];
    for (int i = 0; i < 4096; i++) a[i] = (float)i;
#ifdef RACY
    #pragma omp parallel for
#else
    #pragma omp parallel for reduction(+:sum)
#endif
    for (int i = 0; i < 4096; i++) sum += a[i];
    printf("%g\n", sum);
    return 0;
}
C
for v in RACY CLEAN; do
    clang -O1 -g -fsanitize=thread -fopenmp -D$v "$logs/control.c" -o "$logs/control-$v" -L"$OMPDIR" -Wl,-rpath,"$OMPDIR" \
        -L"$SWIFTLIB" -ldispatch -lBlocksRuntime -Wl,-rpath,"$SWIFTLIB"
    OMP_NUM_THREADS=4 "$logs/control-$v" > "$logs/control-$v.log" 2>&1 || true
done
grep -q "WARNING: ThreadSanitizer: data race" "$logs/control-RACY.log" || { echo "error: TSan missed the control's race; the tool is not working" >&2; exit 1; }
! grep -q "WARNING: ThreadSanitizer" "$logs/control-CLEAN.log" || { echo "error: TSan reports the race-free control; Archer is not loaded" >&2; exit 1; }
echo "   the racy loop is reported, the reduction is not"

echo "== build with -sanitize=thread (scratch .build-tsan; CK_NO_CLONES: TSan cannot run inside the GNU ifunc resolvers of the target clones, so the kernels are built for one instruction set)"
swift build --build-tests --scratch-path .build-tsan --sanitize=thread -Xcc -DCK_NO_CLONES 2>&1 | tail -1
echo "== $FILTER with TESSERA_THREADS=4 under TSan + Archer"
status=0
TESSERA_THREADS=4 swift test --skip-build --disable-swift-testing --scratch-path .build-tsan --sanitize=thread \
    --filter "$FILTER" > "$logs/tests.log" 2>&1 || status=1
grep -E "Executed [0-9]+ tests" "$logs/tests.log" | tail -1
reports=$(grep -c "WARNING: ThreadSanitizer" "$logs/tests.log" || true)
echo "   ThreadSanitizer reports: $reports (log: $logs/tests.log)"
[ "$reports" = 0 ] || status=1
exit $status
