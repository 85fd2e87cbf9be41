"""Process-group set-up for torchrun and Slurm launches, on the backend the device layer picked (hccl / nccl / gloo).

``pytorch``: torchrun (``tools/dist_train.sh``) exports RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT,
on one node or several. ``slurm``: one task per device started by ``srun`` (``tools/slurm_train.sh``); the same
variables are derived from Slurm's, as mmcv's ``init_dist`` does. Either way every collective gives up after
``$SPARSEDRIVE_DIST_TIMEOUT_S`` seconds, so ranks waiting for a dead or stuck peer stop instead of hanging.
"""
import ctypes
import datetime
import os
import signal
import subprocess
import sys
from typing import Dict, Mapping, Optional

import torch
import torch.distributed as dist

from .. import device

LAUNCHERS = ("pytorch", "slurm")
TIMEOUT_ENV = "SPARSEDRIVE_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800
DEFAULT_SLURM_PORT = 29500  # mmcv's default for Slurm jobs
SLURM_KEYS = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NODELIST")
TORCHRUN_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# renamed in torch 2.2
ASYNC_ERROR_HANDLING_ENV = ("TORCH_NCCL_ASYNC_ERROR_HANDLING" if tuple(int(v) for v in torch.__version__.split(".")[:2])
                            >= (2, 2) else "NCCL_ASYNC_ERROR_HANDLING")


def dist_timeout_s(environ: Mapping[str, str] = os.environ) -> int:
    """Seconds a collective (and the start-up rendezvous) may wait: ``$SPARSEDRIVE_DIST_TIMEOUT_S``, default 1800."""
    value = environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return DEFAULT_TIMEOUT_S
    if not value.isdigit() or int(value) == 0:
        raise ValueError(f"{TIMEOUT_ENV}={value!r}: give a positive number of seconds (default {DEFAULT_TIMEOUT_S}).")
    return int(value)


def slurm_env(environ: Mapping[str, str], scontrol: str = "scontrol") -> Dict[str, str]:
    """torch.distributed's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) for a Slurm task.

    Rank and world size are the task's ``SLURM_PROCID`` / ``SLURM_NTASKS``, the local rank (the device index on
    its node) ``SLURM_LOCALID``; the master is the first host of ``SLURM_NODELIST`` as ``scontrol show hostnames``
    expands it, unless MASTER_ADDR is set; MASTER_PORT defaults to 29500.
    """
    missing = [key for key in SLURM_KEYS if not environ.get(key)]
    if missing:
        raise RuntimeError(f"--launcher slurm needs ${', $'.join(missing)}; start through tools/slurm_train.sh "
                           "(srun, one task per device).")
    master_addr = environ.get("MASTER_ADDR") or _first_host(environ["SLURM_NODELIST"], scontrol)
    return dict(
        RANK=environ["SLURM_PROCID"],
        WORLD_SIZE=environ["SLURM_NTASKS"],
        LOCAL_RANK=environ["SLURM_LOCALID"],
        MASTER_ADDR=master_addr,
        MASTER_PORT=environ.get("MASTER_PORT") or str(DEFAULT_SLURM_PORT),
    )


def _first_host(nodelist: str, scontrol: str) -> str:
    try:
        proc = subprocess.run([scontrol, "show", "hostnames", nodelist], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise RuntimeError(f"--launcher slurm: cannot run {scontrol} ({exc}); set MASTER_ADDR to the first node "
                           "of the job instead.") from exc
    hosts = proc.stdout.split()
    if proc.returncode != 0 or not hosts:
        raise RuntimeError(f"--launcher slurm: '{scontrol} show hostnames {nodelist}' failed "
                           f"({proc.stderr.strip() or 'no host'}); set MASTER_ADDR to the first node of the job.")
    return hosts[0]


def exit_with_parent() -> None:
    """Die with the launcher: torchrun starts workers in their own session (torch >= 2.2), so a SIGKILL to the
    launch script's process group kills torchrun but not them; the kernel sends this process SIGKILL when its
    parent dies (Linux ``PR_SET_PDEATHSIG``; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def init_distributed(launcher: str, timeout_s: Optional[int] = None) -> None:
    """Join the process group of a ``pytorch`` (torchrun) or ``slurm`` launch and bind this rank's device.

    ``timeout_s`` defaults to ``$SPARSEDRIVE_DIST_TIMEOUT_S`` (1800). Raises ValueError / RuntimeError with a
    one-line message for an unknown launcher, missing launcher variables or a bad timeout.
    """
    if timeout_s is None:
        timeout_s = dist_timeout_s()
    if launcher == "slurm":
        os.environ.update(slurm_env(os.environ))
        # nccl honours the timeout only with async error handling, which torchrun turns on for its workers
        os.environ.setdefault(ASYNC_ERROR_HANDLING_ENV, "1")
    elif launcher == "pytorch":
        missing = [key for key in TORCHRUN_KEYS if key not in os.environ]
        if missing:
            raise RuntimeError(f"--launcher pytorch needs ${', $'.join(missing)}; start through tools/dist_train.sh "
                               "or tools/dist_test.sh (torchrun).")
        exit_with_parent()
    else:
        raise ValueError(f"--launcher {launcher!r} is not supported; use one of none, {', '.join(LAUNCHERS)}.")
    device.set_device(int(os.environ["LOCAL_RANK"]))
    try:
        dist.init_process_group(backend=device.get_dist_backend(), timeout=datetime.timedelta(seconds=timeout_s))
    except RuntimeError as exc:  # torch's DistNetworkError / DistStoreError derive from it
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RuntimeError(
            f"rank {os.environ['RANK']}: cannot join the process group at {os.environ['MASTER_ADDR']}:"
            f"{os.environ['MASTER_PORT']} ({reason}); check MASTER_ADDR / MASTER_PORT and that every node started."
        ) from exc


def leave_distributed() -> None:
    """Leave the process group together with every other rank: a barrier, then ``destroy_process_group``.

    A rank that exits with a live gloo group while a peer still runs (``tools/test.py``'s other ranks end
    while rank 0 evaluates) can abort at exit ("terminate called without an active exception", exit code
    -6); the barrier first makes sure no peer is still inside a collective. No collective may follow.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
