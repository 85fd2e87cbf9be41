# Sourced (bash) by tools/dist_*.sh and tools/slurm_*.sh: checks the launch variables and builds the launcher's
# arguments: TORCHRUN_ARGS (dist_torchrun_args) or SRUN_OPTIONS (dist_srun_args). The caller sets USAGE (one
# line) first, and DEFAULT_PORT for torchrun.
#
# torchrun (tools/dist_*.sh):
#   NNODES         machines in the job (default 1)
#   NODE_RANK      this machine's index, 0 .. NNODES-1 (default 0)
#   MASTER_ADDR    node 0's address, reachable from every node (default 127.0.0.1; needed when NNODES > 1)
#   MASTER_PORT    a free port on node 0, the same on every node (default $PORT, else DEFAULT_PORT)
#   RDZV_ENDPOINT  host:port of torchrun's c10d rendezvous, instead of MASTER_ADDR / MASTER_PORT / NODE_RANK
#                  (torchrun then numbers the nodes itself); RDZV_ID names the job (default sparsedrive)

dist_fail() {  # dist_fail MESSAGE: the usage line, then one error line; exit code 2
    echo "$USAGE" >&2
    echo "error: $1" >&2
    exit 2
}

dist_check_uint() {  # dist_check_uint NAME VALUE MIN: VALUE must be an integer >= MIN
    case "$2" in
        ''|*[!0-9]*) dist_fail "$1='$2' is not a number" ;;
    esac
    [ "$2" -ge "$3" ] || dist_fail "$1=$2 must be at least $3"
}

dist_torchrun_args() {  # dist_torchrun_args PROCS_PER_NODE
    dist_check_uint PROCS_PER_NODE "$1" 1
    NNODES="${NNODES:-1}"
    dist_check_uint NNODES "$NNODES" 1
    if [ -n "${RDZV_ENDPOINT:-}" ]; then
        TORCHRUN_ARGS=(--nnodes="$NNODES" --nproc_per_node="$1" --rdzv_backend=c10d
                       --rdzv_endpoint="$RDZV_ENDPOINT" --rdzv_id="${RDZV_ID:-sparsedrive}")
        return
    fi
    NODE_RANK="${NODE_RANK:-0}"
    dist_check_uint NODE_RANK "$NODE_RANK" 0
    [ "$NODE_RANK" -lt "$NNODES" ] || dist_fail "NODE_RANK=$NODE_RANK must be below NNODES=$NNODES"
    if [ "$NNODES" -gt 1 ] && [ -z "${MASTER_ADDR:-}" ]; then
        dist_fail "NNODES=$NNODES needs MASTER_ADDR (node 0's address, the same on every node) or RDZV_ENDPOINT"
    fi
    MASTER_PORT="${MASTER_PORT:-${PORT:-$DEFAULT_PORT}}"
    dist_check_uint MASTER_PORT "$MASTER_PORT" 1
    [ "$MASTER_PORT" -le 65535 ] || dist_fail "MASTER_PORT=$MASTER_PORT is not a port (1-65535)"
    TORCHRUN_ARGS=(--nnodes="$NNODES" --node_rank="$NODE_RANK" --nproc_per_node="$1"
                   --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="$MASTER_PORT")
}

# srun (tools/slurm_*.sh), one task per device:
#   GPUS           tasks (devices) in all (default 8); GPUS_PER_NODE: tasks per node (default min(GPUS, 8))
#   CPUS_PER_TASK  CPU cores per task (default 5); GRES: e.g. gpu:8 or npu:8 (default none: the partition's own)
#   SRUN_ARGS      more srun options, split at spaces, e.g. "--time=48:00:00 --exclusive"
dist_srun_args() {  # dist_srun_args PARTITION JOB_NAME
    GPUS="${GPUS:-8}"
    dist_check_uint GPUS "$GPUS" 1
    GPUS_PER_NODE="${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}"
    dist_check_uint GPUS_PER_NODE "$GPUS_PER_NODE" 1
    CPUS_PER_TASK="${CPUS_PER_TASK:-5}"
    dist_check_uint CPUS_PER_TASK "$CPUS_PER_TASK" 1
    local extra=()
    read -r -a extra <<< "${SRUN_ARGS:-}"
    SRUN_OPTIONS=(--partition="$1" --job-name="$2" --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE"
                  --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 ${GRES:+--gres="$GRES"} ${extra[@]+"${extra[@]}"})
}
