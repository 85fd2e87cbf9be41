#!/usr/bin/env bash
# Distributed testing through torchrun (any backend), on one machine or several:
#   bash tools/dist_test.sh CONFIG CHECKPOINT PROCS_PER_NODE [tools/test.py args...]
# Several machines: the node variables of tools/dist_train.sh (see tools/dist_launch.sh); the results are
# gathered on rank 0 through the process group, in dataset order. One machine: PORT (default 29610).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
USAGE="usage: [NNODES=N NODE_RANK=R MASTER_ADDR=HOST MASTER_PORT=PORT] bash tools/dist_test.sh CONFIG CHECKPOINT PROCS_PER_NODE [tools/test.py args...]"
DEFAULT_PORT=29610
source "$ROOT/tools/dist_launch.sh"
case "${1:-}" in -h|--help) echo "$USAGE"; exit 0 ;; esac
[ $# -ge 3 ] || dist_fail "tools/dist_test.sh needs CONFIG, CHECKPOINT and PROCS_PER_NODE (processes on this machine)"
CONFIG=$1
CHECKPOINT=$2
dist_torchrun_args "$3"
source "$ROOT/tools/python_env.sh"   # sets PYTHON, stops if the dependencies are missing
PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run "${TORCHRUN_ARGS[@]}" \
    "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
