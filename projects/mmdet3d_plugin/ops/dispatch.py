"""Pick one implementation per hot op from the input's device type, with an explicit override.

Each op registers a table ``{backend name: loader}`` (a loader imports its module lazily and returns
the implementation) and a default backend per device type (``cpu`` / ``cuda`` / ``npu``). The choice
for an (op, device type) pair is made once, logged once and cached. Overrides, strongest first:

1. ``set_backend(op, name)`` in code (``set_backend(op, None)`` removes it);
2. the environment variable ``SPARSEDRIVE_OPS_BACKEND_<OP>`` (e.g.
   ``SPARSEDRIVE_OPS_BACKEND_DEFORMABLE_AGGREGATION=reference``), read when the choice is first made.

Device-type aliases (``alias_device_type('cpu', 'npu')``) let the NPU backends run on CPU tensors;
only the fake ``torch_npu`` / ``mx_driving`` test set-up (``tests/fakes``) uses them.
"""
import logging
import os
from typing import Callable, Dict, Optional, Tuple

import torch

logger = logging.getLogger(__name__)

ENV_PREFIX = "SPARSEDRIVE_OPS_BACKEND_"

_LOADERS: Dict[str, Dict[str, Callable[[], Callable]]] = {}
_DEFAULTS: Dict[str, Dict[str, str]] = {}
_FORCED: Dict[str, str] = {}
_CHOSEN: Dict[Tuple[str, str], Callable] = {}
_ALIASES: Dict[str, str] = {}
# backends that run on one device type only (``validate_env`` refuses them elsewhere)
DEVICE_BOUND = {"triton": "cuda", "npu": "npu"}


def register_op(op: str, loaders: Dict[str, Callable[[], Callable]], defaults: Dict[str, str]) -> None:
    """Declare the backends of ``op``; ``defaults`` maps a device type to the backend it uses."""
    unknown = set(defaults.values()) - set(loaders)
    if unknown:
        raise ValueError(f"ops.dispatch: {op} defaults name unknown backends {sorted(unknown)}.")
    _LOADERS[op] = dict(loaders)
    _DEFAULTS[op] = dict(defaults)


def available_backends(op: str) -> Tuple[str, ...]:
    """Names of the backends registered for ``op``."""
    return tuple(_loaders_of(op))


def set_backend(op: str, backend: Optional[str]) -> None:
    """Force ``op`` to use ``backend`` on every device (``None`` returns to the automatic choice)."""
    loaders = _loaders_of(op)
    if backend is None:
        _FORCED.pop(op, None)
    elif backend not in loaders:
        raise ValueError(f"ops.set_backend: {op} has no backend {backend!r}; use one of {', '.join(loaders)}.")
    else:
        _FORCED[op] = backend
    _forget(op)


def alias_device_type(device_type: str, as_type: Optional[str]) -> None:
    """Treat tensors of ``device_type`` as ``as_type`` when choosing backends (``None`` removes the alias)."""
    if as_type is None:
        _ALIASES.pop(device_type, None)
    else:
        _ALIASES[device_type] = as_type
    _CHOSEN.clear()


def device_type_of(device: torch.device) -> str:
    """The device type used for backend choice: the tensor's own type unless an alias is set."""
    return _ALIASES.get(device.type, device.type)


def backend_name(op: str, device: torch.device) -> str:
    """Name of the backend ``op`` uses for inputs on ``device`` (after overrides)."""
    loaders = _loaders_of(op)
    forced = _FORCED.get(op) or os.environ.get(ENV_PREFIX + op.upper(), "").strip()
    if forced:
        if forced not in loaders:
            raise ValueError(
                f"{ENV_PREFIX}{op.upper()}={forced!r} is not a backend of {op}; use one of {', '.join(loaders)}."
            )
        return forced
    device_type = device_type_of(device)
    defaults = _DEFAULTS[op]
    if device_type not in defaults:
        raise RuntimeError(
            f"ops.{op}: no backend for device type {device_type!r}; call ops.set_backend({op!r}, 'reference')."
        )
    return defaults[device_type]


def validate_env(device_backend: str) -> None:
    """Check every ``SPARSEDRIVE_OPS_BACKEND_*`` variable at start-up instead of at the first forward.

    Refuses an unknown op, an unknown backend, and a device-bound backend (``triton``: CUDA, ``npu``: NPU)
    on a process running on another ``device_backend``; ``TRITON_INTERPRET=1`` lets triton run on CPU.
    """
    for name, value in sorted(os.environ.items()):
        value = value.strip()
        if not name.startswith(ENV_PREFIX) or not value:
            continue
        op = name[len(ENV_PREFIX):].lower()
        if op not in _LOADERS:
            known = ", ".join(ENV_PREFIX + known_op.upper() for known_op in sorted(_LOADERS))
            raise ValueError(f"{name}: there is no op {op!r}; the variables are {known}.")
        if value not in _LOADERS[op]:
            raise ValueError(f"{name}={value!r} is not a backend of {op}; use one of {', '.join(_LOADERS[op])}.")
        needs = DEVICE_BOUND.get(value)
        interpreted = value == "triton" and os.environ.get("TRITON_INTERPRET", "") == "1"
        if needs is not None and needs != device_backend and not interpreted:
            usable = ", ".join(b for b in _LOADERS[op] if DEVICE_BOUND.get(b, device_backend) == device_backend)
            raise RuntimeError(
                f"{name}={value} needs {'a CUDA GPU' if needs == 'cuda' else 'an Ascend NPU'} but this process "
                f"runs on {device_backend}; unset it or use one of {usable}."
            )


def select_backend(op: str, device: torch.device) -> Callable:
    """The implementation of ``op`` for inputs on ``device``; chosen, loaded and logged once."""
    key = (op, device_type_of(device))
    impl = _CHOSEN.get(key)
    if impl is None:
        name = backend_name(op, device)
        impl = _LOADERS[op][name]()
        _CHOSEN[key] = impl
        logger.info("ops.%s: %s backend for %s tensors", op, name, key[1])
    return impl


def implementation(op: str, backend: str) -> Callable:
    """The implementation of one named backend, ignoring devices and overrides (benchmarks, tests)."""
    loaders = _loaders_of(op)
    if backend not in loaders:
        raise ValueError(f"ops.dispatch: {op} has no backend {backend!r}; use one of {', '.join(loaders)}.")
    return loaders[backend]()


def reset() -> None:
    """Forget every cached choice and forced backend (tests)."""
    _FORCED.clear()
    _CHOSEN.clear()


def _loaders_of(op: str) -> Dict[str, Callable[[], Callable]]:
    if op not in _LOADERS:
        raise KeyError(f"ops.dispatch: unknown op {op!r}; registered: {', '.join(sorted(_LOADERS))}.")
    return _LOADERS[op]


def _forget(op: str) -> None:
    for key in [key for key in _CHOSEN if key[0] == op]:
        del _CHOSEN[key]
