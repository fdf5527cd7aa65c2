#!/usr/bin/env bash
# Fuzzes the file readers (TesseraEngine's safetensors, TesseraData's IDX, gzip, npy, PNG and JPEG) with libFuzzer (Swift's -sanitize=fuzzer, plus AddressSanitizer) for a
# bounded time each, starting from the malformed-file corpus in Tests/DataTests/Corpus.
#   bash scripts/fuzz.sh [seconds per reader, default 60] [readers, default: all]
# Not part of CI. Crashing inputs are written to .build/fuzz/crash-*; a non-zero exit means a bug.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
install_deps
SECONDS_EACH="${1:-60}"
READERS="${2:-safetensors idx gzip npy image}"
B=.build/fuzz
mkdir -p "$B/obj" "$B/include"
# The C kernels and the image C code, instrumented for coverage, without OpenMP (the readers are
# single-threaded); then the engine as a module, then the data readers with the fuzz entry point.
for c in Sources/CKernels/*.c Sources/CImageData/*.c; do
    clang -O1 -g -fsanitize=fuzzer-no-link,address -fopenmp-simd -ISources/CKernels/include -ISources/CImageData/include \
        -c "$c" -o "$B/obj/$(basename "$c" .c).o"
done
cat > "$B/include/module.modulemap" <<MAP
module CKernels { umbrella header "$(pwd)/Sources/CKernels/include/CKernels.h" export * }
module CImageData { umbrella header "$(pwd)/Sources/CImageData/include/CImageData.h" export * }
MAP
swiftc -O -g -sanitize=fuzzer,address -parse-as-library -module-name TesseraEngine -wmo -c \
    -emit-module -emit-module-path "$B/include/TesseraEngine.swiftmodule" -I "$B/include" \
    $(find Sources/Engine -name '*.swift') -o "$B/engine.o" 2>&1 | { grep -v "Cannot export local symbol" || true; } >&2
swiftc -O -g -sanitize=fuzzer,address -parse-as-library -module-name TesseraFuzz -I "$B/include" \
    $(find Sources/Data -name '*.swift') Tools/fuzz/FuzzReaders.swift "$B/engine.o" "$B"/obj/*.o \
    $(pkg-config --libs openblas) -lpng16 -ljpeg -lz -lm -o "$B/fuzz-readers" 2>&1 \
    | { grep -v "Cannot export local symbol" || true; } >&2
status=0
for r in $READERS; do
    case $r in
        safetensors) seeds="st_" ;; idx) seeds="idx_" ;; gzip) seeds="idx_valid.idx.gz" ;; npy) seeds="npy_" ;; image) seeds="png_ jpeg_" ;;
        *) echo "unknown reader $r" >&2; exit 2 ;;
    esac
    corpus="$B/corpus-$r"
    mkdir -p "$corpus"
    for s in $seeds; do cp Tests/DataTests/Corpus/"$s"* "$corpus"/ 2>/dev/null || true; done
    echo "== fuzzing $r for ${SECONDS_EACH}s ($(ls "$corpus" | wc -l) seeds)"
    if ! FUZZ_TARGET=$r "$B/fuzz-readers" "$corpus" -max_total_time="$SECONDS_EACH" -max_len=65536 \
            -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$B/crash-$r-" -print_final_stats=1 2>"$B/$r.log"; then
        echo "!! $r: libFuzzer found a problem; see $B/$r.log and $B/crash-$r-*" >&2
        status=1
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$B/$r.log" | sed "s/^/   $r /" || true
done
exit $status
