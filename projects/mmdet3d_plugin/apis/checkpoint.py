"""Crash-safe checkpoint files: write to a temporary file, then rename, so a killed run never leaves a torn file."""
import glob
import os
import re
import tempfile
from typing import Any, Optional

import torch

LATEST = "latest.pth"


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=".tmp_", suffix=".pth", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def link_latest(folder: str, filename: str) -> None:
    """Point ``folder/latest.pth`` at ``filename`` (a relative symlink, replaced atomically)."""
    tmp_link = os.path.join(folder, f".tmp_{LATEST}.{os.getpid()}")
    if os.path.lexists(tmp_link):
        os.remove(tmp_link)
    os.symlink(filename, tmp_link)
    os.replace(tmp_link, os.path.join(folder, LATEST))


def final_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint with the highest iteration number in ``work_dir`` (``iter_<n>.pth``), or None."""
    best, best_iter = None, -1
    for path in glob.glob(os.path.join(work_dir, "iter_*.pth")):
        match = re.fullmatch(r"iter_(\d+)\.pth", os.path.basename(path))
        if match and int(match.group(1)) > best_iter:
            best, best_iter = path, int(match.group(1))
    return best


def read_checkpoint(path: str) -> dict:
    """Load a checkpoint dict on the CPU.

    Checkpoints carry numpy and python objects (meta, RNG states), which torch>=2.6's default
    ``weights_only=True`` refuses; only load files you trust.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist.")
    return torch.load(path, map_location="cpu", weights_only=False)


def load_weights(model: torch.nn.Module, path: str, strict: bool = False, logger=None) -> dict:
    """Load ``state_dict`` from ``path`` into ``model`` (a ``module.`` prefix is stripped); returns the checkpoint.

    Missing and unexpected keys are logged (stage 2 from a stage-1 checkpoint misses the motion head).
    """
    from mmcv.parallel import is_module_wrapper
    from mmcv.runner import load_state_dict

    checkpoint = read_checkpoint(path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    state_dict = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    load_state_dict(model.module if is_module_wrapper(model) else model, state_dict, strict=strict, logger=logger)
    return checkpoint
