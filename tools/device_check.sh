#!/usr/bin/env bash
# One command that proves an accelerator: bash tools/device_check.sh [OUT_DIR] (default test/output/<time>_device_check)
#
# From a fresh clone, in this order (each step's log under OUT_DIR/logs/, one summary in OUT_DIR/summary.txt):
#   setup     GPU / NPU machine with its own torch: SPARSEDRIVE_SYSTEM_PYTHON=1 tools/setup_env.sh, which installs
#             mmcv-full 1.7.2 (built with CPU ops only, CUDA hidden, so the build takes minutes, not half an hour;
#             the model needs no mmcv CUDA op) and requirements.txt into the current interpreter; torch, triton,
#             torch_npu and mx_driving are never installed or replaced. CPU machine: `make setup` (.venv).
#   tests     the accelerator tests on the device, without fakes: compiled Triton kernels forward + backward
#             against the reference (cuda), mx_driving / npu_fusion_attention / NpuFusedAdamW (npu), a reduced
#             training step on the device against the CPU
#   da_bench  tools/benchmarks/benchmark_deformable_aggregation.py: the device's kernel vs the reference and
#             upstream's grid_sample formulation, full SparseDrive-S shapes
#   data      data/synthetic_nuscenes + info pkls + k-means anchors (skipped when present)
#   train_s1  20 steps of stage 1 at full size (6 x 256 x 704) through tools/train.py, the config's fp16
#   train_s2  20 steps of stage 2 from that checkpoint
#   bench_fp32 / bench_fp16
#             tools/benchmark.py on the synthetic val split at full size with the stage-2 checkpoint
# Exit status: 0 when no check failed. A check that cannot apply (the accelerator tests on a CPU) is SKIP.
#
# Knobs (environment): DEVICE_CHECK_TRAIN_STEPS (20), DEVICE_CHECK_FRAMES (32, warm-up included),
# DEVICE_CHECK_WARMUP (5), DEVICE_CHECK_BATCH (samples per step: 8 on an accelerator, 1 on CPU),
# DEVICE_CHECK_REPEATS (aggregation benchmark repeats, 5), DEVICE_CHECK_DA_CONFIGS ("det map"; the map
# reference needs about 7 GiB of host memory), DEVICE_CHECK_SKIP_SETUP=1, PYTHON (interpreter).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${1:-test/output/$(date +%Y%m%d_%H%M%S)_device_check}"
mkdir -p "$OUT/logs" "$OUT/configs"
OUT="$(cd "$OUT" && pwd)"
SUMMARY="$OUT/summary.txt"
STEPS="${DEVICE_CHECK_TRAIN_STEPS:-20}"
FRAMES="${DEVICE_CHECK_FRAMES:-32}"
WARMUP="${DEVICE_CHECK_WARMUP:-5}"
REPEATS="${DEVICE_CHECK_REPEATS:-5}"
DA_CONFIGS="${DEVICE_CHECK_DA_CONFIGS:-det map}"
FAILED=0
: >"$SUMMARY"

say() { echo "$*" | tee -a "$SUMMARY"; }
# check NAME COMMAND...: run with its log in logs/NAME.log; PASS / FAIL and the time go to the summary.
check() {
    local name="$1"; shift
    local start=$SECONDS
    echo "[device_check] $name: $*"
    if "$@" >"$OUT/logs/$name.log" 2>&1; then
        say "PASS $name ($((SECONDS - start)) s)"
        return 0
    fi
    say "FAIL $name ($((SECONDS - start)) s): see logs/$name.log"
    tail -n 5 "$OUT/logs/$name.log" | sed 's/^/    /' | tee -a "$SUMMARY"
    FAILED=1
    return 1
}

# --- set-up -----------------------------------------------------------------------------------------------
has_accelerator_torch() {
    python3 -c "import torch, sys
try:
    import torch_npu  # noqa: F401
    sys.exit(0 if torch.npu.is_available() else 1)
except ImportError:
    sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1
}
if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
elif has_accelerator_torch; then
    PY="$(command -v python3)"
    SYSTEM_PYTHON=1
else
    PY="$ROOT/.venv/bin/python"
fi
if [ "${DEVICE_CHECK_SKIP_SETUP:-0}" = "1" ]; then
    say "SKIP setup (DEVICE_CHECK_SKIP_SETUP=1)"
