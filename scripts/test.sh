#!/usr/bin/env bash
# Installs what is missing (Debian) and runs the whole test suite: once with OpenMP, and the kernel
# tests once more built without OpenMP (every kernel must also pass single-threaded).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_deps
echo "== swift test (OpenMP, ${TESSERA_THREADS:-all} threads)"
swift test
echo "== swift test without OpenMP (TESSERA_NO_OPENMP=1)"
TESSERA_NO_OPENMP=1 swift test --scratch-path .build-noomp --filter 'CKernelsTests|EngineTests'
