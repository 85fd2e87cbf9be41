"""Shared start-up for the command-line tools: config loading, backend set-up, one-line errors.

A user error ends in one line ``error: ...`` naming the file, key or value and what to do, exit code 2.
``SPARSEDRIVE_DEBUG=1`` shows the full traceback instead.
"""
import contextlib
import difflib
import gc
import io
import os
import sys
import warnings
from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEBUG_ENV = "SPARSEDRIVE_DEBUG"
STOP_ENV = "SPARSEDRIVE_STOP_AT_ITER"
NEW_KEY_PREFIX = "+"
# Start-up messages known to be harmless: torch's CPU-only cpp_extension import, mmcv 1.x's farewell notice.
CPP_EXTENSION_NOISE = "No CUDA runtime is found"
MMCV_NOTICE = "On January 1, 2023, MMCV will release v2.0.0"
# A module of these missing is a bug, not the environment.
OWN_PACKAGES = ("projects", "tools", "tests")


def die(message: str, code: int = 2) -> NoReturn:
    """Print one line saying what is wrong and what to do, then exit non-zero (no traceback)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def debug_mode() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def run_main(main: Callable[[], None]) -> None:
    """Run a tool's ``main``; a user error (missing or unreadable data, anchors, checkpoints) ends in one line.

    Files the user must provide surface as ``OSError`` (``FileNotFoundError`` and the checkpoint errors
    included), raised by the loaders with the file and sample named; a third-party module that cannot be
    imported means the tool runs under an interpreter without the requirements. Anything else is a bug and
    keeps its traceback; ``SPARSEDRIVE_DEBUG=1`` keeps it for user errors too.
    """
    if debug_mode():
        main()
        return
    try:
        main()
    except OSError as exc:
        # a DataLoader worker re-raises with the worker's traceback in the message: keep its last line
        lines = [line for line in str(exc).splitlines() if line.strip()]
        die(lines[-1] if lines else repr(exc))
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in OWN_PACKAGES:
            raise
        die(f"{sys.executable} cannot import {exc.name}; run the tool with the project's interpreter "
            "(.venv/bin/python after 'make setup'), or install requirements.txt into this environment")


def quiet_startup_noise() -> None:
    """Drop the known-harmless start-up messages once, before torch's cpp_extension and mmcv are imported.

    mmcv's v2.0 notice is filtered by its exact text; on a machine without CUDA the cpp_extension import
    (which mmcv triggers) says "No CUDA runtime is found": it is imported here with stderr captured and
    every other line it printed is passed on, so real warnings stay visible.
    """
    warnings.filterwarnings("ignore", message=MMCV_NOTICE)
    if "torch.utils.cpp_extension" in sys.modules:
        return
    import torch

    if torch.cuda.is_available():
        return
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        import torch.utils.cpp_extension  # noqa: F401  logs (torch 2.x) or prints (older) the CUDA notice
    for line in captured.getvalue().splitlines():
        if CPP_EXTENSION_NOISE not in line:
            print(line, file=sys.stderr)


def resolve_path(path: str) -> str:
    """``path`` as given when it exists from the current directory, else from the repository root."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    in_root = os.path.join(ROOT, path)
    return in_root if os.path.exists(in_root) else path


def positive_int_env(name: str) -> Optional[int]:
    """The positive integer in ``$name``, None when unset or empty; anything else stops with one line."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        die(f"{name}={raw!r} must be a positive integer; fix or unset it.")
    return int(raw)


def check_batch_env() -> None:
    """The launch scripts' ``SPARSEDRIVE_BATCH_SIZE`` / ``SPARSEDRIVE_NUM_GPUS`` (read by the configs)."""
    batch = positive_int_env("SPARSEDRIVE_BATCH_SIZE")
    gpus = positive_int_env("SPARSEDRIVE_NUM_GPUS")
    if batch is not None and gpus is not None and batch < gpus:
        die(f"global batch SPARSEDRIVE_BATCH_SIZE={batch} is smaller than the process count "
            f"SPARSEDRIVE_NUM_GPUS={gpus}: every process needs at least one sample; raise the batch or use fewer.")


def _ignore_orphan_tempfile(unraisable) -> None:
    """mmcv's Config leaves its temporary config file open when the config raises; closing it later fails."""
    from_tempfile = getattr(unraisable.object, "__module__", "") == "tempfile"
    if issubclass(unraisable.exc_type, FileNotFoundError) and from_tempfile:
        return
    sys.__unraisablehook__(unraisable)


def _read_config(path: str):
    from mmcv import Config

    error = None
    previous_hook, sys.unraisablehook = sys.unraisablehook, _ignore_orphan_tempfile
    try:
        try:
            cfg = Config.fromfile(path)
        except Exception as exc:  # a config is user code: whatever it raises is the user's to fix
            if debug_mode():
                raise
            error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, ZeroDivisionError) and os.environ.get("SPARSEDRIVE_BATCH_SIZE"):
                error += ("; is SPARSEDRIVE_BATCH_SIZE smaller than the process count (SPARSEDRIVE_NUM_GPUS, "
                          "8 when unset)?")
        gc.collect()
    finally:
        sys.unraisablehook = previous_hook
    if error is not None:
        die(f"config {path} cannot be loaded: {error}")
    return cfg


