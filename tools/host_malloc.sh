# Sourced (POSIX sh) by tools/python_env.sh and tools/device_check.sh: glibc malloc settings for CPU runs.
#
# glibc returns each freed block above its mmap threshold to the kernel, so the next tensor of that size
# page-faults its memory in again, and a CPU training step allocates gigabytes per step. Keeping freed
# blocks in the heap made a full-size CPU step faster without raising the peak memory
# (tools/benchmarks/benchmark_host_malloc.py measures it). Accelerator hosts keep glibc's defaults: not
# measured there. SPARSEDRIVE_HOST_MALLOC: auto (default: tuned when the run is on the CPU, i.e.
# SPARSEDRIVE_DEVICE=cpu, or unset with no /dev/davinci* or /dev/nvidia* device), tuned, default.
# A MALLOC_* value already set wins.
case "${SPARSEDRIVE_HOST_MALLOC:-auto}" in
    tuned) _sd_malloc=1 ;;
    default) _sd_malloc=0 ;;
    auto)
        _sd_malloc=0
        if [ "${SPARSEDRIVE_DEVICE:-}" = cpu ]; then
            _sd_malloc=1
        elif [ -z "${SPARSEDRIVE_DEVICE:-}" ] && ! ls /dev/davinci[0-9]* /dev/nvidia[0-9]* >/dev/null 2>&1; then
            _sd_malloc=1
        fi ;;
    *) echo "error: SPARSEDRIVE_HOST_MALLOC='$SPARSEDRIVE_HOST_MALLOC' is not a setting; use auto, tuned or default." >&2
       exit 2 ;;
esac
if [ "$_sd_malloc" = 1 ]; then
    # blocks up to 32 MiB (glibc's largest mmap threshold) come from the heap; freed memory stays there
    export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-33554432}"
    export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-68719476736}"
    export MALLOC_TOP_PAD_="${MALLOC_TOP_PAD_:-1073741824}"
fi
unset _sd_malloc
