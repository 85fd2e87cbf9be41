#!/usr/bin/env bash
# One-command environment set-up: venv (or the current interpreter), torch, mmcv-full with ops, requirements.
#
#   VENV=.venv               where the virtual environment lives (default: .venv in the repo)
#   SPARSEDRIVE_SYSTEM_PYTHON=1
#                            install into the current interpreter (python3 on PATH) instead: Ascend / GPU
#                            machines that bring their own torch, torch_npu, mx_driving. Their versions and
#                            numpy's major version are pinned as found (pip constraints), requirements.txt's
#                            ranges are installed around them, and mmcv-full is built only when no mmcv-full
#                            1.x with ops imports (with FORCE_NPU=1 where torch_npu imports).
#   SPARSEDRIVE_LOCK         pip constraints for a venv (default requirements-lock.txt: the tested stack,
#                            torch included; "none": requirements.txt's ranges only)
#   SPARSEDRIVE_TORCH        torch packages for a venv without torch (default "torch torchvision", versions
#                            from the lock)
#   SPARSEDRIVE_BASE_PYTHON  interpreter that creates a new venv (default python3)
#   SPARSEDRIVE_CACHE        wheel cache outside the clone (default: ~/.cache/sparsedrive)
#
# Idempotent: a stamp records what was installed; a second run with nothing changed only verifies imports.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv}"
CACHE="${SPARSEDRIVE_CACHE:-$HOME/.cache/sparsedrive}"
LOG_DIR="$CACHE/logs"
SYSTEM="${SPARSEDRIVE_SYSTEM_PYTHON:-0}"
LOCK="${SPARSEDRIVE_LOCK:-requirements-lock.txt}"
TORCH_PKGS="${SPARSEDRIVE_TORCH:-torch torchvision}"
MMCV_VERSION="1.7.2"
mkdir -p "$LOG_DIR"

step() { echo "[setup] $*"; }
fail() { echo "[setup] FAILED: $1 (log: $2)" >&2; tail -n 20 "$2" >&2 || true; exit 1; }
run_logged() {  # run_logged <step name> <log file> <command...>
    local name="$1" log="$2"; shift 2
    "$@" >"$log" 2>&1 || fail "$name" "$log"
}

if [ "$SYSTEM" = "1" ]; then
    PY="$(command -v python3)"
    LOCK=none   # the lock pins torch 2.14.1 and Python 3.11 versions: never forced on a user's environment
    step "using the current interpreter: $PY"
else
    PY="$ROOT/$VENV/bin/python"
    if [ ! -x "$PY" ]; then
        step "creating virtual environment $VENV"
        run_logged "create venv" "$LOG_DIR/venv.log" "${SPARSEDRIVE_BASE_PYTHON:-python3}" -m venv "$ROOT/$VENV"
    fi
fi
PIP=("$PY" -m pip --disable-pip-version-check)
CONSTRAINTS=()
[ "$LOCK" = "none" ] || CONSTRAINTS=(-c "$LOCK")

STAMP="$("$PY" -c 'import sys; print(sys.prefix)')/.sparsedrive_setup_stamp"
WANT_STAMP="$( (cat requirements.txt tools/setup_env.sh; [ "$LOCK" = "none" ] || cat "$LOCK";
                echo "$SYSTEM $TORCH_PKGS") | sha1sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT_STAMP" ] \
    && "$PY" -c "import torch, torchvision, mmcv.ops, mmdet, nuscenes" >/dev/null 2>&1; then
    step "environment up to date ($PY)"
    exit 0
fi

# 1. torch: only where none is installed; never replaced.
if "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
    step "torch present: $("$PY" -c 'import torch; print(torch.__version__)') (kept as is)"
elif [ "$SYSTEM" = "1" ]; then
    echo "[setup] FAILED: torch/torchvision not importable in $PY; install your platform's torch (and torch_npu) first" >&2
    exit 1
else
    step "installing $TORCH_PKGS (constraints: ${CONSTRAINTS[1]:-none}; several GB, a few minutes)"
    # shellcheck disable=SC2086  # TORCH_PKGS is a list of requirement specifiers
    run_logged "install torch" "$LOG_DIR/torch.log" "${PIP[@]}" install $TORCH_PKGS ${CONSTRAINTS[@]+"${CONSTRAINTS[@]}"}
fi
if [ "$SYSTEM" = "1" ]; then
    # What pip must never change here: the platform's torch stack and mmcv-full as found, numpy's major.
    SYSTEM_PINS="$(mktemp)"
    trap 'rm -f "$SYSTEM_PINS"' EXIT
    "$PY" - >"$SYSTEM_PINS" <<'EOF'
from importlib import metadata

for dist in ("torch", "torchvision", "torch_npu", "torch-npu", "mx_driving", "mx-driving", "mmcv-full"):
    try:
        print("%s==%s" % (metadata.metadata(dist)["Name"], metadata.version(dist)))
    except metadata.PackageNotFoundError:
        pass
try:
    major = int(metadata.version("numpy").split(".")[0])
    print("numpy>=%d,<%d" % (major, major + 1))
except metadata.PackageNotFoundError:
    pass
