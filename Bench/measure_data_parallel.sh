#!/usr/bin/env bash
# 1 process x 2 threads vs 2 processes x 1 thread, alternating, tessera bench (release build).
# usage: bash Bench/measure_data_parallel.sh METHOD ROUNDS STEPS [pretrain options...]  (TESSERA=path to another build)
# Figures: docs/distributed.md.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
m=$1; r=$2; s=$3; shift 3
for i in 1 2; do
  echo "== A: 1 process x 2 threads ($m, pair $i)"
  ${TESSERA:-.build/release/tessera} bench --rounds $r --steps $s --threads 2 -- --method $m "$@" 2>&1 | grep -E "^median|^tessera bench|data parallel|RSS"
  echo "== B: 2 processes x 1 thread ($m, pair $i)"
  timeout 900 mpirun -np 2 --bind-to none ${TESSERA:-.build/release/tessera} bench --rounds $r --steps $s --threads 1 -- --method $m "$@" </dev/null 2>&1 | grep -E "^median|^tessera bench|data parallel|RSS"
done