elif [ "${SYSTEM_PYTHON:-0}" = "1" ]; then
    check setup env SPARSEDRIVE_SYSTEM_PYTHON=1 CUDA_VISIBLE_DEVICES= MAX_JOBS="$(nproc)" bash tools/setup_env.sh
else
    check setup make setup
fi
export PYTHONPATH="$ROOT:${PYTHONPATH:-}"
. tools/host_malloc.sh

"$PY" - >>"$SUMMARY" 2>"$OUT/logs/environment.log" <<'EOF'
import platform
import torch
from projects.mmdet3d_plugin import device

backend = device.get_backend()
name = platform.processor() or platform.machine()
if backend == "cuda":
    name = torch.cuda.get_device_name(0)
elif backend == "npu":
    name = torch.npu.get_device_name(0)
versions = [f"torch {torch.__version__}"]
for module in ("triton", "torch_npu", "mx_driving", "mmcv", "mmdet"):
    try:
        versions.append(f"{module} {__import__(module).__version__}")
    except (ImportError, AttributeError):
        pass
print(f"backend: {backend}; device: {name}; {torch.get_num_threads()} threads")
print("versions: " + ", ".join(versions))
EOF
say "host malloc: $(env | grep '^MALLOC_' | sort | tr '\n' ' ' | grep . || echo 'glibc defaults')"
BACKEND="$("$PY" -c "from projects.mmdet3d_plugin import device; print(device.get_backend())" 2>/dev/null || echo unknown)"
if [ "$BACKEND" = "unknown" ]; then
    say "FAIL backend: the device layer did not start (see logs/environment.log)"
    exit 1
fi
if [ "$BACKEND" = "cpu" ]; then BATCH="${DEVICE_CHECK_BATCH:-1}"; else BATCH="${DEVICE_CHECK_BATCH:-8}"; fi

# --- the accelerator tests --------------------------------------------------------------------------------
if [ "$BACKEND" = "cpu" ]; then
    say "SKIP tests (cpu backend: the accelerator tests need a GPU or NPU)"
else
    TESTS=(tests/ops/test_accelerator_backends.py)
    [ "$BACKEND" = "cuda" ] && TESTS+=(tests/ops/test_deformable_aggregation_triton.py)
    device_tests() {  # a skipped test means a check did not run on the device: that fails too
        "$PY" -m pytest "$@" -q -rs -p no:cacheprovider >"$OUT/logs/tests.pytest" 2>&1
        local rc=$?
        cat "$OUT/logs/tests.pytest"
        [ "$rc" = 0 ] && ! grep -q SKIPPED "$OUT/logs/tests.pytest"
    }
    check tests device_tests "${TESTS[@]}"
    grep -E '(passed|failed|skipped).* in ' "$OUT/logs/tests.pytest" | tail -n 1 | sed 's/^/    /' >>"$SUMMARY"
fi

# --- deformable aggregation benchmark ---------------------------------------------------------------------
# shellcheck disable=SC2086  # DA_CONFIGS is a list of names
if check da_bench "$PY" tools/benchmarks/benchmark_deformable_aggregation.py --repeats "$REPEATS" \
    --warmup "$([ "$REPEATS" -gt 1 ] && echo 2 || echo 0)" --configs $DA_CONFIGS; then
    grep -E '^(device|config|det |map )' "$OUT/logs/da_bench.log" | sed 's/^/    /' >>"$SUMMARY"
fi

# --- synthetic data at full size --------------------------------------------------------------------------
make_data() {
    if [ ! -f data/synthetic_nuscenes/v1.0-mini/sample.json ]; then
        "$PY" tools/data_converter/synthetic_nuscenes.py --out data/synthetic_nuscenes || return 1
    fi
    if [ ! -f data/infos/mini/nuscenes_infos_val.pkl ] || [ ! -f data/kmeans/kmeans_plan_6.npy ]; then
        DATA_ROOT=data/synthetic_nuscenes VERSION=v1.0-mini PYTHON="$PY" sh test/preprocess.sh || return 1
    fi
}
check data make_data

