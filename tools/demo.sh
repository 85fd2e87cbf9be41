#!/usr/bin/env bash
# `make demo`: the whole pipeline on the embedded synthetic nuScenes, on whatever device is available.
#   1. generate data/synthetic_nuscenes (nuScenes v1.0-mini format)       skipped when present
#   2. sh test/preprocess.sh on it -> data/infos/mini/*.pkl, data/kmeans/  skipped when present
#   3. SPARSEDRIVE_DEMO=1 bash test/train_8p_full.sh: stage 1, then stage 2, with the demo configs
#   4. tools/test.py --eval on the stage-2 checkpoint: detection, tracking, map, motion, planning metrics
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHON="${PYTHON:-python3}"
DATA_ROOT=data/synthetic_nuscenes
CARDS="${DEMO_CARDS:-1}"

echo "[demo] 1/4 synthetic dataset ($DATA_ROOT)"
if [ ! -f "$DATA_ROOT/v1.0-mini/sample.json" ]; then
    "$PYTHON" tools/data_converter/synthetic_nuscenes.py --out "$DATA_ROOT"
else
    echo "[demo]     present, kept"
fi

echo "[demo] 2/4 preprocessing (info pkls + k-means anchors)"
if [ ! -f data/infos/mini/nuscenes_infos_train.pkl ] || [ ! -f data/kmeans/kmeans_plan_6.npy ]; then
    DATA_ROOT="$DATA_ROOT" VERSION=v1.0-mini sh test/preprocess.sh
else
    echo "[demo]     present, kept"
fi

echo "[demo] 3/4 training stage 1 and stage 2 (demo configs, $CARDS process(es))"
SPARSEDRIVE_DEMO=1 bash test/train_8p_full.sh 1 1 "$CARDS" | tee /tmp/sparsedrive_demo_train.log
RUN_DIR="$(ls -d test/output/*_full | tail -n 1)"

echo "[demo] 4/4 evaluating the stage-2 checkpoint"
STAGE2_CKPT="$("$PYTHON" -c "from projects.mmdet3d_plugin.apis.checkpoint import final_checkpoint as f; print(f('$RUN_DIR/stage2'))")"
PYTHONPATH="$PWD:${PYTHONPATH:-}" "$PYTHON" tools/test.py projects/configs/demo/sparsedrive_demo_stage2.py \
    "$STAGE2_CKPT" --eval bbox
echo "[demo] done: logs, checkpoints and metrics under $RUN_DIR"
