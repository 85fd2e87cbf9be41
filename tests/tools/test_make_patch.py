"""tools/make_patch.py: SparseDrive.patch is regenerated from the code and never drifts from it."""
import ast
import os
import re
import shutil
import subprocess
import sys

import pytest

from tools import make_patch

ROOT = make_patch.ROOT
HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
# upstream's package __init__ files (52c4c05) that a shipped file may import from
UPSTREAM_PACKAGES = {
    "projects/mmdet3d_plugin/__init__.py",
    "projects/mmdet3d_plugin/apis/__init__.py",
    "projects/mmdet3d_plugin/datasets/__init__.py",
    "projects/mmdet3d_plugin/models/__init__.py",
    "projects/mmdet3d_plugin/ops/__init__.py",
}
# what upstream's ops/__init__.py defines once patched (its own feature_maps_format plus the hunk's imports)
PATCHED_OPS_EXPORTS = {"deformable_aggregation_function", "feature_maps_format", "flash_attention"}


def test_committed_patch_is_what_the_code_generates():
    with open(os.path.join(ROOT, make_patch.PATCH_FILE), encoding="utf-8", newline="") as f:
        committed = f.read()
    assert committed == make_patch.build_patch(), (
        "SparseDrive.patch is out of date with the code: run `make patch` (python tools/make_patch.py) and commit it"
    )


def test_new_files_apply_with_git_and_equal_this_repository(tmp_path):
    """git itself creates every added file from the patch, byte for byte equal to its source here."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "--quiet", str(tmp_path)], check=True)
    excludes = [f"--exclude={path}" for path in make_patch.upstream_hunks()]
    subprocess.run(["git", "apply", *excludes, os.path.join(ROOT, make_patch.PATCH_FILE)], cwd=tmp_path, check=True)
    added = make_patch.new_files()
    assert len(added) >= 15 and "projects/mmdet3d_plugin/device.py" in added
    for target, source in added.items():
        with open(tmp_path / target, "rb") as got, open(os.path.join(ROOT, source), "rb") as want:
            assert got.read() == want.read(), f"{target} differs from {source}"
        assert os.access(tmp_path / target, os.X_OK) == os.access(os.path.join(ROOT, source), os.X_OK), target


def test_our_aggregation_package_does_not_land_on_upstreams_module():
    """Upstream has ops/deformable_aggregation.py; our package of that name must go elsewhere."""
    targets = make_patch.new_files()
    assert "projects/mmdet3d_plugin/ops/deformable_aggregation_backends/__init__.py" in targets
    assert not [t for t in targets if t.startswith("projects/mmdet3d_plugin/ops/deformable_aggregation/")]


@pytest.mark.parametrize("target", sorted(make_patch.upstream_hunks()))
def test_upstream_hunk_headers_count_their_lines(target):
    """Each kept hunk's @@ counts equal its context / removed / added lines (what git apply checks first)."""
    with open(os.path.join(ROOT, make_patch.upstream_hunks()[target]), encoding="utf-8") as f:
        lines = f.read().split("\n")[:-1]
    assert lines[0] == f"diff --git a/{target} b/{target}"
    hunks = []
    for line in lines:
        match = HUNK_HEADER.match(line)
        if match:
            old, new = int(match.group(2) or 1), int(match.group(4) or 1)
            hunks.append([old, new])
        elif hunks and line[:1] in (" ", "-", "+", ""):
            hunks[-1][0] -= line[:1] in (" ", "-", "")
            hunks[-1][1] -= line[:1] in (" ", "+", "")
    assert hunks, f"{target}: no hunk"
    assert all(h == [0, 0] for h in hunks), f"{target}: header counts off by {hunks}"


