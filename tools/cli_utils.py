"""Shared start-up for the command-line tools: config loading, backend set-up, seeding, one-line errors."""
import os
import random
import sys
from typing import Callable, List, NoReturn, Optional

import numpy as np


def die(message: str, code: int = 2) -> NoReturn:
    """Print one line saying what is wrong and what to do, then exit non-zero (no traceback)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def run_main(main: Callable[[], None]) -> None:
    """Run a tool's ``main``; a user error (missing or unreadable data, anchors, checkpoints) ends in one line.

    Files the user must provide surface as ``OSError`` (``FileNotFoundError`` included), raised by the
    loaders with the file and sample named. Anything else is a bug and keeps its traceback.
    """
    try:
        main()
    except OSError as exc:
        # a DataLoader worker re-raises with the worker's traceback in the message: keep its last line
        lines = [line for line in str(exc).splitlines() if line.strip()]
        die(lines[-1] if lines else repr(exc))


def load_config(path: str, cfg_options: Optional[List[str]] = None):
    """mmcv Config with ``--cfg-options`` merged, and the plugin imported so every type is registered."""
    if not os.path.isfile(path):
        die(f"config {path} does not exist; see projects/configs/ for the available configs.")
    from mmcv import Config, DictAction

    try:
        cfg = Config.fromfile(path)
    except (SyntaxError, ImportError, KeyError, ValueError, TypeError, NameError) as exc:
        die(f"config {path} cannot be loaded: {type(exc).__name__}: {exc}")
    if cfg_options:
        options = {}
        for item in cfg_options:
            if "=" not in item:
                die(f"--cfg-options {item!r} is not KEY=VALUE (e.g. data.samples_per_gpu=2).")
            key, value = item.split("=", 1)
            options[key] = DictAction._parse_iterable(value)
        try:
            cfg.merge_from_dict(options)
        except (KeyError, TypeError) as exc:
            die(f"--cfg-options: {exc}; check the key path against the config.")
    import projects.mmdet3d_plugin  # noqa: F401  registers models, datasets, pipelines

    return cfg


def setup_backend() -> str:
    """Pick the backend once; on NPU apply mx_driving's third-party patches before any model code runs."""
    from projects.mmdet3d_plugin import device, ops

    try:
        backend = device.get_backend()
    except (ValueError, RuntimeError, ImportError) as exc:
        die(str(exc))
    if backend == "npu":
        ops.apply_npu_patches()
    return backend


def set_random_seed(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (every device); ``deterministic`` also asks for deterministic kernels."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
