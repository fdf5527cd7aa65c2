#!/bin/bash
# Alternating A/B of the fused attention kernel in two builds: Bench/attention_head.c linked against each
# build's CKernels objects (copy .build/release/CKernels.build/*.o of a build to a folder to keep it),
# run in turn ROUNDS times; prints each build's µs per head per thread, sorted, and the medians' ratio.
#   bash Bench/ab_attention.sh ROUNDS OLD_OBJECTS_DIR NEW_OBJECTS_DIR -- B N H D REPS PRECISION THREADS [backward]
# e.g. bash Bench/ab_attention.sh 5 /tmp/old-objects .build/release/CKernels.build -- 256 50 4 32 20 0 1
set -euo pipefail
rounds=$1 old=$2 new=$3; shift 3; [ "$1" = "--" ] && shift
here=$(cd "$(dirname "$0")" && pwd); work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
for side in old new; do
    dir=${!side}
    clang -O2 "$here/attention_head.c" "$dir"/*.o -o "$work/$side" -l:libomp5.so -lopenblas -lm -ldl
done
for r in $(seq "$rounds"); do
    for side in old new; do echo "$side $("$work/$side" "$@" | sed 's/.*(\([0-9.]*\) us.*/\1/')"; done
done | sort -k1,1 -k2,2n | awk '{ v[$1] = v[$1] " " $2; n[$1]++; x[$1, n[$1]] = $2 }
    END { for (s in n) { m[s] = x[s, int((n[s] + 1) / 2)]; print s ":" v[s] "  median " m[s] }
          if (m["new"] > 0) printf "old/new %.3f\n", m["old"] / m["new"] }'