def _check_existing_key(cfg_dict: Dict, key: str, value: Any) -> None:
    """Refuse a key the config does not have, or a value of the wrong kind for a number / bool."""
    node: Any = cfg_dict
    parts = key.split(".")
    for depth, part in enumerate(parts):
        parent = ".".join(parts[:depth]) or "the config"
        if isinstance(node, dict):
            if part not in node:
                siblings = [str(k) for k in node]
                prefix = ".".join(parts[:depth] + [""])
                close = difflib.get_close_matches(part, siblings, n=1, cutoff=0.5)
                hint = f"did you mean {prefix}{close[0]}? " if close else ""
                die(f"--cfg-options {key}: {parent} has no key {part!r}; {hint}"
                    f"({NEW_KEY_PREFIX}{key}=VALUE adds it as a new key)")
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            die(f"--cfg-options {key}: {parent} is {type(node).__name__} {node!r}, which has no key {part!r}.")
    if value is None or isinstance(node, str) or node is None:
        return
    if isinstance(node, bool) and not isinstance(value, bool):
        die(f"--cfg-options {key}={value!r}: expected True or False (the config has {node}).")
    if isinstance(node, (int, float)) and not isinstance(node, bool) and (
            isinstance(value, bool) or not isinstance(value, (int, float))):
        die(f"--cfg-options {key}={value!r}: expected a number (the config has {node!r}).")


def parse_options(items: Sequence[str], flag: str) -> Dict[str, Any]:
    """``KEY=VALUE`` strings -> dict, values parsed as mmcv's DictAction does (numbers, bools, None, lists)."""
    from mmcv import DictAction

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.lstrip(NEW_KEY_PREFIX) or "" in key.lstrip(NEW_KEY_PREFIX).split("."):
            die(f"{flag} {item!r} is not KEY=VALUE (e.g. data.samples_per_gpu=2).")
        options[key] = DictAction._parse_iterable(value)
    return options


def load_config(path: str, cfg_options: Optional[List[str]] = None):
    """mmcv Config with ``--cfg-options`` merged, and the plugin imported so every type is registered.

    A relative ``path`` missing from the current directory is looked up in the repository root. Every
    ``--cfg-options`` key must exist in the config (the error names the closest one) and a number or bool
    must stay one; ``+KEY=VALUE`` adds a key the config does not have.
    """
    given = path
    path = resolve_path(path)
    if not os.path.isfile(path):
        where = os.path.abspath(given)
        also = "" if os.path.isabs(given) else f" nor {os.path.join(ROOT, given)}"
        die(f"config {given} does not exist (looked at {where}{also}); see projects/configs/ for the configs.")
    check_batch_env()
    cfg = _read_config(path)
    if cfg_options:
        options = {}
        for key, value in parse_options(cfg_options, "--cfg-options").items():
            if not key.startswith(NEW_KEY_PREFIX):
                _check_existing_key(cfg._cfg_dict, key, value)
            options[key.lstrip(NEW_KEY_PREFIX)] = value
        try:
            cfg.merge_from_dict(options)
        except (KeyError, TypeError) as exc:
            die(f"--cfg-options: {exc}; check the key path against the config.")
    import projects.mmdet3d_plugin  # noqa: F401  registers models, datasets, pipelines

    return cfg


def cfg_option_keys(cfg_options: Optional[List[str]]) -> set:
    """The dotted keys set on the command line (``+`` stripped)."""
    return {item.split("=", 1)[0].lstrip(NEW_KEY_PREFIX) for item in (cfg_options or [])}


def check_writable(folder: str, what: str) -> None:
    """Create ``folder`` if needed and prove a file can be written there, or stop with one line."""
    import tempfile

    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        die(f"{what} {folder} is not writable ({exc.strerror or exc}); pass another location.")


def stop_at_iter(value: Optional[int]) -> Optional[int]:
    """``--stop-at-iter`` or ``$SPARSEDRIVE_STOP_AT_ITER``; zero, negative or non-numeric values are refused."""
    if value is not None:
        if value < 1:
            die(f"--stop-at-iter {value}: the iteration to stop at must be a positive integer.")
        return value
    return positive_int_env(STOP_ENV)


def check_backend() -> str:
    """The backend (``SPARSEDRIVE_DEVICE`` checked) and every ``SPARSEDRIVE_OPS_BACKEND_*`` override, or one line."""
    from projects.mmdet3d_plugin import device
    from projects.mmdet3d_plugin.ops import dispatch  # importing ops registers every op

    try:
        backend = device.get_backend()
        dispatch.validate_env(backend)
    except (ValueError, RuntimeError, ImportError) as exc:
        die(str(exc))
    return backend


def setup_backend() -> str:
    """Pick the backend once; on NPU apply mx_driving's third-party patches before any model code runs."""
    from projects.mmdet3d_plugin import ops

    backend = check_backend()
    if backend == "npu":
        ops.apply_npu_patches()
    return backend

