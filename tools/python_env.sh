# Sourced (POSIX sh) by the launch scripts: picks the interpreter and checks that the dependencies import.
#
#   ROOT     the repository root (set by the caller before sourcing)
#   PYTHON   used as given when set; else $ROOT/$VENV/bin/python (VENV defaults to .venv, the venv that
#            `make setup` creates) when present; else python3 (an environment the user set up)
# Exports PYTHON, and glibc's malloc settings for CPU runs (tools/host_malloc.sh). A missing dependency
# stops the caller with one line and exit code 2; the check runs once per interpreter, so scripts that
# call each other pay for it once.
if [ -z "${PYTHON:-}" ]; then
    case "${VENV:-.venv}" in
        /*) PYTHON="${VENV}/bin/python" ;;
        *) PYTHON="$ROOT/${VENV:-.venv}/bin/python" ;;
    esac
    [ -x "$PYTHON" ] || PYTHON=python3
fi
export PYTHON
. "$ROOT/tools/host_malloc.sh"
if [ "${SPARSEDRIVE_PYTHON_CHECKED:-}" != "$PYTHON" ]; then
    if ! _sd_err=$("$PYTHON" -c "import torch, mmcv, mmdet, nuscenes, cv2" 2>&1); then
        echo "error: $PYTHON cannot import the dependencies ($(printf '%s\n' "$_sd_err" | tail -n 1));" \
            "run 'make setup' (it creates .venv, used automatically), or install requirements.txt into" \
            "your own environment, or set PYTHON=/path/to/python" >&2
        exit 2
    fi
    SPARSEDRIVE_PYTHON_CHECKED="$PYTHON"
    export SPARSEDRIVE_PYTHON_CHECKED
fi
