#!/usr/bin/env bash
# Training on a Slurm cluster through srun, one task per device (tools/train.py --launcher slurm):
#   [GPUS=16 GPUS_PER_NODE=8] bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [tools/train.py args...]
# GPUS, GPUS_PER_NODE, CPUS_PER_TASK, GRES, SRUN_ARGS: see tools/dist_launch.sh. MASTER_PORT (default 29500)
# must be free on the job's first node, where rank 0 runs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
USAGE="usage: [GPUS=N GPUS_PER_NODE=M] bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [tools/train.py args...]"
source "$ROOT/tools/dist_launch.sh"
case "${1:-}" in -h|--help) echo "$USAGE"; exit 0 ;; esac
[ $# -ge 3 ] || dist_fail "tools/slurm_train.sh needs PARTITION, JOB_NAME and CONFIG"
dist_srun_args "$1" "$2"
source "$ROOT/tools/python_env.sh"   # sets PYTHON, stops if the dependencies are missing
PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec srun "${SRUN_OPTIONS[@]}" \
    "$PYTHON" -u "$ROOT/tools/train.py" "$3" --launcher slurm "${@:4}"
