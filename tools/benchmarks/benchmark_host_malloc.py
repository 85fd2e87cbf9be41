"""Speed of a CPU training step and inference frame with glibc's default malloc against tools/host_malloc.sh.

glibc's settings are read once, when a process starts, so each side runs
``benchmark_model_step.py --skip-floor`` in its own process: ``default`` with every ``MALLOC_*`` variable
removed, ``tuned`` with those ``tools/host_malloc.sh`` exports. The sides alternate ``--rounds`` times so
that load from other processes hits both alike; the medians, the speed-up (default / tuned) and each
side's peak resident memory are printed.

    python tools/benchmarks/benchmark_host_malloc.py [--rounds 2] [--repeats 2] [--skip-train] [-- ARGS...]

ARGS go to benchmark_model_step.py unchanged (e.g. ``--config``, ``--threads``).
"""
import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEP_BENCHMARK = os.path.join(ROOT, "tools", "benchmarks", "benchmark_model_step.py")
HOST_MALLOC = os.path.join(ROOT, "tools", "host_malloc.sh")
SIDES = ("default", "tuned")

logger = logging.getLogger("benchmark_host_malloc")


def parse_args(argv: List[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="processes per side, alternating")
    parser.add_argument("--repeats", type=int, default=2, help="timed frames / steps per process")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    parser.add_argument("step_args", nargs=argparse.REMAINDER, help="-- then arguments of benchmark_model_step.py")
    return parser.parse_args(argv)


def side_env(side: str) -> Dict[str, str]:
    """The environment of one side: MALLOC_* removed, then (tuned) what tools/host_malloc.sh exports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["SPARSEDRIVE_HOST_MALLOC"] = side
    out = subprocess.run(
        ["sh", "-c", '. "$0" && env -0', HOST_MALLOC], env=env, check=True, capture_output=True, text=True
    ).stdout
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def run_side(side: str, args: argparse.Namespace, out_json: str) -> Dict[str, object]:
    step_args = [a for a in args.step_args if a != "--"]
    command = [sys.executable, STEP_BENCHMARK, "--skip-floor", "--repeats", str(args.repeats), "--out", out_json]
    command += (["--skip-train"] if args.skip_train else []) + step_args
    proc = subprocess.run(command, env=side_env(side), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"error: benchmark_model_step.py ({side} malloc) failed with exit code {proc.returncode}: {last}")
    with open(out_json) as f:
        return json.load(f)


def main(argv: List[str] = None) -> Dict[str, object]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    phases = ["infer"] + ([] if args.skip_train else ["train"])
    runs: Dict[str, List[Dict[str, object]]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.rounds):
            for side in SIDES:
                report = run_side(side, args, os.path.join(tmp, f"{side}{index}.json"))
                runs[side].append(report)
                logger.info("round %d %s: %s", index, side, ", ".join(
                    f"{p} {report[f'{p}_median_s']['total']:.2f} s" for p in phases))
    summary: Dict[str, object] = {"host_malloc": runs["tuned"][0]["host_malloc"], "rounds": args.rounds}
    for phase in phases:
        seconds = {side: statistics.median(r[f"{phase}_median_s"]["total"] for r in runs[side]) for side in SIDES}
        peak = {side: max(r[f"{phase}_peak_rss_gib"] for r in runs[side]) for side in SIDES}
        summary[phase] = {"seconds": seconds, "peak_rss_gib": peak,
                          "speedup": round(seconds["default"] / seconds["tuned"], 3)}
        logger.info("%s: glibc defaults %.2f s, tools/host_malloc.sh %.2f s: %.2fx (peak RSS %.2f / %.2f GiB)",
                    "training step" if phase == "train" else "inference frame", seconds["default"],
                    seconds["tuned"], summary[phase]["speedup"], peak["default"], peak["tuned"])
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
