#!/usr/bin/env bash
# Performance run: both stages stop at iteration $SPARSEDRIVE_STOP_AT_ITER (default 1000) with the full lr
# schedule; prints end-to-end time, step times and FPS.
#   bash test/train_8p_performance.sh [BATCH_STAGE1 BATCH_STAGE2 NUM_CARDS]  (defaults 64 48 8)
MODE=performance
source "$(dirname "$0")/train_stages.sh"
