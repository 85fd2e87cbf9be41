#!/usr/bin/env bash
# Testing on a Slurm cluster through srun, one task per device (tools/test.py --launcher slurm); the results
# are gathered on rank 0 through the process group, in dataset order:
#   [GPUS=16 GPUS_PER_NODE=8] bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py args...]
# GPUS, GPUS_PER_NODE, CPUS_PER_TASK, GRES, SRUN_ARGS: see tools/dist_launch.sh; MASTER_PORT: tools/slurm_train.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
USAGE="usage: [GPUS=N GPUS_PER_NODE=M] bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py args...]"
source "$ROOT/tools/dist_launch.sh"
case "${1:-}" in -h|--help) echo "$USAGE"; exit 0 ;; esac
[ $# -ge 4 ] || dist_fail "tools/slurm_test.sh needs PARTITION, JOB_NAME, CONFIG and CHECKPOINT"
dist_srun_args "$1" "$2"
source "$ROOT/tools/python_env.sh"   # sets PYTHON, stops if the dependencies are missing
PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec srun "${SRUN_OPTIONS[@]}" \
    "$PYTHON" -u "$ROOT/tools/test.py" "$3" "$4" --launcher slurm "${@:5}"
