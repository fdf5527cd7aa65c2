#!/bin/bash
# Two builds of `tessera` timed against each other on this machine: `tessera bench` of A, then of B,
# alternating round by round (a noisy, shared machine moves both alike within a round), then the median
# over the rounds of the step's time, its time outside the products and each op's row, and the
# per-round ratios of B's step to A's.
#
#   bash Bench/ab_step.sh ROUNDS A/tessera B/tessera -- <pretrain options>
#   e.g. bash Bench/ab_step.sh 6 old/tessera .build/release/tessera -- --method mae --precision bf16
#
# STEPS (default 4) and THREADS (default 2) set each round's `tessera bench --steps/--threads`.
# Each round's whole output stays in $AB_DIR (default a new temporary folder), named A.N and B.N.
set -euo pipefail
if [ $# -lt 4 ] || [ "$4" != "--" ]; then
    echo "usage: bash Bench/ab_step.sh ROUNDS A/tessera B/tessera -- <pretrain options>" >&2; exit 64
fi
rounds=$1 a=$2 b=$3; shift 4
for bin in "$a" "$b"; do [ -x "$bin" ] || { echo "ab_step: $bin is not an executable; build it first (swift build -c release)" >&2; exit 66; }; done
dir=${AB_DIR:-$(mktemp -d)}
mkdir -p "$dir"
for i in $(seq "$rounds"); do
    "$a" bench --rounds 1 --steps "${STEPS:-4}" --threads "${THREADS:-2}" -- "$@" > "$dir/A.$i" 2>&1 || { echo "ab_step: A failed, see $dir/A.$i" >&2; exit 1; }
    "$b" bench --rounds 1 --steps "${STEPS:-4}" --threads "${THREADS:-2}" -- "$@" > "$dir/B.$i" 2>&1 || { echo "ab_step: B failed, see $dir/B.$i" >&2; exit 1; }
done
python3 - "$dir" "$rounds" <<'PY'
import re, statistics as st, sys
folder, rounds = sys.argv[1], int(sys.argv[2])
def parse(path):
    rows = {}
    for line in open(path):
        if m := re.match(r'^median: ([0-9.]+) ms', line): rows['step, ms'] = float(m.group(1))
        if m := re.match(r'^outside the products .*?: ([0-9.]+) ms = ([0-9.]+)%', line):
            rows['outside the products, ms'] = float(m.group(1)); rows['outside the products, %'] = float(m.group(2))
        if m := re.match(r'^  (\S.*?)\s{2,}([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)%', line): rows[m.group(1)] = float(m.group(4))
        if m := re.match(r'^OpenMP .*?: (\d+) parallel regions', line): rows['OpenMP regions'] = float(m.group(1))
    return rows
runs = {side: [parse(f"{folder}/{side}.{i}") for i in range(1, rounds + 1)] for side in "AB"}
keys = [k for k in runs['A'][0] if all(k in r for side in "AB" for r in runs[side])]
keys.sort(key=lambda k: -st.median(r[k] for r in runs['A']))
print(f"{'median over ' + str(rounds) + ' rounds':<48} {'A':>10} {'B':>10}")
for k in keys: print(f"{k[:48]:<48} {st.median(r[k] for r in runs['A']):>10.2f} {st.median(r[k] for r in runs['B']):>10.2f}")
ratios = [b['step, ms'] / a['step, ms'] for a, b in zip(runs['A'], runs['B'])]
print("B/A step per round:", " ".join(f"{x:.3f}" for x in ratios), f"median {st.median(ratios):.3f}")
print(f"each round's output: {folder}")
PY
