#!/usr/bin/env bash
# Installs what is missing (Debian), builds in release mode and runs the kernel benchmark.
# Extra arguments go to tessera-bench (e.g. --quick, --rounds 9).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_deps
swift build -c release --product tessera-bench
exec .build/release/tessera-bench "$@"
