#!/usr/bin/env bash
# Loader throughput per worker, Tessera vs torchvision (ImageFolder + RandomResizedCrop with PIL), on a
# generated folder of ~400x350 JPEGs unless a folder is given:
#   bash Bench/loader/compare_torchvision.sh [ROOT] [compare_torchvision.py options]
# Uses Bench/.venv (created with torch, torchvision, pillow and numpy from PyPI on first use). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/deps.sh
TESSERA_APT_PACKAGES="$TESSERA_APT_PACKAGES python3-venv"
install_deps
swift build -c release --product tessera
[ -x Bench/.venv/bin/python ] || python3 -m venv Bench/.venv
Bench/.venv/bin/python -c "import torch, torchvision, PIL, numpy" 2>/dev/null || Bench/.venv/bin/pip install --quiet torch torchvision pillow numpy
root=${1:-}
if [ -z "$root" ] || [[ "$root" == --* ]]; then
    root=${TMPDIR:-/tmp}/tessera-jpeg-2000
    [ -d "$root" ] || Bench/.venv/bin/python Bench/loader/make_jpeg_folder.py "$root" 2000
else
    shift
fi
exec Bench/.venv/bin/python Bench/loader/compare_torchvision.py "$root" "$@"
