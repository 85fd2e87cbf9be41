#!/usr/bin/env bash
# Full training: stage 1 (det + track + map), then stage 2 (motion + planning) from stage 1's final
# checkpoint, with evaluation; prints end-to-end time, step times, FPS, AMOTA and L2.
#   bash test/train_8p_full.sh [BATCH_STAGE1 BATCH_STAGE2 NUM_CARDS]     (defaults 64 48 8)
#   SPARSEDRIVE_DEMO=1 bash test/train_8p_full.sh 2 2 2    (demo configs on the synthetic dataset)
MODE=full
source "$(dirname "$0")/train_stages.sh"
