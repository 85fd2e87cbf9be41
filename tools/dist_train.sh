#!/usr/bin/env bash
# Distributed training through torchrun (any backend), on one machine or several:
#   bash tools/dist_train.sh CONFIG PROCS_PER_NODE [tools/train.py args...]
# Several machines: run the same command on each with NNODES, NODE_RANK (0 on the machine at MASTER_ADDR),
# MASTER_ADDR and MASTER_PORT (or RDZV_ENDPOINT for torchrun's c10d rendezvous); see tools/dist_launch.sh.
# One machine: PORT (default 28651) picks the port, as before.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
USAGE="usage: [NNODES=N NODE_RANK=R MASTER_ADDR=HOST MASTER_PORT=PORT] bash tools/dist_train.sh CONFIG PROCS_PER_NODE [tools/train.py args...]"
DEFAULT_PORT=28651
source "$ROOT/tools/dist_launch.sh"
case "${1:-}" in -h|--help) echo "$USAGE"; exit 0 ;; esac
[ $# -ge 2 ] || dist_fail "tools/dist_train.sh needs CONFIG and PROCS_PER_NODE (processes on this machine)"
CONFIG=$1
dist_torchrun_args "$2"
source "$ROOT/tools/python_env.sh"   # sets PYTHON, stops if the dependencies are missing
PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run "${TORCHRUN_ARGS[@]}" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
