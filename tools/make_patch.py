"""Build SparseDrive.patch: upstream SparseDrive (52c4c05) -> runs through this repository's backend layer.

The patch is generated, never edited by hand. It is the concatenation of
  1. the hunks against upstream files, kept as data in ``tools/upstream_patch/hunks/<upstream path>.diff``
     (each a ``git diff`` of one upstream file: the op import, the flash-attn import and forward, the
     entry points' device / distributed set-up, the ``.cuda()`` calls, the requirements);
  2. new-file hunks made from this repository's current files (``SHIPPED``: device layer, ops, the
     optimiser / distributed / parallel helpers), so the patch never drifts from the code;
  3. new-file hunks for the glue that exists only in the patched tree (``tools/upstream_patch/files/``).

    python tools/make_patch.py            # (re)write SparseDrive.patch
    python tools/make_patch.py --check    # exit 1 when SparseDrive.patch differs from what the code gives
"""
import argparse
import os
import sys
from typing import Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __package__ in (None, ""):
    sys.path.insert(0, ROOT)

from tools.cli_utils import die  # noqa: E402

UPSTREAM_COMMIT = "52c4c05b6d446b710c8a12eb9fb19d698b33cb2b"
PATCH_FILE = "SparseDrive.patch"
DATA_DIR = "tools/upstream_patch"
HUNKS_DIR = DATA_DIR + "/hunks"
FILES_DIR = DATA_DIR + "/files"

# (path here, path in the patched tree); a path ending in "/" ships every .py file of that folder.
# Upstream has ops/deformable_aggregation.py (its CUDA extension wrapper), so our package of the same name
# goes to ops/deformable_aggregation_backends/ (its imports are relative, so it works there unchanged).
SHIPPED: Tuple[Tuple[str, str], ...] = (
    ("projects/mmdet3d_plugin/device.py", "projects/mmdet3d_plugin/device.py"),
    ("projects/mmdet3d_plugin/ops/dispatch.py", "projects/mmdet3d_plugin/ops/dispatch.py"),
    ("projects/mmdet3d_plugin/ops/flash_attention.py", "projects/mmdet3d_plugin/ops/flash_attention.py"),
    ("projects/mmdet3d_plugin/ops/npu_patches.py", "projects/mmdet3d_plugin/ops/npu_patches.py"),
    ("projects/mmdet3d_plugin/ops/optim.py", "projects/mmdet3d_plugin/ops/optim.py"),
    (
        "projects/mmdet3d_plugin/ops/deformable_aggregation/",
        "projects/mmdet3d_plugin/ops/deformable_aggregation_backends/",
    ),
    ("projects/mmdet3d_plugin/apis/dist.py", "projects/mmdet3d_plugin/apis/dist.py"),
    ("projects/mmdet3d_plugin/apis/optimizer.py", "projects/mmdet3d_plugin/apis/optimizer.py"),
    ("projects/mmdet3d_plugin/apis/parallel.py", "projects/mmdet3d_plugin/apis/parallel.py"),
    # the demo configs inherit the stage configs by relative path: upstream's, in the patched tree
    ("projects/configs/demo/sparsedrive_demo_stage1.py", "projects/configs/demo/sparsedrive_demo_stage1.py"),
    ("projects/configs/demo/sparsedrive_demo_stage2.py", "projects/configs/demo/sparsedrive_demo_stage2.py"),
)


def _walk(folder: str) -> List[str]:
    """Files under ``folder`` (relative to ROOT), sorted, caches skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, folder)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in filenames:
            if not name.endswith((".pyc", ".pyo")):
                found.append(os.path.relpath(os.path.join(dirpath, name), ROOT).replace(os.sep, "/"))
    return sorted(found)


def new_files() -> Dict[str, str]:
    """{path in the patched tree: path here} for every file the patch adds."""
    mapping: Dict[str, str] = {}
    for source, target in SHIPPED:
        if source.endswith("/"):
            for path in _walk(source):
                if path.endswith(".py"):
                    mapping[target + path[len(source):]] = path
        else:
            mapping[target] = source
    for path in _walk(FILES_DIR):
        mapping[path[len(FILES_DIR) + 1:]] = path
    return mapping


def upstream_hunks() -> Dict[str, str]:
    """{upstream path: path here of its .diff} for every upstream file the patch changes."""
    return {path[len(HUNKS_DIR) + 1:-len(".diff")]: path for path in _walk(HUNKS_DIR) if path.endswith(".diff")}


def new_file_diff(target: str, text: str, executable: bool) -> str:
    """``git diff`` text that creates ``target`` with content ``text``."""
    mode = "100755" if executable else "100644"
    header = f"diff --git a/{target} b/{target}\nnew file mode {mode}\n"
    if not text:
        return header
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
        tail = ""
    else:
        tail = "\\ No newline at end of file\n"
    count = "" if len(lines) == 1 else f",{len(lines)}"
    body = "".join(f"+{line}\n" for line in lines)
    return f"{header}--- /dev/null\n+++ b/{target}\n@@ -0,0 +1{count} @@\n{body}{tail}"


def _read(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8", newline="") as f:
        return f.read()


def build_patch() -> str:
    """The full text of SparseDrive.patch."""
    hunks = upstream_hunks()
    added = new_files()
    clash = sorted(set(hunks) & set(added))
    if clash:
        raise ValueError(f"make_patch: {', '.join(clash)} both changed and added; keep one.")
    parts = []
    for target in sorted(hunks):
        text = _read(hunks[target])
        if not text.startswith(f"diff --git a/{target} b/{target}\n"):
            raise ValueError(f"make_patch: {hunks[target]} must be the git diff of {target} alone.")
        parts.append(text)
    for target in sorted(added):
        source = added[target]
        parts.append(new_file_diff(target, _read(source), os.access(os.path.join(ROOT, source), os.X_OK)))
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.path.join(ROOT, PATCH_FILE), help="where to write the patch")
    parser.add_argument("--check", action="store_true", help="compare with --output instead of writing it")
    args = parser.parse_args()
    try:
        text = build_patch()
    except (OSError, ValueError) as exc:
        die(str(exc))
    if args.check:
        try:
            current = _read(args.output)
        except OSError:
            current = None
        if current != text:
            die(f"{args.output} is out of date with the code; run python tools/make_patch.py (make patch).", code=1)
        print(f"{args.output} is up to date")
        return
    with open(args.output, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    print(f"wrote {args.output}: {len(upstream_hunks())} upstream files changed, {len(new_files())} files added")


if __name__ == "__main__":
    main()
