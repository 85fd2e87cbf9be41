"""Python 3.8 stays legal in projects/, tools/ and tests/ (Ascend servers run 3.8-3.10): vermin, a static
checker, finds no syntax, module, member or annotation newer than 3.8.

Annotations are checked as evaluated at runtime (`--eval-annotations`: `list[int]` in a signature breaks
3.8 at import), except in files with `from __future__ import annotations`, where they stay strings.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKED_DIRS = ("projects", "tools", "tests")
FUTURE_ANNOTATIONS = re.compile(r"^from __future__ import [^\n]*\bannotations\b", re.M)


def _python_files():
    for top in CHECKED_DIRS:
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            yield from (os.path.join(folder, f) for f in sorted(files) if f.endswith(".py"))


def _vermin(paths, eval_annotations):
    """Run vermin against a 3.8 minimum; returns (exit code, report)."""
    args = ["--target=3.8-", "--no-tips", "--violations"] + (["--eval-annotations"] if eval_annotations else [])
    proc = subprocess.run([sys.executable, "-c", "import sys; from vermin import main; sys.exit(main())"]
                          + args + list(paths), capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def _split_by_future_import(paths):
    deferred, evaluated = [], []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            (deferred if FUTURE_ANNOTATIONS.search(f.read()) else evaluated).append(path)
    return deferred, evaluated


def test_projects_tools_and_tests_need_at_most_python_3_8():
    deferred, evaluated = _split_by_future_import(_python_files())
    assert len(evaluated) > 100, f"only {len(evaluated)} files found under {CHECKED_DIRS}"
    for group, eval_annotations in ((evaluated, True), (deferred, False)):
        if group:
            rc, report = _vermin(group, eval_annotations)
            assert rc == 0, f"constructs newer than Python 3.8:\n{report}"


def test_the_check_refuses_3_9_constructs_and_accepts_deferred_annotations(tmp_path):
    newer = tmp_path / "newer.py"
    newer.write_text("import functools\n\n@functools.cache\ndef f():\n    return 1\n")
    generic = tmp_path / "generic.py"
    generic.write_text("def g(x: list[int]) -> int:\n    return len(x)\n")
    deferred = tmp_path / "deferred.py"
    deferred.write_text("from __future__ import annotations\n\ndef g(x: list[int]) -> int | None:\n    return None\n")
    assert _split_by_future_import([str(newer), str(generic), str(deferred)]) == (
        [str(deferred)], [str(newer), str(generic)])
    rc, report = _vermin([str(newer)], eval_annotations=True)
    assert rc != 0 and "functools.cache" in report, report
    rc, report = _vermin([str(generic)], eval_annotations=True)
    assert rc != 0 and "builtin generic type annotation" in report, report
    rc, report = _vermin([str(deferred)], eval_annotations=False)
    assert rc == 0, f"deferred annotations are legal on 3.8:\n{report}"