EOF
    if grep -q "^numpy>=[2-9]" "$SYSTEM_PINS"; then
        echo "[setup] FAILED: $PY has numpy $("$PY" -c 'import numpy; print(numpy.__version__)'); mmcv-full 1.x," \
            "torch 2.1 and nuscenes-devkit need numpy 1.x (pip install 'numpy<2', or use a venv)" >&2
        exit 1
    fi
    CONSTRAINTS=(-c "$SYSTEM_PINS")
    step "kept as found: $(sort -u "$SYSTEM_PINS" | tr '\n' ' ')"
else
    # mmcv 1.x's setup.py needs pkg_resources, gone from setuptools>=70; torch pulls the newest.
    run_logged "pin setuptools" "$LOG_DIR/setuptools.log" "${PIP[@]}" install "setuptools<70" wheel ninja
fi

# 2. mmcv-full with ops, built once per (torch, python, accelerator) and cached outside the clone.
MMCV_FOUND="$("$PY" -c 'import mmcv; print(mmcv.__version__)' 2>/dev/null || true)"
MMCV_OPS="$("$PY" -c 'import mmcv.ops' >/dev/null 2>&1 && echo "with ops" || echo "without ops")"
if [ "$MMCV_OPS" = "with ops" ] && { [ "$MMCV_FOUND" = "$MMCV_VERSION" ] \
        || { [ "$SYSTEM" = "1" ] && [ "${MMCV_FOUND%%.*}" = "1" ]; }; }; then
    step "mmcv-full $MMCV_FOUND with ops present (kept; tested with $MMCV_VERSION)"
elif [ "$SYSTEM" = "1" ] && [ -n "$MMCV_FOUND" ]; then
    echo "[setup] FAILED: $PY has mmcv $MMCV_FOUND $MMCV_OPS; this repository needs mmcv-full 1.x with ops:" \
        "pip uninstall mmcv mmcv-full, then re-run (or build mmcv-full $MMCV_VERSION yourself, FORCE_NPU=1 on Ascend)" >&2
    exit 1
else
    NPU="$("$PY" -c 'import torch_npu' >/dev/null 2>&1 && echo 1 || echo 0)"
    KEY="$("$PY" -c 'import sys, torch; print(f"torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}-cuda{int(torch.cuda.is_available())}")')"
    [ "$NPU" = "0" ] || KEY="$KEY-npu"
    WHEEL_DIR="$CACHE/mmcv/$KEY"
    if ! ls "$WHEEL_DIR"/mmcv_full-*.whl >/dev/null 2>&1; then
        [ "$SYSTEM" = "0" ] || run_logged "pin setuptools" "$LOG_DIR/setuptools.log" \
            "${PIP[@]}" install "setuptools<70" wheel ninja ${CONSTRAINTS[@]+"${CONSTRAINTS[@]}"}
        step "building mmcv-full $MMCV_VERSION against $KEY$([ "$NPU" = "0" ] || echo ' with FORCE_NPU=1'):" \
            "about 12 minutes on 2 cores (log: $LOG_DIR/mmcv_build-$KEY.log)"
        BUILD="$(mktemp -d)"
        run_logged "download mmcv-full sdist" "$LOG_DIR/mmcv_download.log" \
            "${PIP[@]}" download --no-deps --no-binary :all: "mmcv-full==$MMCV_VERSION" -d "$BUILD"
        tar -xzf "$BUILD"/mmcv-full-*.tar.gz -C "$BUILD"
        SRC="$(ls -d "$BUILD"/mmcv-full-*/)"
        # mmcv 1.7.2 hard-codes C++17; newer torch headers need C++20: use the standard torch's own
        # extension builder uses (C++17 for torch 2.1).
        CXX_STD="$("$PY" -c 'import inspect, torch.utils.cpp_extension as e; print("c++20" if "-std=c++20" in inspect.getsource(e) else "c++17")')"
        sed -i "s/-std=c++17/-std=$CXX_STD/g" "$SRC/setup.py"
        mkdir -p "$WHEEL_DIR"
        FORCE_NPU="$NPU" MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" run_logged "build mmcv-full" \
            "$LOG_DIR/mmcv_build-$KEY.log" "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$WHEEL_DIR.tmp" "$SRC"
        mv "$WHEEL_DIR.tmp"/mmcv_full-*.whl "$WHEEL_DIR"/ && rm -rf "$WHEEL_DIR.tmp" "$BUILD"
    else
        step "reusing cached mmcv-full wheel $WHEEL_DIR"
    fi
    run_logged "install mmcv-full" "$LOG_DIR/mmcv_install.log" \
        "${PIP[@]}" install --no-deps "$WHEEL_DIR"/mmcv_full-*.whl
fi

# 3. Everything else: requirements.txt's ranges, under the lock (venv) or the pins of what was found.
step "installing requirements.txt (constraints: ${CONSTRAINTS[1]:-none})"
run_logged "install requirements" "$LOG_DIR/requirements.log" \
    "${PIP[@]}" install -r requirements.txt ${CONSTRAINTS[@]+"${CONSTRAINTS[@]}"}
run_logged "verify imports" "$LOG_DIR/verify.log" \
    "$PY" -c "import torch, torchvision, mmcv.ops, mmdet, nuscenes, motmetrics, cv2; print('ok')"
echo "$WANT_STAMP" >"$STAMP"
step "done ($PY)"
