#!/usr/bin/env bash
# Render a tools/test.py results file: bash tools/visualize.sh CONFIG [options of tools/visualization/visualize.py]
ROOT="$(cd "$(dirname "$0")/.." && pwd)" && . "$ROOT/tools/python_env.sh" && PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec "$PYTHON" "$ROOT/tools/visualization/visualize.py" "$@"
