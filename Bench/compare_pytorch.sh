#!/usr/bin/env bash
# Tessera vs PyTorch (eager, torch.compile, torch.compile(mode="max-autotune")) on the same training
# steps, A/B alternating.
#   bash Bench/compare_pytorch.sh [--configs mae-tiny,mae-small,mae-base,msn-tiny,sim-tiny] [--threads N] [--rounds R] [--steps S]
#                                 [--no-compile] [--no-max-autotune] [--autotune-timeout SECONDS]
# A max-autotune process that does not finish within --autotune-timeout (default 1800 s) is reported
# as such and left out of that round's ratio.
# Tessera runs twice per round: with its own GEMM (TESSERA_GEMM=tessera) and with the linked OpenBLAS
# (TESSERA_GEMM=openblas; --no-openblas skips it). TESSERA_COMPARE_ONEDNN=1 adds Tessera with oneDNN's
# GEMM (TESSERA_GEMM=onednn; installs libdnnl2).
# Builds Tessera in release mode; uses $TESSERA_TORCH_PYTHON if set, else Bench/.venv (created on first
# use with `pip install torch numpy` from PyPI, a large download). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
PY=${TESSERA_TORCH_PYTHON:-}
# python3-venv and g++ (torch.compile's C++ backend) only when PyTorch comes from here
[ -z "$PY" ] && TESSERA_APT_PACKAGES="$TESSERA_APT_PACKAGES python3-venv g++"
[ "${TESSERA_COMPARE_ONEDNN:-0}" = 1 ] && TESSERA_APT_PACKAGES="$TESSERA_APT_PACKAGES libdnnl2"
install_deps
swift build -c release --product tessera
extra=()
[ "${TESSERA_COMPARE_ONEDNN:-0}" = 1 ] && extra=(--onednn)
if [ -z "$PY" ]; then
    if [ ! -x Bench/.venv/bin/python ]; then
        python3 -m venv Bench/.venv
        Bench/.venv/bin/pip install --quiet torch numpy
    fi
    PY=Bench/.venv/bin/python
fi
"$PY" -c "import torch" 2>/dev/null || { echo "compare_pytorch: $PY cannot import torch; set TESSERA_TORCH_PYTHON to a Python with torch, or delete Bench/.venv to reinstall" >&2; exit 1; }
exec "$PY" Bench/compare_pytorch.py --python "$PY" "${extra[@]}" "$@"
