#!/usr/bin/env bash
# One-command environment set-up: venv (or the current interpreter), torch, mmcv-full with ops, requirements.
#
#   VENV=.venv               where the virtual environment lives (default: .venv in the repo)
#   SPARSEDRIVE_SYSTEM_PYTHON=1
#                            install into the current interpreter instead (Ascend / GPU machines that bring
#                            their own torch, torch_npu, mx_driving); torch is then never installed or replaced
#   SPARSEDRIVE_CACHE        wheel cache outside the clone (default: ~/.cache/sparsedrive)
#
# Idempotent: a stamp records what was installed; a second run with nothing changed only verifies imports.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv}"
CACHE="${SPARSEDRIVE_CACHE:-$HOME/.cache/sparsedrive}"
LOG_DIR="$CACHE/logs"
TORCH_PIN="torch==2.14.1 torchvision==0.29.1"
MMCV_VERSION="1.7.2"
mkdir -p "$LOG_DIR"

step() { echo "[setup] $*"; }
fail() { echo "[setup] FAILED: $1 (log: $2)" >&2; tail -n 20 "$2" >&2 || true; exit 1; }
run_logged() {  # run_logged <step name> <log file> <command...>
    local name="$1" log="$2"; shift 2
    "$@" >"$log" 2>&1 || fail "$name" "$log"
}

if [ "${SPARSEDRIVE_SYSTEM_PYTHON:-0}" = "1" ]; then
    PY="$(command -v python3)"
    step "using the current interpreter: $PY"
else
    PY="$ROOT/$VENV/bin/python"
    if [ ! -x "$PY" ]; then
        step "creating virtual environment $VENV"
        run_logged "create venv" "$LOG_DIR/venv.log" python3 -m venv "$ROOT/$VENV"
    fi
fi
PIP=("$PY" -m pip --disable-pip-version-check)

STAMP="$("$PY" -c 'import sys; print(sys.prefix)')/.sparsedrive_setup_stamp"
WANT_STAMP="$(cat requirements.txt tools/setup_env.sh | sha1sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT_STAMP" ] \
    && "$PY" -c "import torch, torchvision, mmcv.ops, mmdet, nuscenes" >/dev/null 2>&1; then
    step "environment up to date ($PY)"
    exit 0
fi

# 1. torch: only where none is installed; never replaced.
if "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
    step "torch present: $("$PY" -c 'import torch; print(torch.__version__)') (kept as is)"
elif [ "${SPARSEDRIVE_SYSTEM_PYTHON:-0}" = "1" ]; then
    echo "[setup] FAILED: torch/torchvision not importable in $PY; install your platform's torch (and torch_npu) first" >&2
    exit 1
else
    step "installing $TORCH_PIN (several GB, a few minutes)"
    run_logged "install torch" "$LOG_DIR/torch.log" "${PIP[@]}" install $TORCH_PIN
fi
# mmcv 1.x's setup.py needs pkg_resources, gone from setuptools>=70; torch pulls the newest.
run_logged "pin setuptools" "$LOG_DIR/setuptools.log" "${PIP[@]}" install "setuptools<70" wheel ninja

# 2. mmcv-full with ops, built once per (torch, python) and cached outside the clone.
if "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; then
    step "mmcv-full $MMCV_VERSION with ops present"
else
    KEY="$("$PY" -c 'import sys, torch; print(f"torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}-cuda{int(torch.cuda.is_available())}")')"
    WHEEL_DIR="$CACHE/mmcv/$KEY"
    if ! ls "$WHEEL_DIR"/mmcv_full-*.whl >/dev/null 2>&1; then
        step "building mmcv-full $MMCV_VERSION against $KEY: about 12 minutes on 2 cores (log: $LOG_DIR/mmcv_build.log)"
        BUILD="$(mktemp -d)"
        run_logged "download mmcv-full sdist" "$LOG_DIR/mmcv_download.log" \
            "${PIP[@]}" download --no-deps --no-binary :all: "mmcv-full==$MMCV_VERSION" -d "$BUILD"
        tar -xzf "$BUILD"/mmcv-full-*.tar.gz -C "$BUILD"
        SRC="$(ls -d "$BUILD"/mmcv-full-*/)"
        # torch>=2.x headers need C++20; mmcv 1.7.2 hard-codes C++17.
        sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
        mkdir -p "$WHEEL_DIR"
        MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" run_logged "build mmcv-full" "$LOG_DIR/mmcv_build.log" \
            "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$WHEEL_DIR.tmp" "$SRC"
        mv "$WHEEL_DIR.tmp"/mmcv_full-*.whl "$WHEEL_DIR"/ && rm -rf "$WHEEL_DIR.tmp" "$BUILD"
    else
        step "reusing cached mmcv-full wheel $WHEEL_DIR"
    fi
    run_logged "install mmcv-full" "$LOG_DIR/mmcv_install.log" \
        "${PIP[@]}" install --no-deps "$WHEEL_DIR"/mmcv_full-*.whl
fi

# 3. Everything else, pinned.
step "installing requirements.txt"
run_logged "install requirements" "$LOG_DIR/requirements.log" "${PIP[@]}" install -r requirements.txt
run_logged "verify imports" "$LOG_DIR/verify.log" \
    "$PY" -c "import torch, torchvision, mmcv.ops, mmdet, nuscenes, motmetrics, cv2; print('ok')"
echo "$WANT_STAMP" >"$STAMP"
step "done ($PY)"
