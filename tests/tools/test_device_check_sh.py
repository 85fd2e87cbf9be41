"""tools/device_check.sh: valid bash, and every file it runs exists (a rename would break the one GPU run we get)."""
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "device_check.sh")


def test_script_parses():
    done = subprocess.run(["bash", "-n", SCRIPT], capture_output=True, text=True)
    assert done.returncode == 0, f"bash -n failed: {done.stderr}"


def test_every_path_the_script_runs_exists():
    with open(SCRIPT) as f:
        text = f.read()
    paths = set(re.findall(r"\b((?:tools|tests|test|projects/configs)/[\w./-]+\.(?:py|sh))\b", text))
    assert {"tools/benchmark.py", "tools/train.py", "tests/ops/test_accelerator_backends.py",
            "tools/benchmarks/benchmark_deformable_aggregation.py"} <= paths, f"found {sorted(paths)}"
    missing = sorted(p for p in paths if not os.path.isfile(os.path.join(ROOT, p)))
    assert not missing, f"device_check.sh runs files that do not exist: {missing}"