# The real configs, pointed at the synthetic set; no ImageNet weights; text logs every few steps.
write_config() {  # write_config STAGE
    cat >"$OUT/configs/synthetic_full_stage$1.py" <<EOF
# generated by tools/device_check.sh: the real stage-$1 config (full size) on data/synthetic_nuscenes
_base_ = ["$ROOT/projects/configs/sparsedrive_small_stage$1.py"]
data_root = "$ROOT/data/synthetic_nuscenes/"
anno_root = "$ROOT/data/infos/mini/"
log_config = dict(interval=$(( STEPS < 5 ? 1 : 5 )), hooks=[dict(type="TextLoggerHook", by_epoch=False)])
model = dict(img_backbone=dict(pretrained=None))
_split = dict(data_root=data_root, version="v1.0-mini")
_eval_config = dict(_split, ann_file=anno_root + "nuscenes_infos_val.pkl")
data = dict(
    train=dict(_split, ann_file=anno_root + "nuscenes_infos_train.pkl"),
    val=dict(_split, ann_file=anno_root + "nuscenes_infos_val.pkl", eval_config=_eval_config),
    test=dict(_split, ann_file=anno_root + "nuscenes_infos_val.pkl", eval_config=_eval_config),
)
del _split, _eval_config
EOF
}
write_config 1
write_config 2

# --- training: 20 steps per stage at full size, the config's fp16 where the backend runs it -------------
train_figures() {  # train_figures WORK_DIR: step time and last losses from the json log
    "$PY" - "$1" "$BATCH" <<'EOF' >>"$SUMMARY" 2>>"$OUT/logs/environment.log"
import sys
from tools.analysis_tools.train_report import mean_step_time, read_json_log

entries = [e for e in read_json_log(sys.argv[1]) if e.get("mode") == "train"]
step = mean_step_time(entries)
last = entries[-1] if entries else {}
if step is None:
    sys.exit(print("    no step time logged"))
print(f"    iterations logged up to {last.get('iter')}, step {step:.3f} s at batch {sys.argv[2]} "
      f"({int(sys.argv[2]) / step:.3g} samples/s), loss {last.get('loss', float('nan')):.3f}, "
      f"grad_norm {last.get('grad_norm', float('nan')):.3f}, memory {last.get('memory', 'n/a')} MB")
EOF
}
final_checkpoint() {  # final_checkpoint WORK_DIR: the path of its final checkpoint, empty when there is none
    "$PY" -c "import sys; from projects.mmdet3d_plugin.apis.checkpoint import final_checkpoint as f; print(f(sys.argv[1]) or '')" \
        "$1" 2>>"$OUT/logs/environment.log"
}
export SPARSEDRIVE_BATCH_SIZE="$BATCH" SPARSEDRIVE_NUM_GPUS=1
STAGE1_CKPT=""
if check train_s1 "$PY" tools/train.py "$OUT/configs/synthetic_full_stage1.py" --work-dir "$OUT/stage1" \
    --no-validate --stop-at-iter "$STEPS"; then
    train_figures "$OUT/stage1"
    STAGE1_CKPT="$(final_checkpoint "$OUT/stage1")"
fi
STAGE2_CKPT=""
if [ -n "$STAGE1_CKPT" ] && check train_s2 "$PY" tools/train.py "$OUT/configs/synthetic_full_stage2.py" \
    --work-dir "$OUT/stage2" --no-validate --stop-at-iter "$STEPS" --load-from "$STAGE1_CKPT"; then
    train_figures "$OUT/stage2"
    STAGE2_CKPT="$(final_checkpoint "$OUT/stage2")"
elif [ -z "$STAGE1_CKPT" ]; then
    say "FAIL train_s2: no stage-1 checkpoint"
    FAILED=1
fi

# --- inference FPS at full size, fp32 and the config's fp16 -----------------------------------------------
for precision in fp32 fp16; do
    flag=""; [ "$precision" = "fp32" ] && flag="--no-fp16"
    if check "bench_$precision" "$PY" tools/benchmark.py "$OUT/configs/synthetic_full_stage2.py" $STAGE2_CKPT \
        --samples "$FRAMES" --warmup "$WARMUP" $flag --out "$OUT/bench_$precision.json"; then
        "$PY" -c "import json; r = json.load(open('$OUT/bench_$precision.json')); keys = ('precision', 'frames',
            'fps', 'model_fps', 's_per_frame', 'cpu_s_per_frame', 'params'); print('    ' + ', '.join(
            f'{k} {r[k]}' for k in keys + tuple(k for k in r if k.startswith('peak_'))))" >>"$SUMMARY"
    fi
done

say "$([ "$FAILED" = 0 ] && echo 'RESULT: all checks passed' || echo 'RESULT: some checks FAILED')"
echo "[device_check] summary: $SUMMARY"
cat "$SUMMARY"
exit "$FAILED"
