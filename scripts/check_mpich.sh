#!/usr/bin/env bash
# Builds Tessera against MPICH instead of Open MPI (TESSERA_MPI=mpich, Debian's libmpich-dev; the two
# can be installed side by side), runs the collective checks under MPICH's mpiexec, and checks that
# a 2-process run writes the same bits as the same run under Open MPI (the fixed-order reduction does
# not depend on the MPI library). By hand, not in CI: a second full build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_deps
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
dpkg-query -W -f='${Status}' libmpich-dev 2>/dev/null | grep -q "install ok installed" \
    || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libmpich-dev mpich >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
TESSERA_MPI=mpich swift build --scratch-path .build-mpich --product TesseraMPICheck
TESSERA_MPI=mpich swift build --scratch-path .build-mpich --product tessera
swift build --product tessera
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
echo "== collectives under MPICH (2 and 3 processes)"
timeout 120 mpiexec.mpich -n 2 .build-mpich/debug/TesseraMPICheck </dev/null
timeout 120 mpiexec.mpich -n 3 .build-mpich/debug/TesseraMPICheck </dev/null
run=(pretrain --depth 2 --dim 64 --heads 4 --decoder-dim 32 --decoder-depth 1 --decoder-heads 4 --limit 64 --batch-size 8 --epochs 1 --seed 3 --threads 1)
echo "== the same 2-process MAE run under MPICH and Open MPI"
timeout 300 mpiexec.mpich -n 2 .build-mpich/debug/tessera "${run[@]}" --run "$work/mpich" </dev/null >/dev/null
timeout 300 mpirun.openmpi -np 2 --oversubscribe --bind-to none .build/debug/tessera "${run[@]}" --run "$work/openmpi" </dev/null >/dev/null
for f in last.safetensors last.train-state.safetensors; do
    cmp "$work/mpich/$f" "$work/openmpi/$f"
done
echo "mpich: builds, collectives pass, checkpoints byte-identical to Open MPI's"
