"""Print the final report of test/train_8p_*.sh from the two stages' mmcv json logs.

Labels are DrivingSDK's, so users' log parsers keep working. Step time per stage = mean of the last 10
logged ``time`` values (each already a mean over the logging window); FPS = global batch / step time.
"""
import argparse
import glob
import json
import os
from typing import Dict, List, Optional

LAST_N_TIMES = 10


def read_json_log(work_dir: str) -> List[Dict]:
    """Entries of the newest ``*.log.json`` in ``work_dir`` (one dict per logged line)."""
    logs = sorted(glob.glob(os.path.join(work_dir, "*.log.json")))
    if not logs:
        return []
    entries = []
    with open(logs[-1]) as f:
        for line in f:
            line = line.strip()
            if line:
                entries.append(json.loads(line))
    return entries


def mean_step_time(entries: List[Dict]) -> Optional[float]:
    times = [e["time"] for e in entries if e.get("mode") == "train" and "time" in e][-LAST_N_TIMES:]
    return sum(times) / len(times) if times else None


def last_metric(entries: List[Dict], suffix: str) -> Optional[float]:
    """Last value of a validation metric whose key ends with ``suffix`` (e.g. ``amota``)."""
    value = None
    for entry in entries:
        if entry.get("mode") != "val":
            continue
        for key, v in entry.items():
            if key.lower().endswith(suffix.lower()) and isinstance(v, (int, float)):
                value = float(v)
    return value


def fmt(value: Optional[float], digits: int = 3) -> str:
    return "N/A" if value is None else f"{value:.{digits}f}"


NO_STEP_TIME = ("N/A: no step time was logged; the stage stopped (SPARSEDRIVE_STOP_AT_ITER) before its first "
                "log_config.interval iterations, or its log is missing")


def build_report(mode: str, seconds: float, stage1: List[Dict], stage2: List[Dict], batch1: int, batch2: int) -> str:
    t1, t2 = mean_step_time(stage1), mean_step_time(stage2)
    lines = [
        "[INFO] Final Result",
        f" - End to End Time : {seconds:.0f}s",
        f" - Stage1 Time avg per batch : {fmt(t1, 4)}{'s' if t1 is not None else ''}",
        f" - Stage1 Final Performance images/sec : {fmt(batch1 / t1 if t1 else None)}",
        f" - Stage2 Time avg per batch : {fmt(t2, 4)}{'s' if t2 is not None else ''}",
        f" - Stage2 Final Performance images/sec : {fmt(batch2 / t2 if t2 else None)}",
    ]
    if t1 is None or t2 is None:
        lines.append(f"[WARNING] step time {NO_STEP_TIME}.")
    if mode == "full":
        lines.append(f" - Stage1 AMOTA : {fmt(last_metric(stage1, 'amota'), 4)}")
        lines.append(f" - Stage2 L2 : {fmt(last_metric(stage2, 'L2'), 4)}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["full", "performance"], required=True)
    parser.add_argument("--seconds", type=float, required=True, help="end-to-end wall time")
    parser.add_argument("--stage1-work-dir", required=True)
    parser.add_argument("--stage2-work-dir", required=True)
    parser.add_argument("--batch-stage1", type=int, required=True)
    parser.add_argument("--batch-stage2", type=int, required=True)
    args = parser.parse_args(argv)
    print(build_report(args.mode, args.seconds, read_json_log(args.stage1_work_dir),
                       read_json_log(args.stage2_work_dir), args.batch_stage1, args.batch_stage2))


if __name__ == "__main__":
    main()
