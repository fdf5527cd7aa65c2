#!/usr/bin/env bash
# Fuzzes everything Tessera reads from files with libFuzzer (Swift's -sanitize=fuzzer, plus
# AddressSanitizer): safetensors, IDX, gzip, .npy, PNG, JPEG, the run configuration (config.json and
# checkpoint metadata) and tar shards with their index files. Seeds: the malformed-file corpus in
# Tests/DataTests/Corpus and Tools/fuzz/seeds. Not part of CI (hours for the full budget).
#   bash scripts/fuzz.sh [--seconds S | --runs N] [--skip-build] [reader ...]
#     --seconds S   each reader for S seconds (default 60)
#     --runs N      each reader for N executions (the documented budget: --runs 10000000)
#     --skip-build  reuse .build/fuzz/fuzz-readers (e.g. a second chain of readers beside a running one)
#     readers       any of: safetensors idx gzip npy png jpeg config tar (default: all)
# FUZZ_UNIT_TIMEOUT (seconds, default 10): one input running longer is reported as a hang.
# Findings are written to .build/fuzz/crash-<reader>-{crash,leak,timeout,oom}-*; a non-zero exit means
# one (libFuzzer's slow-unit-* files, inputs over 10 s, are kept but not findings: a busy machine or a
# paused fuzzer writes them too; rerun one alone to time it). Each
# finding is then added to the corpus with a test (Tests/DataTests/ReaderCorpusTests.swift,
# Tests/ModelsTests/ConfigCheckTests.swift, the seed in Tools/fuzz/seeds). A summary line per reader goes to .build/fuzz/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=(-max_total_time=60)
READERS=()
BUILD=1
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) BUDGET=(-max_total_time="$2"); shift 2 ;;
        --runs) BUDGET=(-runs="$2"); shift 2 ;;
        --skip-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) READERS+=("$1"); shift ;;
    esac
done
[ ${#READERS[@]} -gt 0 ] || READERS=(safetensors idx gzip npy png jpeg config tar)
B=.build/fuzz
if [ $BUILD = 1 ]; then
. scripts/deps.sh
install_deps
mkdir -p "$B/obj" "$B/include"
# The C kernels and image C code instrumented for coverage (no OpenMP: the readers are single-
# threaded); then swift-log, the engine, the data readers (testable, so the harness reaches the tar
# index reader) and the models (the configuration) as modules; then the harness.
for c in Sources/CKernels/*.c Sources/CImageData/*.c; do
    clang -O1 -g -fsanitize=fuzzer-no-link,address -fopenmp-simd -ISources/CKernels/include -ISources/CImageData/include \
        -c "$c" -o "$B/obj/$(basename "$c" .c).o"
done
cat > "$B/include/module.modulemap" <<MAP
module CKernels { umbrella header "$(pwd)/Sources/CKernels/include/CKernels.h" export * }
module CImageData { umbrella header "$(pwd)/Sources/CImageData/include/CImageData.h" export * }
module COpenBLAS [system] { header "$(pwd)/Sources/COpenBLAS/shim.h" link "openblas" export * }
MAP
quiet() { { grep -v "Cannot export local symbol" || true; } >&2; }
module() {   # name, sources…
    local name=$1; shift
    swiftc -O -g -sanitize=fuzzer,address -enable-testing -parse-as-library -module-name "$name" -package-name fuzz -wmo -c \
        -emit-module -emit-module-path "$B/include/$name.swiftmodule" -I "$B/include" "$@" -o "$B/$name.o" 2>&1 | quiet
}
module Logging $(find .build/checkouts/swift-log/Sources/Logging -name '*.swift')
module TesseraEngine $(find Sources/Engine -name '*.swift')
module TesseraData $(find Sources/Data -name '*.swift')
module TesseraModels $(find Sources/Models -name '*.swift')
swiftc -O -g -sanitize=fuzzer,address -parse-as-library -module-name TesseraFuzz -I "$B/include" \
    Tools/fuzz/FuzzReaders.swift "$B"/Logging.o "$B"/TesseraEngine.o "$B"/TesseraData.o "$B"/TesseraModels.o "$B"/obj/*.o \
    $(pkg-config --libs openblas) -lpng16 -ljpeg -lz -lm -o "$B/fuzz-readers" 2>&1 | quiet
fi
[ -x "$B/fuzz-readers" ] || { echo "error: $B/fuzz-readers is not built; run without --skip-build" >&2; exit 1; }
status=0
for r in "${READERS[@]}"; do
    case $r in
        safetensors) seeds="Tests/DataTests/Corpus/st_*" ;;
        idx) seeds="Tests/DataTests/Corpus/idx_*.idx" ;;
        gzip) seeds="Tests/DataTests/Corpus/idx_*.gz" ;;
        npy) seeds="Tests/DataTests/Corpus/npy_*" ;;
        png) seeds="Tests/DataTests/Corpus/png_*" ;;
        jpeg) seeds="Tests/DataTests/Corpus/jpeg_*" ;;
        config) seeds="Tools/fuzz/seeds/config_*" ;;
        tar) seeds="Tools/fuzz/seeds/tar_*" ;;
        *) echo "unknown reader $r; choose from safetensors idx gzip npy png jpeg config tar" >&2; exit 2 ;;
    esac
    corpus="$B/corpus-$r"
    mkdir -p "$corpus"
    for s in $seeds; do [ -f "$s" ] && cp "$s" "$corpus"/; done
    echo "== fuzzing $r (${BUDGET[*]}, $(ls "$corpus" | wc -l) inputs in the corpus)"
    start=$(date +%s)
    if ! FUZZ_TARGET=$r "$B/fuzz-readers" "$corpus" "${BUDGET[@]}" -max_len=65536 -rss_limit_mb=2048 \
            -timeout="${FUZZ_UNIT_TIMEOUT:-10}" -artifact_prefix="$B/crash-$r-" -print_final_stats=1 2>"$B/$r.log"; then
        echo "!! $r: libFuzzer found a problem; see $B/$r.log and $B/crash-$r-*" >&2
        status=1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$B/$r.log")
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$B/$r.log")
    line="$(date -u +%FT%TZ) $r executions=${runs:-?} seconds=$(( $(date +%s) - start )) peak_rss_mb=${rss:-?} corpus=$(ls "$corpus" | wc -l) status=$([ -n "$(ls "$B"/crash-$r-{crash,leak,timeout,oom}-* 2>/dev/null)" ] && echo finding || echo clean)"
    echo "   $line"
    echo "$line" >> "$B/summary.txt"
done
exit $status
