"""Shared pytest set-up: the repo root is importable, and every test starts on the CPU backend."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(autouse=True)
def _fresh_backend_choice(monkeypatch):
    """Each test sees the backend chosen from its own environment, not a previous test's cached one."""
    from projects.mmdet3d_plugin import device

    device.reset_backend_cache()
    yield
    device.reset_backend_cache()
