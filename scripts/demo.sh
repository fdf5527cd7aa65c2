#!/usr/bin/env bash
# The main job: installs what is missing (Debian), builds in release, pretrains MAE on Fashion-MNIST
# with a short schedule (9 min 13 s on a 2-core VM, 2026-12-01, with the release build already
# mostly cached; a first build adds a few minutes), then prints kNN, linear-probe and few-shot
# accuracy of the frozen encoder and writes a reconstruction PNG. Extra arguments go to
# `tessera pretrain` (e.g. --epochs 10 for the reference protocol).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_deps
swift build -c release --product tessera
run="runs/demo-$(date +%Y%m%d-%H%M%S)"
bin=.build/release/tessera
$bin pretrain --data fashion-mnist --run "$run" --depth 6 --epochs 2 --warmup-epochs 1 "$@"
$bin eval "$run/last.safetensors"
$bin reconstruct "$run/last.safetensors" --count 8 --out "$run/reconstruction.png"
echo "run folder: $run (config.json, metrics.csv, metrics.jsonl, last*.safetensors, reconstruction.png)"
