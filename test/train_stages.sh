#!/usr/bin/env bash
# Stage 1 then stage 2, then the report; sourced by train_8p_full.sh (MODE=full) and
# train_8p_performance.sh (MODE=performance). Never edits configs: batch and card count reach the configs
# through SPARSEDRIVE_BATCH_SIZE / SPARSEDRIVE_NUM_GPUS.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."   # works from the repo root, from test/, or from anywhere
ROOT="$PWD"
source tools/python_env.sh   # sets and exports PYTHON, stops if the dependencies are missing
export PYTHONPATH="$ROOT:${PYTHONPATH:-}"

batch_node_size_stage1=64
batch_node_size_stage2=48
num_npu=8
source test/parse_args.sh
parse_args "$@"
# Several machines: run this on each with NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT (see tools/dist_launch.sh)
# and the same SPARSEDRIVE_RUN_DIR on storage every node shares; the batches are global over NNODES x num_npu.
NNODES="${NNODES:-1}"
case "$NNODES" in ''|*[!0-9]*|0*) echo "error: NNODES='$NNODES' must be a positive integer" >&2; exit 2 ;; esac
WORLD_SIZE=$(( num_npu * NNODES ))
if [ "$NNODES" -gt 1 ]; then
    for name in batch_node_size_stage1 batch_node_size_stage2; do
        if [ $(( ${!name} % WORLD_SIZE )) -ne 0 ]; then
            echo "error: $name=${!name} does not divide evenly over NNODES=$NNODES x num_npu=$num_npu = $WORLD_SIZE processes" >&2
            exit 2
        fi
    done
    if [ -z "${SPARSEDRIVE_RUN_DIR:-}" ]; then
        echo "error: NNODES=$NNODES: set SPARSEDRIVE_RUN_DIR to the same folder on every node, on shared storage (stage 2 reads stage 1's checkpoint there)" >&2
        exit 2
    fi
fi

if [ "${SPARSEDRIVE_DEMO:-0}" = "1" ]; then
    CONFIG1=projects/configs/demo/sparsedrive_demo_stage1.py
    CONFIG2=projects/configs/demo/sparsedrive_demo_stage2.py
else
    CONFIG1=projects/configs/sparsedrive_small_stage1.py
    CONFIG2=projects/configs/sparsedrive_small_stage2.py
fi

# one line and exit 2 on a bad SPARSEDRIVE_DEVICE / SPARSEDRIVE_OPS_BACKEND_* (set -e stops here)
BACKEND="$("$PYTHON" -c 'from tools.cli_utils import check_backend as c, quiet_startup_noise as q; q(); print(c())')"
if [ "$BACKEND" = "npu" ]; then
    source test/env_npu.sh
elif [ "$BACKEND" = "cpu" ]; then
    # Share the cores between the processes instead of oversubscribing them.
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( ( $(nproc) + num_npu - 1 ) / num_npu ))}"
fi
if [ "$MODE" = "performance" ]; then
    export SPARSEDRIVE_STOP_AT_ITER="${SPARSEDRIVE_STOP_AT_ITER:-1000}"
fi

RUN_DIR="${SPARSEDRIVE_RUN_DIR:-test/output/$(date +%Y%m%d_%H%M%S)_${MODE}}"
mkdir -p "$RUN_DIR"
LOG1="$RUN_DIR/stage1_train_8p_${MODE}.log"
LOG2="$RUN_DIR/stage2_train_8p_${MODE}.log"
WORK1="$RUN_DIR/stage1"
WORK2="$RUN_DIR/stage2"
echo "[INFO] backend $BACKEND, configs $CONFIG1 / $CONFIG2, output $RUN_DIR"
START_TIME=$(date +%s)
echo "[INFO] start: $(date '+%Y-%m-%d %H:%M:%S')"

run_stage() {  # run_stage <config> <global batch> <work dir> <console log> [train.py args...]
    local config=$1 batch=$2 work=$3 log=$4
    shift 4
    local port
    port=$(( 10000 + RANDOM % 49152 ))
    if [ "$NNODES" -gt 1 ]; then
        port="${MASTER_PORT:-28651}"   # every node must use the same port
    fi
    echo "[INFO] training $config: global batch $batch on $num_npu card(s) x $NNODES node(s), log $log"
    set +e
    SPARSEDRIVE_BATCH_SIZE=$batch SPARSEDRIVE_NUM_GPUS=$WORLD_SIZE PORT=$port \
        bash tools/dist_train.sh "$config" "$num_npu" --work-dir "$work" --deterministic "$@" 2>&1 \
        | tee "$log" | grep --line-buffered -E "Iter \[|Iter\(val\)|Error|error:|schedule:" \
        | sed -u -E 's/^(.{240}).+/\1 .../'   # the full lines (all metrics) are in $log
    local status=${PIPESTATUS[0]}
    set -e
    if [ "$status" -ne 0 ] || ! ls "$work"/iter_*.pth >/dev/null 2>&1; then
        echo "[ERROR] $config failed (exit $status); see $log" >&2
        exit 1
    fi
}

run_stage "$CONFIG1" "$batch_node_size_stage1" "$WORK1" "$LOG1"
STAGE1_CKPT="$("$PYTHON" -c 'import sys; from projects.mmdet3d_plugin.apis.checkpoint import final_checkpoint as f; print(f(sys.argv[1]))' "$WORK1")"
if [ "$MODE" = "performance" ] && [ -f ckpt/sparsedrive_stage1.pth ]; then
    STAGE1_CKPT=ckpt/sparsedrive_stage1.pth
fi
echo "[INFO] stage 2 starts from $STAGE1_CKPT"
run_stage "$CONFIG2" "$batch_node_size_stage2" "$WORK2" "$LOG2" --load-from "$STAGE1_CKPT"
END_TIME=$(date +%s)
echo "[INFO] end: $(date '+%Y-%m-%d %H:%M:%S')"

"$PYTHON" tools/analysis_tools/train_report.py --mode "$MODE" --seconds $(( END_TIME - START_TIME )) \
    --stage1-work-dir "$WORK1" --stage2-work-dir "$WORK2" \
    --batch-stage1 "$batch_node_size_stage1" --batch-stage2 "$batch_node_size_stage2" | tee "$RUN_DIR/report.txt"
