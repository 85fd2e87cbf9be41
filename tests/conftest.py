"""Shared pytest set-up: the repo root is importable, and every test starts on the CPU backend."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(autouse=True)
def _fresh_backend_choice():
    """Each test sees the backend chosen from its own environment, not a previous test's cached one.

    Only resets a device layer that is already imported, so tests that never touch the plugin stay light.
    """
    _reset_backend()
    yield
    _reset_backend()


def _reset_backend() -> None:
    device = sys.modules.get("projects.mmdet3d_plugin.device")
    if device is not None:
        device.reset_backend_cache()
