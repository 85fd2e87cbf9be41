"""Crash-safe checkpoint files: write to a temporary file, then rename, so a killed run never leaves a torn file.

Every way a checkpoint file can be unusable (missing, truncated, not a checkpoint, the other stage's, a full
disk while writing) raises ``CheckpointError`` (an ``OSError``) naming the file, which the command-line
tools print as one line.
"""
import errno
import glob
import os
import pickle
import re
import tempfile
import zipfile
from typing import Any, List, Optional, Tuple

import torch

LATEST = "latest.pth"
TMP_PREFIX = ".tmp_"
# the module every stage-2 checkpoint has and no stage-1 checkpoint has
STAGE2_PREFIX = "head.motion_plan_head."


class CheckpointError(OSError):
    """A checkpoint file that cannot be used, with the file named in the message."""


class _WriteRecorder:
    """File wrapper remembering the OSError of a failed write: torch.save reports it as a bare RuntimeError."""

    def __init__(self, f) -> None:
        self._f = f
        self.error: Optional[OSError] = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self._f.flush()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path`` through a temporary file in the same folder and an atomic rename.

    The file gets the mode a newly created file gets under the user's umask (mkstemp's is 0600). A full
    disk raises ``CheckpointError`` saying "no space left on device" and where; nothing is left behind.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".pth", dir=folder)
    recorder = None
    try:
        os.chmod(tmp_path, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            recorder = _WriteRecorder(f)
            torch.save(obj, recorder)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException as exc:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        cause = recorder.error if recorder is not None and recorder.error is not None else exc
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CheckpointError(
                f"no space left on device while writing checkpoint {path} (in {folder}); free space there "
                "or pass another --work-dir."
            ) from exc
        raise


def remove_stale_temporaries(folder: str) -> List[str]:
    """Delete the temporary files a killed save left in ``folder`` (only our naming); returns their names.

    Call at the start of a run, before anything of this run writes there.
    """
    stale = glob.glob(os.path.join(glob.escape(folder), f"{TMP_PREFIX}*.pth"))
    stale += glob.glob(os.path.join(glob.escape(folder), f"{TMP_PREFIX}{LATEST}.*"))
    removed = []
    for path in sorted(stale):
        try:
            os.remove(path)
        except FileNotFoundError:
            continue
        removed.append(os.path.basename(path))
    return removed


def link_latest(folder: str, filename: str) -> None:
    """Point ``folder/latest.pth`` at ``filename`` (a relative symlink, replaced atomically)."""
    tmp_link = os.path.join(folder, f"{TMP_PREFIX}{LATEST}.{os.getpid()}")
    if os.path.lexists(tmp_link):
        os.remove(tmp_link)
    os.symlink(filename, tmp_link)
    os.replace(tmp_link, os.path.join(folder, LATEST))


def _iter_checkpoints(work_dir: str) -> List[Tuple[int, str]]:
    """(iteration, path) of every ``iter_<n>.pth`` in ``work_dir``, newest first."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(work_dir), "iter_*.pth")):
        match = re.fullmatch(r"iter_(\d+)\.pth", os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found, reverse=True)


def final_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint with the highest iteration number in ``work_dir`` (``iter_<n>.pth``), or None."""
    found = _iter_checkpoints(work_dir)
    return found[0][1] if found else None


def is_loadable(path: str) -> bool:
    """Whether ``path`` is a complete torch zip checkpoint (every member's CRC checked, nothing unpickled)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None and any(n.endswith("/data.pkl") for n in archive.namelist())
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def resume_checkpoint(work_dir: str) -> Tuple[Optional[str], Optional[str]]:
    """The checkpoint ``--resume-from auto`` continues from, and a note when it is not ``latest.pth``.

    ``latest.pth`` when it is loadable; otherwise (dangling link, torn file) the newest loadable
    ``iter_<n>.pth``. (None, None) when ``work_dir`` holds no checkpoint at all (a fresh start).
    Raises ``CheckpointError`` when checkpoints exist but none is loadable, so nothing is overwritten.
    """
    latest = os.path.join(work_dir, LATEST)
    if os.path.isfile(latest) and is_loadable(latest):
        return latest, None
    if os.path.islink(latest) and not os.path.exists(latest):
        why = f"{latest} points at {os.readlink(latest)}, which is missing"
    elif os.path.lexists(latest):
        why = f"{latest} is not a loadable checkpoint"
    else:
        why = f"{latest} does not exist"
    found = _iter_checkpoints(work_dir)
    unreadable = []
    for _, path in found:
        if os.path.realpath(path) == os.path.realpath(latest) and os.path.lexists(latest):
            unreadable.append(os.path.basename(path))
            continue
        if is_loadable(path):
            return path, f"{why}; resuming from {os.path.basename(path)}, the newest loadable checkpoint"
        unreadable.append(os.path.basename(path))
    if not found and not os.path.lexists(latest):
        return None, None
    listed = f" (unreadable: {', '.join(unreadable)})" if unreadable else ""
    raise CheckpointError(
        f"--resume-from auto: {why}, and {work_dir} holds no loadable iter_*.pth{listed}; pass "
        "--resume-from FILE, or remove them (or use another --work-dir) to start afresh."
    )


def read_checkpoint(path: str) -> dict:
    """Load a checkpoint dict on the CPU; an unreadable file raises ``CheckpointError`` naming it.

    Checkpoints carry numpy and python objects (meta, RNG states), which torch>=2.6's default
    ``weights_only=True`` refuses; only load files you trust.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, ValueError, AttributeError, ImportError, IndexError, KeyError,
            UnicodeDecodeError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        reason = (str(exc).strip().splitlines() or [""])[0].split(". ")[0][:160]  # torch's first sentence
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {reason}): it is truncated or not a "
            "torch checkpoint; pass another file, or re-train / re-download it."
        ) from exc
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a checkpoint dict.")
    return checkpoint


def checkpoint_stage(state_dict_keys) -> int:
    """2 when the keys include the motion-planning head (a stage-2 model or checkpoint), else 1."""
    return 2 if any(key.startswith(STAGE2_PREFIX) for key in state_dict_keys) else 1


def load_weights(model: torch.nn.Module, path: str, strict: bool = False, logger=None) -> dict:
    """Load ``state_dict`` from ``path`` into ``model`` (a ``module.`` prefix is stripped); returns the checkpoint.

    Missing and unexpected keys are logged (stage 2 from a stage-1 checkpoint misses the motion head).
    With ``strict`` (resume, test) a checkpoint of the other stage raises ``CheckpointError`` saying which.
    """
    from mmcv.parallel import is_module_wrapper
    from mmcv.runner import load_state_dict

    checkpoint = read_checkpoint(path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    state_dict = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    target = model.module if is_module_wrapper(model) else model
    if strict:
        ckpt_stage, model_stage = checkpoint_stage(state_dict), checkpoint_stage(target.state_dict())
        if ckpt_stage != model_stage:
            raise CheckpointError(
                f"checkpoint {path} is a stage-{ckpt_stage} checkpoint (it has "
                f"{'' if ckpt_stage == 2 else 'no '}{STAGE2_PREFIX[:-1]} weights) but the config builds the "
                f"stage-{model_stage} model; use the stage-{ckpt_stage} config"
                + (" (stage 2 starts from stage 1 with --load-from, not --resume-from)." if model_stage == 2 else ".")
            )
    load_state_dict(target, state_dict, strict=strict, logger=logger)
    return checkpoint
