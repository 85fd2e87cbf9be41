"""Train SparseDrive: ``python tools/train.py CONFIG [--work-dir DIR] [--resume-from CKPT] ...``.

Distributed runs go through ``tools/dist_train.sh`` (torchrun, ``--launcher pytorch``, one node or several) or
``tools/slurm_train.sh`` (srun, ``--launcher slurm``); the process group uses hccl / nccl / gloo as the device
layer decides. Iterations per epoch come from the real dataset length and
world size (upstream hard-codes a table), unless ``--cfg-options runner.max_iters=...`` sets them.
"""
import argparse
import logging
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.cli_utils import (  # noqa: E402
    cfg_option_keys, die, load_config, quiet_startup_noise, run_main, setup_backend, stop_at_iter,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a SparseDrive detector")
    parser.add_argument("config", help="train config file path")
    parser.add_argument("--work-dir", help="the dir to save logs and models")
    parser.add_argument("--resume-from", help="the checkpoint file to resume from ('auto': work_dir/latest.pth, "
                                              "else the newest loadable iter_*.pth there)")
    parser.add_argument("--load-from", help="the checkpoint file to initialise weights from")
    parser.add_argument("--no-validate", action="store_true", help="do not evaluate checkpoints during training")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--deterministic", action="store_true", help="deterministic kernels where available")
    parser.add_argument("--cfg-options", "--options", nargs="+", default=None, metavar="KEY=VALUE",
                        help="override config settings, e.g. data.samples_per_gpu=2; the key must exist "
                             "(+KEY=VALUE adds a new one)")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none",
                        help="job launcher: torchrun (tools/dist_*.sh) or Slurm (tools/slurm_*.sh)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    parser.add_argument("--stop-at-iter", type=int, default=None,
                        help="end training at this iteration with the full lr schedule (performance mode); "
                             "default: $SPARSEDRIVE_STOP_AT_ITER")
    parser.add_argument("--autoscale-lr", action="store_true", help="scale lr by the number of devices / 8")
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    args.stop_at_iter = stop_at_iter(args.stop_at_iter)
    return args


def derive_schedule(cfg, dataset_len: int, world_size: int, explicit_keys: set, logger) -> None:
    """Rescale the config's iteration counts to the real dataset length and world size.

    Upstream derives ``num_iters_per_epoch`` from a hard-coded dataset length and 8 GPUs; here every count
    the config expresses in those iterations (max_iters, checkpoint and evaluation intervals) keeps its
    number of epochs, measured with the real iterations per epoch. Keys set with --cfg-options stay as given.
    """
    if "num_iters_per_epoch" not in cfg or "runner.max_iters" in explicit_keys:
        return
    config_ipe = cfg.num_iters_per_epoch
    iters_per_epoch = max(1, dataset_len // (cfg.data.samples_per_gpu * world_size))

    def rescale(iters: int) -> int:
        return max(1, round(iters / config_ipe * iters_per_epoch))

    cfg.runner["max_iters"] = rescale(cfg.runner["max_iters"])
    if "checkpoint_config.interval" not in explicit_keys:
        cfg.checkpoint_config["interval"] = rescale(cfg.checkpoint_config["interval"])
    if "evaluation" in cfg and "evaluation.interval" not in explicit_keys:
        cfg.evaluation["interval"] = rescale(cfg.evaluation["interval"])
    logger.info(
        "schedule: %d samples / (%d per device x %d devices) = %d iters per epoch; max_iters %d, "
        "checkpoint every %d, evaluation every %d",
        dataset_len, cfg.data.samples_per_gpu, world_size, iters_per_epoch, cfg.runner["max_iters"],
        cfg.checkpoint_config["interval"], cfg.get("evaluation", {}).get("interval", 0),
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    quiet_startup_noise()
    cfg = load_config(args.config, args.cfg_options)
    backend = setup_backend()

    import mmcv
    from mmcv.runner import get_dist_info, set_random_seed
    from mmdet.models import build_detector
    from mmdet.utils import get_root_logger

    from projects.mmdet3d_plugin.apis.dist import init_distributed
    from projects.mmdet3d_plugin.apis.checkpoint import remove_stale_temporaries, resume_checkpoint
    from projects.mmdet3d_plugin.apis.optimizer import NonFiniteLossError
    from projects.mmdet3d_plugin.apis.train import train_detector
    from projects.mmdet3d_plugin.datasets.builder import build_dataset

    cfg.work_dir = args.work_dir or cfg.get("work_dir") or osp.join("./work_dirs", osp.splitext(osp.basename(args.config))[0])
    resume_note = None
    if args.resume_from == "auto":
        args.resume_from, resume_note = resume_checkpoint(cfg.work_dir)
    if args.resume_from:
        if not osp.isfile(args.resume_from):
            die(f"--resume-from: {args.resume_from} does not exist; pass an existing checkpoint or 'auto'.")
        cfg.resume_from = args.resume_from
    if args.load_from:
        cfg.load_from = args.load_from
    if cfg.get("load_from") and not cfg.get("resume_from") and not osp.isfile(cfg.load_from):
        die(f"load_from: {cfg.load_from} does not exist; train stage 1 first (or copy its final checkpoint there).")

    distributed = args.launcher != "none"
    if distributed:
        try:
            init_distributed(args.launcher)
        except (ValueError, RuntimeError) as exc:
            die(str(exc))
    rank, world_size = get_dist_info()
    if cfg.data.samples_per_gpu < 1:
        die(f"data.samples_per_gpu={cfg.data.samples_per_gpu}: the global batch is smaller than the {world_size} "
            "process(es); every process needs at least one sample (raise SPARSEDRIVE_BATCH_SIZE or use fewer).")
    if args.autoscale_lr:
        cfg.optimizer["lr"] = cfg.optimizer["lr"] * world_size / 8

    mmcv.mkdir_or_exist(osp.abspath(cfg.work_dir))
    timestamp = time.strftime("%Y%m%d_%H%M%S", time.localtime())
    if rank == 0:
        cfg.dump(osp.join(cfg.work_dir, osp.basename(args.config)))
    logger = get_root_logger(log_file=osp.join(cfg.work_dir, f"{timestamp}.log"), log_level=cfg.log_level)
    logger.info("backend: %s, world size %d, config %s", backend, world_size, args.config)
    if rank == 0:
        removed = remove_stale_temporaries(cfg.work_dir)
        if removed:
            logger.info("removed %d temporary file(s) a killed save left in %s: %s", len(removed), cfg.work_dir,
                        ", ".join(removed))
    if resume_note:
        logger.warning("--resume-from auto: %s", resume_note)

    set_random_seed(args.seed, deterministic=args.deterministic)
    cfg.seed = args.seed
    meta = dict(seed=args.seed, config=cfg.pretty_text, exp_name=osp.basename(args.config))

    dataset = build_dataset(cfg.data.train)
    explicit = cfg_option_keys(args.cfg_options)
    derive_schedule(cfg, len(dataset), world_size, explicit, logger)

    model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    model.init_weights()
    model.CLASSES = dataset.CLASSES
    logger.info("model built: %.1f M parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    try:
        train_detector(
            model, dataset, cfg, distributed=distributed, validate=not args.no_validate, timestamp=timestamp,
            meta=meta, stop_at_iter=args.stop_at_iter, logger=logger,
        )
    except NonFiniteLossError as exc:
        logger.error(str(exc))
        die(str(exc), code=1)


if __name__ == "__main__":
    logging.captureWarnings(True)
    run_main(main)
