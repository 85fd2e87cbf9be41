"""The training loop: data loader, (distributed) model wrapper, optimiser, hooks, resume, run."""
import os.path as osp
from typing import Optional

import torch
from mmcv.runner import DistEvalHook, EvalHook, get_dist_info, wrap_fp16_model
from mmcv.utils import Config

from .. import device
from ..datasets import build_dataloader
from ..datasets.builder import build_dataset
from .checkpoint import read_checkpoint
from .optimizer import SparseDriveOptimizerHook, build_optimizer
from .parallel import wrap_model
from .runner import SparseDriveIterRunner
from .test import multi_gpu_test, single_gpu_test


def checkpoint_iter(path: str) -> int:
    """The iteration a checkpoint was saved at (0 when it carries none)."""
    return int(read_checkpoint(path).get("meta", {}).get("iter", 0))


def train_detector(
    model: torch.nn.Module,
    dataset,
    cfg: Config,
    distributed: bool,
    validate: bool,
    timestamp: str,
    meta: Optional[dict] = None,
    stop_at_iter: Optional[int] = None,
    logger=None,
) -> None:
    """Train ``model`` on ``dataset`` with upstream's iteration-based schedule.

    A resumed run (``cfg.resume_from``) restarts the sampler at the saved iteration, so it sees the same
    batches an uninterrupted run would.
    """
    if cfg.runner["type"] != "IterBasedRunner":
        raise ValueError(f"runner.type={cfg.runner['type']!r}: SparseDrive trains with 'IterBasedRunner' only.")
    _, world_size = get_dist_info()
    start_iter = checkpoint_iter(cfg.resume_from) if cfg.get("resume_from") else 0
    data_loader = build_dataloader(
        dataset,
        cfg.data.samples_per_gpu,
        cfg.data.workers_per_gpu,
        num_gpus=world_size,
        dist=distributed,
        seed=cfg.seed,
        shuffler_sampler=cfg.data.get("shuffler_sampler"),
        nonshuffler_sampler=cfg.data.get("nonshuffler_sampler"),
        runner_type=cfg.runner,
        start_iter=start_iter,
    )
    fp16_cfg = cfg.get("fp16")
    use_fp16 = fp16_cfg is not None and device.supports_fp16()
    if use_fp16:
        wrap_fp16_model(model)
    model = wrap_model(model, distributed, cfg.get("find_unused_parameters", False))
    optimizer = build_optimizer(model, cfg.optimizer)
    runner = SparseDriveIterRunner(
        model=model,
        optimizer=optimizer,
        work_dir=cfg.work_dir,
        logger=logger,
        meta=meta,
        max_iters=cfg.runner["max_iters"],
        stop_at_iter=stop_at_iter,
    )
    runner.timestamp = timestamp
    if fp16_cfg is not None and not use_fp16:
        runner.logger.info("fp16 in the config is ignored on the %s backend: training in fp32", device.get_backend())
    optimizer_hook = SparseDriveOptimizerHook(
        grad_clip=cfg.optimizer_config.get("grad_clip"), loss_scale=fp16_cfg["loss_scale"] if use_fp16 else None
    )
    runner.register_training_hooks(
        cfg.lr_config, optimizer_hook, cfg.checkpoint_config, cfg.log_config, cfg.get("momentum_config")
    )
    if validate:
        runner.register_hook(_build_eval_hook(cfg, distributed, world_size), priority="LOW")
    if cfg.get("resume_from"):
        runner.resume(cfg.resume_from)
    elif cfg.get("load_from"):
        runner.load_checkpoint(cfg.load_from)
    runner.run([data_loader], cfg.workflow)


def _build_eval_hook(cfg: Config, distributed: bool, world_size: int):
    """Evaluation every ``evaluation.interval`` iterations (and at the end), batch 1 per device."""
    val_dataset = build_dataset(cfg.data.val, dict(test_mode=True))
    val_loader = build_dataloader(
        val_dataset,
        samples_per_gpu=1,
        workers_per_gpu=cfg.data.workers_per_gpu,
        num_gpus=world_size,
        dist=distributed,
        shuffle=False,
        nonshuffler_sampler=cfg.data.get("nonshuffler_sampler"),
    )
    eval_cfg = dict(cfg.get("evaluation", {}))
    eval_cfg["by_epoch"] = False
    eval_cfg.setdefault("jsonfile_prefix", osp.join(cfg.work_dir, "val"))
    if distributed:
        # gathered through the process group (no shared storage needed) unless the config names a shared tmpdir
        eval_cfg.setdefault("gpu_collect", "tmpdir" not in eval_cfg)
        return DistEvalHook(val_loader, test_fn=multi_gpu_test, **eval_cfg)
    return EvalHook(val_loader, test_fn=single_gpu_test, **eval_cfg)
