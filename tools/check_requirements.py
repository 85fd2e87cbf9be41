"""Resolve requirements.txt with pip for every (Python, platform) pair the users run, without installing.

    python3 tools/check_requirements.py [--requirements requirements.txt] [--jobs 4] [--index-url URL]

Pairs: Python 3.8-3.11 with torch==2.1.0 (the Ascend stack: torch_npu 2.1) and 3.12 with a torch 2.2-2.5
(none of 2.1 exists for it), each on manylinux2014 aarch64 (Kunpeng) and x86_64; plus the lock file on the
stack `make setup` installs (Python 3.11, manylinux_2_28 x86_64). Binary wheels only (`--only-binary=:all:`):
every package, pure-Python ones included, resolves to a wheel, so no user needs a compiler for anything but
mmcv-full.

pip evaluates environment markers (`; python_version < "3.9"`, torch's `platform_machine == "x86_64"`
CUDA wheels) for the interpreter that runs it, not for `--python-version` / `--platform`; each run
therefore patches pip's marker environment to the target pair before resolving.

Asks the package index (PyPI, or --index-url / PIP_INDEX_URL); local pip configuration (extra indexes,
find-links, constraints) is ignored so that the answer is the one a new user gets. Not part of `make test`.
Prints one line per pair; exits 1 when any pair does not resolve.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, NamedTuple, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MACHINES = ("aarch64", "x86_64")
TORCH_FOR_PYTHON = {"3.8": "torch==2.1.0", "3.9": "torch==2.1.0", "3.10": "torch==2.1.0",
                    "3.11": "torch==2.1.0", "3.12": "torch>=2.2,<2.6"}
SHOWN = ("torch", "numpy", "scipy", "pandas", "shapely", "matplotlib", "nuscenes-devkit", "mmdet")
# pip settings that would change the answer: the user's mirror stays reachable through --index-url
KEPT_PIP_ENV = ("PIP_CERT", "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_PROXY", "PIP_RETRIES", "PIP_TRUSTED_HOST")

# Runs pip with the marker environment of the target pair (argv[1], JSON), then pip's own arguments.
BOOTSTRAP = """
import json, sys
from pip._vendor.packaging import markers
target = json.loads(sys.argv[1])
host_environment = markers.default_environment
markers.default_environment = lambda: dict(host_environment(), **target)
probe = 'python_version == "%s" and platform_machine == "%s"' % (target["python_version"], target["platform_machine"])
assert markers.Marker(probe).evaluate(), "pip's marker environment could not be set"
from pip._internal.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


class Pair(NamedTuple):
    python: str
    machine: str
    extra: Tuple[str, ...]   # torch pin, or constraints + pins for the lock
    glibc: int = 17          # glibc 2.N of the target: 17 is manylinux2014 (CentOS 7, EulerOS 2)

    @property
    def label(self) -> str:
        return "python %-4s %-7s %s" % (self.python, self.machine, " ".join(a for a in self.extra if a != "-c"))


def marker_environment(python: str, machine: str) -> Dict[str, str]:
    """PEP 508 marker values of CPython `python` on Linux `machine`."""
    return {"python_version": python, "python_full_version": python + ".0", "platform_machine": machine,
            "platform_system": "Linux", "sys_platform": "linux", "os_name": "posix",
            "implementation_name": "cpython", "platform_python_implementation": "CPython"}


class Result(NamedTuple):
    ok: bool
    detail: str                # 'N packages: key versions', or pip's last error line(s)
    installs: Dict[str, str]   # normalised name -> version pip chose (empty when not resolved)


def platform_args(glibc: int, machine: str) -> List[str]:
    """--platform options for every manylinux tag a glibc 2.`glibc` Linux accepts (pip expands only the
    legacy manylinux2014/2010 names itself, not manylinux_2_N)."""
    tags = ["manylinux_2_%d_%s" % (minor, machine) for minor in range(glibc, 4, -1)]
    legacy = {"manylinux2014": 17} if machine == "aarch64" else {"manylinux2014": 17, "manylinux2010": 12,
                                                                   "manylinux1": 5}
    tags += ["%s_%s" % (name, machine) for name, minor in legacy.items() if glibc >= minor]
    return [arg for tag in tags for arg in ("--platform", tag)]


def resolve(pair: Pair, requirements: str, index_url: str) -> Result:
    """Dry-run pip for one pair."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in KEPT_PIP_ENV}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    with tempfile.TemporaryDirectory() as scratch:
        report = os.path.join(scratch, "report.json")
        cmd = [sys.executable, "-c", BOOTSTRAP, json.dumps(marker_environment(pair.python, pair.machine)),
               "install", "--dry-run", "--ignore-installed", "--quiet", "--report", report,
               "--only-binary=:all:", "--python-version", pair.python, "--index-url", index_url,
               # pip accepts --platform only with --target; a dry run writes nothing there
               "--target", os.path.join(scratch, "target")]
        cmd += platform_args(pair.glibc, pair.machine) + ["-r", requirements] + list(pair.extra)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0 or not os.path.exists(report):
            errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")] or \
                proc.stderr.strip().splitlines() or ["pip exited %d" % proc.returncode]
            return Result(False, errors[-1] if len(errors) == 1 else " | ".join(errors[-2:]), {})
        with open(report) as f:
            installs = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
                        for i in json.load(f)["install"]}
    shown = ", ".join("%s %s" % (name, installs[name]) for name in SHOWN if name in installs)
    return Result(True, "%d packages: %s" % (len(installs), shown), installs)


def pairs(lock: str) -> List[Pair]:
    found = [Pair(py, machine, (torch,)) for py, torch in TORCH_FOR_PYTHON.items() for machine in MACHINES]
    if os.path.exists(lock):
        with open(lock) as f:
            pins = [line.split("#")[0].strip() for line in f]
        torch_pins = tuple(p for p in pins if p.split("==")[0] in ("torch", "torchvision"))
        # torch >= 2.6 ships x86_64 wheels for glibc 2.28 (manylinux_2_28) only, like the CI machine's
        found.append(Pair("3.11", "x86_64", ("-c", os.path.relpath(lock, ROOT)) + torch_pins, glibc=28))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requirements", default=os.path.join(ROOT, "requirements.txt"))
    parser.add_argument("--lock", default=os.path.join(ROOT, "requirements-lock.txt"),
                        help="also resolve the ranges under these constraints (skipped when absent)")
    parser.add_argument("--index-url", default=os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple"))
    parser.add_argument("--jobs", type=int, default=4, help="pairs resolved at once (network-bound)")
    args = parser.parse_args(argv)
    todo = pairs(args.lock)
    print("resolving %s for %d (python, platform) pairs against %s" % (
        os.path.relpath(args.requirements, ROOT), len(todo), args.index_url), flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda p: resolve(p, args.requirements, args.index_url), todo))
    for pair, result in zip(todo, results):
        print("%-48s %s  %s" % (pair.label, "ok    " if result.ok else "FAILED", result.detail))
    failed = sum(not result.ok for result in results)
    print("%d of %d pairs resolve" % (len(todo) - failed, len(todo)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
