"""The docs name only code that exists: every `path.py::name` in README.md and docs/npu.md resolves."""
import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(ROOT, "projects", "mmdet3d_plugin")
REFERENCE = re.compile(r"`([A-Za-z0-9_/.]+\.py)::([A-Za-z0-9_.]+)`")


def references(doc: str):
    with open(os.path.join(ROOT, doc)) as f:
        return sorted(set(REFERENCE.findall(f.read())))


def defined_names(tree: ast.AST, dotted: str) -> bool:
    """Whether ``dotted`` (``func``, ``CONST``, ``Class.method``) is defined at the top of ``tree``."""
    body = tree.body
    for part in dotted.split("."):
        found = None
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == part:
                found = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == part for t in targets):
                    found = node
        if found is None:
            return False
        body = getattr(found, "body", [])
    return True


@pytest.mark.parametrize("doc", ["README.md", "docs/npu.md"])
def test_every_code_reference_in_the_docs_exists(doc):
    refs = references(doc)
    assert refs, f"no `file.py::name` references found in {doc}; the pattern is out of date"
    missing = []
    for path, name in refs:
        candidates = [os.path.join(ROOT, path), os.path.join(PLUGIN, path)]
        existing = [c for c in candidates if os.path.isfile(c)]
        if not existing:
            missing.append(f"{path} (no such file)")
            continue
        with open(existing[0]) as f:
            tree = ast.parse(f.read())
        if not defined_names(tree, name):
            missing.append(f"{path}::{name}")
    assert not missing, f"{doc} names code that does not exist: {missing}"


def test_the_checker_catches_the_old_npu_doc_reference():
    tree = ast.parse(open(os.path.join(PLUGIN, "apis", "parallel.py")).read())
    assert defined_names(tree, "wrap_model") and not defined_names(tree, "_torch2_compatible"), \
        "apis/parallel.py::_torch2_compatible was removed; the checker must see that"
