#!/usr/bin/env bash
# `make demo`: the whole pipeline on the embedded synthetic nuScenes, on whatever device is available.
#   1. generate data/synthetic_nuscenes (nuScenes v1.0-mini format)       skipped when present
#   2. sh test/preprocess.sh on it -> data/infos/mini/*.pkl, data/kmeans/  skipped when present
#   3. SPARSEDRIVE_DEMO=1 bash test/train_8p_full.sh: stage 1, then stage 2, with the demo configs
#   4. tools/test.py --eval on the stage-2 checkpoint: metric tables for detection, tracking, map, motion,
#      planning, and --show-dir: a rendered image per validation frame and a video per scene
# Everything goes to the run's folder test/output/<time>_full/ (demo.log there holds this script's output).
# Only the final checkpoint of each stage is kept; DEMO_KEEP_ALL=1 keeps every one.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
source tools/python_env.sh   # sets and exports PYTHON, stops if the dependencies are missing
DATA_ROOT=data/synthetic_nuscenes
CARDS="${DEMO_CARDS:-1}"
mkdir -p test/output
OUTPUT_KB_BEFORE=$(du -sk test/output | cut -f1)
# the run folder is named by test/train_stages.sh; log here until it exists, then move the log into it
LOG="test/output/.demo_$$.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
trap 'status=$?; [ "$status" = 0 ] || echo "[demo] failed (exit $status); log: $LOG" >&2' EXIT

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
RUNS_BEFORE="$(ls -d test/output/*_full 2>/dev/null || true)"
SPARSEDRIVE_DEMO=1 bash test/train_8p_full.sh 1 1 "$CARDS"
RUN_DIR="$(ls -d test/output/*_full | tail -n 1)"
if printf '%s\n' "$RUNS_BEFORE" | grep -qxF "$RUN_DIR"; then
    echo "error: test/train_8p_full.sh made no new run folder under test/output/; see the output above" >&2
    exit 1
fi
mv "$LOG" "$RUN_DIR/demo.log"
LOG="$RUN_DIR/demo.log"

STAGE2_CKPT="$("$PYTHON" -c "from projects.mmdet3d_plugin.apis.checkpoint import final_checkpoint as f; print(f('$RUN_DIR/stage2'))")"
if [ "${DEMO_KEEP_ALL:-0}" != 1 ]; then
    "$PYTHON" - "$RUN_DIR/stage1" "$RUN_DIR/stage2" <<'PY'
import os, sys
from projects.mmdet3d_plugin.apis.checkpoint import final_checkpoint
for work_dir in sys.argv[1:]:
    final = os.path.realpath(final_checkpoint(work_dir))
    for name in os.listdir(work_dir):
        path = os.path.join(work_dir, name)
        if name.endswith(".pth") and not os.path.islink(path) and os.path.realpath(path) != final:
            os.remove(path)
PY
fi

echo "[demo] 4/4 evaluating the stage-2 checkpoint and rendering the validation scenes"
PYTHONPATH="$PWD:${PYTHONPATH:-}" "$PYTHON" tools/test.py projects/configs/demo/sparsedrive_demo_stage2.py \
    "$STAGE2_CKPT" --eval bbox --work-dir "$RUN_DIR/test" --show-dir "$RUN_DIR/vis"
FRAME="$(find "$RUN_DIR/vis/frames" -name '*.png' | sort | tail -n 1)"
VIDEO="$(find "$RUN_DIR/vis" -maxdepth 1 \( -name '*.mp4' -o -name '*.gif' \) | sort | head -n 1)"
ADDED_KB=$(( $(du -sk test/output | cut -f1) - OUTPUT_KB_BEFORE ))
echo "[demo] done: logs, checkpoints, metrics and renders under $RUN_DIR (log: $LOG)"
echo "[demo] scene video: $VIDEO"
echo "[demo] frame image: $FRAME"
echo "[demo] added $(( ADDED_KB / 1024 )) MB under test/output/ (final checkpoints only; DEMO_KEEP_ALL=1 keeps all)"
