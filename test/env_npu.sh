#!/usr/bin/env bash
# Ascend settings of DrivingSDK's SparseDrive scripts; sourced by the training scripts on the NPU backend only.
if command -v msnpureport >/dev/null 2>&1; then
    for i in $(seq 0 $(( ${num_npu:-8} - 1 ))); do
        msnpureport -g error -d "$i" >/dev/null 2>&1 || true
    done
    msnpureport -g error >/dev/null 2>&1 || true
    msnpureport -e disable >/dev/null 2>&1 || true
fi
export ASCEND_SLOG_PRINT_TO_STDOUT=0      # host logs not echoed to stdout
export ASCEND_GLOBAL_LOG_LEVEL=3          # host log level: error
export ASCEND_GLOBAL_EVENT_ENABLE=0       # host event logging off
export TASK_QUEUE_ENABLE=2                # level-2 operator dispatch pipelining (host/device overlap)
export CPU_AFFINITY_CONF=1                # coarse CPU core binding per training process
export PYTORCH_NPU_ALLOC_CONF=expandable_segments:True   # less device-memory fragmentation