def test_new_file_diff_forms():
    """The four shapes git writes for a new file, by hand."""
    assert make_patch.new_file_diff("a.py", "x\ny\n", False) == (
        "diff --git a/a.py b/a.py\nnew file mode 100644\n--- /dev/null\n+++ b/a.py\n@@ -0,0 +1,2 @@\n+x\n+y\n"
    )
    assert make_patch.new_file_diff("s.sh", "echo\n", True).startswith(
        "diff --git a/s.sh b/s.sh\nnew file mode 100755\n--- /dev/null\n+++ b/s.sh\n@@ -0,0 +1 @@\n+echo\n"
    )
    assert make_patch.new_file_diff("e.py", "", False) == "diff --git a/e.py b/e.py\nnew file mode 100644\n"
    assert make_patch.new_file_diff("n.py", "a\nb", False).endswith("+a\n+b\n\\ No newline at end of file\n")


def test_a_file_both_changed_and_added_is_refused(monkeypatch):
    clash = "projects/mmdet3d_plugin/device.py"
    monkeypatch.setattr(make_patch, "upstream_hunks", lambda: {clash: "tools/upstream_patch/hunks/x.diff"})
    with pytest.raises(ValueError, match="both changed and added"):
        make_patch.build_patch()


def test_check_flag_fails_on_a_stale_patch_and_passes_on_a_fresh_one(tmp_path):
    out = tmp_path / "SparseDrive.patch"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "make_patch.py"), "--output", str(out)]
    out.write_text("stale\n")
    stale = subprocess.run(cmd + ["--check"], capture_output=True, text=True)
    assert stale.returncode == 1 and stale.stderr.startswith("error: ") and stale.stderr.count("\n") == 1, stale.stderr
    assert out.read_text() == "stale\n", "--check must not write"
    subprocess.run(cmd, check=True, capture_output=True)
    fresh = subprocess.run(cmd + ["--check"], capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr


def _imports_of_repo_modules(target: str, text: str):
    """(line, module parts, imported names) of every import of projects.* / tools.* in ``text`` (module ``target``)."""
    package = target[: -len(".py")].split("/")[:-1]
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("projects", "tools"):
                    yield node.lineno, alias.name.split("."), []
            continue
        else:
            continue
        if module and module[0] in ("projects", "tools"):
            yield node.lineno, module, names


def _top_level_names(source: str) -> set:
    with open(os.path.join(ROOT, source), encoding="utf-8") as f:
        body = ast.parse(f.read()).body
    names = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _added_import_lines(diff_path: str) -> str:
    """The single-line imports a kept hunk adds, as source text."""
    with open(os.path.join(ROOT, diff_path), encoding="utf-8") as f:
        added = [line[1:] for line in f.read().split("\n") if line.startswith("+") and not line.startswith("+++")]
    return "\n".join(line for line in added if line.startswith(("from ", "import ")))


def test_shipped_files_and_hunks_import_only_what_the_patched_tree_has():
    """An import of a module or name of ours that the patched tree lacks (a file left out of SHIPPED, a function
    renamed here) would break the patched tree; checked for the added files and the hunks' added imports."""
    added = make_patch.new_files()
    hunks = make_patch.upstream_hunks()
    present = set(added) | set(hunks) | UPSTREAM_PACKAGES

    def module_file(parts):
        path = "/".join(parts)
        for candidate in (path + ".py", path + "/__init__.py"):
            if candidate in present:
                return candidate
        return None

    sources = []
    for target, source in sorted(added.items()):
        if target.endswith(".py") and not target.startswith("projects/configs/"):
            with open(os.path.join(ROOT, source), encoding="utf-8") as f:
                sources.append((target, source, f.read()))
    sources += [(t, diff, _added_import_lines(diff)) for t, diff in sorted(hunks.items()) if t.endswith(".py")]
    missing = []
    for target, source, text in sources:
        for line, module, names in _imports_of_repo_modules(target, text):
            where = f"{source}:{line}: {'.'.join(module)}"
            found = module_file(module)
            if found is None:
                if len(module) > 1:
                    missing.append(where)
                continue
            defined = _top_level_names(added[found]) if found in added else PATCHED_OPS_EXPORTS
            for name in names:
                if module_file(module + [name]) is None and name not in defined:
                    missing.append(f"{where}.{name}")
    assert len(sources) > len(added) // 2, "no source checked"
    hint = "add the file to SHIPPED in tools/make_patch.py, or fix the import"
    assert not missing, f"not in the patched tree ({hint}): " + "; ".join(missing)
