#!/bin/sh
# Data preparation as DrivingSDK's users run it: nuScenes info pkls, then the four k-means anchor files.
#
#   sh test/preprocess.sh                    # ./data/nuscenes, v1.0-trainval (+ v1.0-test when present)
#   DATA_ROOT=data/synthetic_nuscenes VERSION=v1.0-mini sh test/preprocess.sh
#
# Environment:
#   DATA_ROOT    nuScenes dataroot, also the CAN-bus root (default ./data/nuscenes)
#   VERSION      v1.0-trainval (default) or v1.0-mini
#   PYTHON       interpreter (default: the repository's .venv when present, else python3)
#   KMEANS_SEED  random_state of the k-means scripts (default 0)
# Writes data/infos/ (mini: data/infos/mini/), data/kmeans/ and vis/kmeans/; stops at the first failing step.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# keep the CPU-heavy converter and k-means from oversubscribing cores
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-2}"
export GOTO_NUM_THREADS="${GOTO_NUM_THREADS:-2}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

. "$ROOT/tools/python_env.sh"   # sets PYTHON, stops if the dependencies are missing
DATA_ROOT="${DATA_ROOT:-./data/nuscenes}"
VERSION="${VERSION:-v1.0-trainval}"
KMEANS_SEED="${KMEANS_SEED:-0}"

case "$VERSION" in
    v1.0-trainval | v1.0) CONVERT_VERSION=v1.0; INFO=data/infos/nuscenes_infos_train.pkl ;;
    v1.0-mini) CONVERT_VERSION=v1.0-mini; INFO=data/infos/mini/nuscenes_infos_train.pkl ;;
    *) echo "preprocess.sh: VERSION=$VERSION is not supported; use v1.0-trainval or v1.0-mini" >&2; exit 2 ;;
esac

if [ ! -d "$DATA_ROOT" ]; then
    echo "preprocess.sh: DATA_ROOT=$DATA_ROOT does not exist; link nuScenes there" \
        "(mkdir -p data && ln -s /path/to/nuscenes data/nuscenes) or generate the synthetic set" \
        "(python3 tools/data_converter/synthetic_nuscenes.py, then" \
        "DATA_ROOT=data/synthetic_nuscenes VERSION=v1.0-mini sh test/preprocess.sh)" >&2
    exit 1
fi

step() {
    echo "[preprocess] $*"
}

START=$(date +%s)
step "info pkls: $DATA_ROOT ($VERSION) -> data/infos/"
"$PYTHON" tools/data_converter/nuscenes_converter.py nuscenes \
    --root-path "$DATA_ROOT" --canbus "$DATA_ROOT" --out-dir ./data/infos/ \
    --extra-tag nuscenes --version "$CONVERT_VERSION"

for kind in det map motion plan; do
    step "k-means $kind anchors from $INFO -> data/kmeans/"
    "$PYTHON" "tools/kmeans/kmeans_$kind.py" --info-path "$INFO" --out-dir data/kmeans \
        --vis-dir vis/kmeans --seed "$KMEANS_SEED"
done
step "done in $(( $(date +%s) - START )) s"
