#!/usr/bin/env bash
# Render a tools/test.py results file: bash tools/visualize.sh CONFIG [visualize.py options], e.g. --scene 0
cd "$(dirname "$0")/.." && PYTHONPATH="$PWD:${PYTHONPATH:-}" exec "${PYTHON:-python3}" tools/visualization/visualize.py "$@"
