"""mmcv's IterBasedRunner with crash-safe checkpoints, exact resume, and an optional early stop.

Behaviour added to upstream's runner (the config still says ``runner=dict(type="IterBasedRunner")``):
- checkpoints are written atomically and ``latest.pth`` is switched atomically (``checkpoint.py``);
- a checkpoint also stores what an exact resume needs beyond weights and optimiser: the RNG states and the
  temporal caches of modules that have them (instance bank, instance queue: ``temporal_state()`` /
  ``load_temporal_state()``), so a resumed run continues as if never stopped;
- ``stop_at_iter`` ends training early without changing the schedule (DrivingSDK's performance mode: the lr
  still follows the full ``max_iters`` cosine).
"""
import os.path as osp
import random
import time
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from mmcv.parallel import is_module_wrapper
from mmcv.runner import IterBasedRunner, get_dist_info, weights_to_cpu
from mmcv.runner.checkpoint import get_state_dict

from .checkpoint import atomic_torch_save, link_latest, load_weights


def _rng_state() -> Dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _temporal_modules(model: torch.nn.Module) -> Dict[str, torch.nn.Module]:
    model = model.module if is_module_wrapper(model) else model
    return {name: m for name, m in model.named_modules() if hasattr(m, "temporal_state")}


class SparseDriveIterRunner(IterBasedRunner):
    """IterBasedRunner plus atomic checkpoints, exact resume and ``stop_at_iter``."""

    def __init__(self, *args, stop_at_iter: Optional[int] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The loop ends at _max_iters; lr hooks read max_iters, which keeps the full schedule length.
        self._schedule_iters = self._max_iters
        if stop_at_iter is not None and stop_at_iter < self._max_iters:
            self._max_iters = stop_at_iter

    @property
    def max_iters(self) -> int:
        """Length of the lr schedule (upstream's ``max_iters``), even when the run stops earlier."""
        return self._schedule_iters

    def save_checkpoint(
        self,
        out_dir: str,
        filename_tmpl: str = "iter_{}.pth",
        meta: Optional[Dict] = None,
        save_optimizer: bool = True,
        create_symlink: bool = True,
    ) -> None:
        meta = dict(meta or {})
        if self.meta is not None:
            meta.update(self.meta)
        # Hooks save before the runner counts the finished iteration: record completed iterations, so a
        # resume continues with the next one (mmcv records self.iter and repeats the last iteration).
        meta.update(epoch=self.epoch + 1, iter=self.iter + 1, time=time.asctime())
        model = self.model.module if is_module_wrapper(self.model) else self.model
        if getattr(model, "CLASSES", None) is not None:
            meta.update(CLASSES=model.CLASSES)
        checkpoint = {"meta": meta, "state_dict": weights_to_cpu(get_state_dict(model))}
        if save_optimizer and self.optimizer is not None:
            checkpoint["optimizer"] = self.optimizer.state_dict()
        checkpoint["resume_state"] = {
            "rng": _rng_state(),
            "temporal": {name: m.temporal_state() for name, m in _temporal_modules(self.model).items()},
        }
        filename = filename_tmpl.format(self.iter + 1)
        atomic_torch_save(checkpoint, osp.join(out_dir, filename))
        if create_symlink:
            link_latest(out_dir, filename)

    def load_checkpoint(self, filename: str, map_location: str = "cpu", strict: bool = False, revise_keys=None):
        """Weights only (``load_from``); torch>=2.6-safe loading of our and upstream's checkpoints."""
        self.logger.info("load checkpoint from %s", filename)
        return load_weights(self.model, filename, strict=strict, logger=self.logger)

    def resume(self, checkpoint: str, resume_optimizer: bool = True, map_location: str = "cpu") -> None:
        ckpt = self.load_checkpoint(checkpoint, strict=True)
        self._epoch = ckpt["meta"]["epoch"]
        self._iter = ckpt["meta"]["iter"]
        self._inner_iter = ckpt["meta"]["iter"]
        if resume_optimizer and "optimizer" in ckpt:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if "fp16" in ckpt["meta"]:
            self.meta = dict(self.meta or {}, fp16=ckpt["meta"]["fp16"])
        resume_state = ckpt.get("resume_state")
        if resume_state is not None:
            _set_rng_state(resume_state["rng"])
            device = next(self.model.parameters()).device
            for name, module in _temporal_modules(self.model).items():
                if name in resume_state["temporal"]:
                    module.load_temporal_state(resume_state["temporal"][name], device=device)
        rank, _ = get_dist_info()
        self.logger.info("resumed from %s at iter %d (rank %d)", checkpoint, self.iter, rank)
