#!/usr/bin/env bash
# Installs what is missing (Debian) and runs the test suite (XCTest).
#
# Full tier (no argument; what .ci/run calls): four builds. With OpenMP (kernels dispatched at run
# time; AVX-512 here); the kernel tests once more with the kernels built for AVX2 only; the kernel,
# engine and data tests built without OpenMP and for baseline x86-64 (every kernel must also pass
# single-threaded, and every CPU variant runs the op table); the kernel and engine tests under
# AddressSanitizer + UndefinedBehaviorSanitizer.
#
# Quick tier (--quick, for every change): the first build only, every test on fewer and smaller
# cases (TESSERA_QUICK=1: op-table references below production size, one hostile value per option,
# three kills, one MPI kill).
#
# Ends with one line "tests: N passed, N failed, N skipped", counting test cases (not assertions):
# a phase whose test process did not finish (a crash) counts as a failure, and so does a phase that
# ran fewer tests than its minimum below. Before it: each skip with its reason and the slowest tests.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
case "${1:-}" in
    --quick) quick=1 ;;
    "") ;;
    *) echo "usage: bash scripts/test.sh [--quick]" >&2; exit 64 ;;
esac
source scripts/deps.sh
install_deps
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
status=0
# The thread runtime settings `tessera` gives itself (Runtime.restartWithTunedRuntimeIfNeeded), set
# once here: idle worker threads soon sleep instead of spinning on the two cores the test process and
# its subprocesses share, and each `tessera` a test starts runs without re-executing itself.
export KMP_BLOCKTIME=${KMP_BLOCKTIME:-1} OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-4}
phases=()
# phase NAME MINIMUM -- command…: runs one swift test invocation into $logs/NAME.log.
phase() {
    local name=$1 minimum=$2
    shift 3
    phases+=("$name:$minimum")
    "$@" 2>&1 | tee "$logs/$name.log" || status=1
}
if [ "$quick" -eq 1 ]; then
    echo "== quick tier: swift test (OpenMP, ${TESSERA_THREADS:-all} threads, TESSERA_QUICK=1)"
    TESSERA_QUICK=1 phase omp 140 -- swift test --disable-swift-testing
else
    echo "== swift test (OpenMP, ${TESSERA_THREADS:-all} threads)"
    phase omp 140 -- swift test --disable-swift-testing
    echo "== swift test, kernels built for AVX2 only (TESSERA_CPU=avx2)"
    TESSERA_CPU=avx2 phase avx2 22 -- swift test --disable-swift-testing --scratch-path .build-avx2 --filter 'CKernelsTests'
    echo "== swift test without OpenMP, kernels built for baseline x86-64 (TESSERA_NO_OPENMP=1 TESSERA_CPU=baseline)"
    TESSERA_NO_OPENMP=1 TESSERA_CPU=baseline phase noomp 75 -- swift test --disable-swift-testing --scratch-path .build-noomp \
        --filter 'CKernelsTests|EngineTests|DataTests'
    echo "== swift test, kernels and engine under AddressSanitizer + UndefinedBehaviorSanitizer"
    # UBSan on the C code (-fno-sanitize-recover: a finding fails the run); Swift's own checks are on in
    # debug builds. Leak detection is off: at exit LeakSanitizer reports XCTest's registry of test cases
    # and runs, which are not Tessera's memory (docs/reliability.md).
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
        phase asan 50 -- swift test --disable-swift-testing --scratch-path .build-asan --sanitize=address \
        -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined --filter 'CKernelsTests|EngineTests'
    if grep -qE "runtime error:|ERROR: AddressSanitizer" "$logs/asan.log"; then echo "sanitizer findings above"; status=1; fi
    # oneDNN, which `auto` picks wherever libdnnl is installed: the GEMM tests of the first build again
    # with Debian's libdnnl2 unpacked beside the build (not installed: every other phase keeps the
    # default a machine without it has), oneDNN the process's GEMM, its reference test required.
    echo "== swift test, GEMM tests on oneDNN (Debian's libdnnl2, unpacked into .build-onednn)"
    if onednn_dir=$(unpack_onednn .build-onednn); then
        LD_LIBRARY_PATH="$onednn_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" TESSERA_GEMM=onednn TESSERA_REQUIRE_ONEDNN=1 TESSERA_QUICK=1 \
            phase onednn 15 -- swift test --disable-swift-testing --skip-build --filter 'KernelReferenceTests|OpTableTests|ThreadCountTests|MLPOpTests'
    else
        echo "phase onednn: libdnnl2 could not be downloaded (apt-get download libdnnl2); not run"
        [ "${CI:-}" = "true" ] && status=1
    fi
fi

# The skips CI accepts, each for a reason of the machine or the phase, not of the code: oneDNN outside
# its own phase, the FMA chain on the baseline tile, thread-count comparisons without OpenMP, AVX-512 on
# a CPU without it, the full-disk test where no tmpfs can be mounted. Under CI=true any other skip
# fails the run.
allowed_skips='FullDiskTests\.test[A-Za-z]+|KernelReferenceTests\.testOneDNNGemmMatchesReference|KernelReferenceTests\.testTesseraGemmIsTheSameFusedMultiplyAddChainOnEveryTile|ThreadCountTests\.test[A-Za-z]+|OpTableTests\.testKernelsAreThreadCountIndependent|OpTableTests\.testTheAVX512VariantRanOrTheSkipSaysWhy'

# The count, from the test cases themselves: each "Test Case '…' passed|failed|skipped" line once.
passed=0 failed=0 skipped=0
for entry in "${phases[@]}"; do
    name=${entry%%:*} minimum=${entry##*:} f="$logs/$name.log"
    p=$(grep -cE "^Test Case '[^']+' passed" "$f" || true)
    x=$(grep -cE "^Test Case '[^']+' failed" "$f" || true)
    s=$(grep -cE "^Test Case '[^']+' skipped" "$f" || true)
    if ! grep -qE "^Test Suite '(All tests|Selected tests)' (passed|failed)" "$f"; then
        echo "phase $name: the test process did not finish (crashed or was killed) after $((p + x + s)) tests"
        x=$((x + 1))
    elif [ $((p + x + s)) -lt "$minimum" ]; then
        echo "phase $name: $((p + x + s)) tests ran, fewer than its minimum of $minimum"
        x=$((x + 1))
    fi
    if [ "${CI:-}" = "true" ]; then
        for t in $(grep -oE "^Test Case '[^']+' skipped" "$f" | sed -E "s/^Test Case '([^']+)' skipped/\1/"); do
            if ! [[ "$t" =~ ^($allowed_skips)$ ]]; then echo "phase $name: $t was skipped, which CI does not allow (scripts/test.sh)"; x=$((x + 1)); fi
        done
    fi
    echo "phase $name: $p passed, $x failed, $s skipped; slowest:"
    # Sorted into a file first: `head` closing a pipe early would end this script (pipefail, SIGPIPE).
    { grep -E "^Test Case '[^']+' passed \(" "$f" || true; } | sed -E "s/^Test Case '([^']+)' passed \(([0-9.]+) seconds\)/\2 \1/" \
        | sort -rn > "$logs/$name.slowest"
    head -15 "$logs/$name.slowest" | awk '{printf "    %8.1f s  %s\n", $1, $2}'
    grep -E ": Test skipped" "$f" | sed -E 's/^.*: ([A-Za-z0-9_.]+) : Test skipped(: required [a-z]+ value but got [a-z]+)? - /    skipped: \1: /' || true
    passed=$((passed + p)) failed=$((failed + x)) skipped=$((skipped + s))
done
echo "tests: ${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
