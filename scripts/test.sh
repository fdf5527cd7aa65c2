#!/usr/bin/env bash
# Installs what is missing (Debian) and runs the whole test suite (XCTest): once with OpenMP (kernels
# dispatched at run time; AVX-512 here), the kernel tests once more with the kernels built for AVX2
# only, the kernel, engine and data tests built without OpenMP and for baseline x86-64 (every
# kernel must also pass single-threaded, and every CPU variant runs the op table), and the kernel
# and engine tests under AddressSanitizer + UndefinedBehaviorSanitizer.
# Ends with one line "tests: N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_deps
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
status=0
echo "== swift test (OpenMP, ${TESSERA_THREADS:-all} threads)"
swift test --disable-swift-testing 2>&1 | tee "$logs/omp.log" || status=1
echo "== swift test, kernels built for AVX2 only (TESSERA_CPU=avx2)"
TESSERA_CPU=avx2 swift test --disable-swift-testing --scratch-path .build-avx2 \
    --filter 'CKernelsTests' 2>&1 | tee "$logs/avx2.log" || status=1
echo "== swift test without OpenMP, kernels built for baseline x86-64 (TESSERA_NO_OPENMP=1 TESSERA_CPU=baseline)"
TESSERA_NO_OPENMP=1 TESSERA_CPU=baseline swift test --disable-swift-testing --scratch-path .build-noomp \
    --filter 'CKernelsTests|EngineTests|DataTests' 2>&1 | tee "$logs/noomp.log" || status=1
echo "== swift test, kernels and engine under AddressSanitizer + UndefinedBehaviorSanitizer"
# UBSan on the C code (-fno-sanitize-recover: a finding fails the run); Swift's own checks are on in
# debug builds. Leak detection is off: at exit LeakSanitizer reports XCTest's registry of test cases
# and runs, which are not Tessera's memory (docs/reliability.md).
ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    swift test --disable-swift-testing --scratch-path .build-asan --sanitize=address \
    -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined \
    --filter 'CKernelsTests|EngineTests' 2>&1 | tee "$logs/asan.log" || status=1
if grep -qE "runtime error:|ERROR: AddressSanitizer" "$logs/asan.log"; then echo "sanitizer findings above"; status=1; fi
# XCTest's last "Executed N tests, with [S tests skipped and ]F failures" line of a run is that run's
# total (a run with skips words it so; without the optional part its count would come from a suite).
passed=0 failed=0 skipped=0
for f in "$logs"/omp.log "$logs"/avx2.log "$logs"/noomp.log "$logs"/asan.log; do
    read -r n k s < <(grep -E 'Executed [0-9]+ tests?, with ([0-9]+ tests? skipped and )?[0-9]+ failures?' "$f" | tail -1 \
        | sed -E 's/.*Executed ([0-9]+) tests?, with (([0-9]+) tests? skipped and )?([0-9]+) failures?.*/\1 \4 \3/' || echo "0 1")
    passed=$((passed + ${n:-0} - ${k:-1} - ${s:-0})); failed=$((failed + ${k:-1})); skipped=$((skipped + ${s:-0}))
done
echo "tests: ${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
