"""Test (and evaluate) a SparseDrive checkpoint: ``python tools/test.py CONFIG CKPT --eval bbox``.

Runs at batch 1 per device (temporal state); distributed runs (``tools/dist_test.sh``) give each rank a
contiguous block of whole scenes and gather the results in dataset order.
"""
import argparse
import inspect
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.cli_utils import (  # noqa: E402
    check_writable, die, load_config, parse_options, quiet_startup_noise, run_main, setup_backend,
)

# Keys of the config's `evaluation` dict that steer the training-time hook, not dataset.evaluate().
HOOK_ONLY_KEYS = ("interval", "tmpdir", "start", "gpu_collect", "save_best", "rule", "by_epoch")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Test (and evaluate) a SparseDrive model")
    parser.add_argument("config", help="test config file path")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("--work-dir", help="where the raw results (results.pkl / results_mini.pkl), the submission "
                                           "JSONs and metrics.json go (default: work_dirs/<config name>)")
    parser.add_argument("--out", help="also write the raw results to this pickle file")
    parser.add_argument("--format-only", action="store_true", help="format the output results without evaluation")
    parser.add_argument("--eval", type=str, nargs="+",
                        help='evaluation metrics: "bbox" (every group of the config\'s eval_mode) or groups of '
                             '"det", "tracking", "map", "motion", "planning"')
    parser.add_argument("--gpu-collect", action="store_true",
                        help="gather the results through the process group even with --tmpdir (the default without it)")
    parser.add_argument("--tmpdir", help="gather the results of several processes through files in this folder, "
                                         "which every node must share (default: through the process group)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--deterministic", action="store_true", help="deterministic kernels where available")
    parser.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE", help="override config settings")
    parser.add_argument("--eval-options", "--options", nargs="+", default=None, metavar="KEY=VALUE",
                        help="custom options for evaluation, passed to dataset.evaluate() (values parsed as "
                             "--cfg-options values: numbers, True/False, None, lists)")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none",
                        help="job launcher: torchrun (tools/dist_*.sh) or Slurm (tools/slurm_*.sh)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    parser.add_argument("--result_file", "--result-file", help="evaluate saved results (.pkl) instead of running the model")
    parser.add_argument("--fuse-conv-bn", action="store_true", help="fold BatchNorm into the convolutions (same results)")
    parser.add_argument("--show-dir", help="also render each frame (cameras + BEV) and a video per scene into this "
                                           "folder (tools/visualization)")
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    if not (args.out or args.eval or args.format_only or args.show_dir):
        parser.error("give at least one of --out, --eval, --format-only, --show-dir")
    return args


def accepted_kwargs(function, kwargs: dict) -> dict:
    """The entries of ``kwargs`` that ``function`` takes as keyword arguments."""
    names = inspect.signature(function).parameters
    return {k: v for k, v in kwargs.items() if k in names}


def check_eval_args(args: argparse.Namespace, dataset, work_dir: str) -> dict:
    """Refuse unknown ``--eval`` names and ``--eval-options`` keys before inference; returns the parsed options.

    Option values are parsed as ``--cfg-options`` values; ``jsonfile_prefix`` defaults to ``work_dir``.
    """
    if args.eval:
        try:
            dataset.select_eval_mode({}, args.eval)
        except ValueError as exc:
            die(f"--eval: {exc}")
    options = parse_options(args.eval_options or [], "--eval-options")
    takers = ([dataset.evaluate] if args.eval else []) + ([dataset.format_results] if args.format_only else [])
    known = {name for function in takers for name in inspect.signature(function).parameters}
    known -= {"results", "metric", "logger"}  # given by this tool
    unknown = sorted(set(options) - known)
    if unknown:
        die(f"--eval-options {', '.join(unknown)}: not an option of this evaluation; use {', '.join(sorted(known))}.")
    options.setdefault("jsonfile_prefix", work_dir)
    return options


def main(argv=None) -> None:
    args = parse_args(argv)
    quiet_startup_noise()
    cfg = load_config(args.config, args.cfg_options)
    setup_backend()

    import mmcv
    from mmcv.runner import get_dist_info, set_random_seed, wrap_fp16_model
    from mmdet.models import build_detector

    from projects.mmdet3d_plugin.apis.test import multi_gpu_test, single_gpu_test
    from projects.mmdet3d_plugin.apis.dist import init_distributed, leave_distributed
    from projects.mmdet3d_plugin.apis.parallel import wrap_model
    from projects.mmdet3d_plugin.datasets import build_dataloader
    from projects.mmdet3d_plugin.datasets.builder import build_dataset
    from projects.mmdet3d_plugin.device import supports_fp16
    from tools.fuse_conv_bn import load_for_inference

    distributed = args.launcher != "none"
    if distributed:
        try:
            init_distributed(args.launcher)
        except (ValueError, RuntimeError) as exc:
            die(str(exc))
    rank, world_size = get_dist_info()
    set_random_seed(args.seed, deterministic=args.deterministic)

    cfg.data.test.test_mode = True
    dataset = build_dataset(cfg.data.test)
    dataset.work_dir = None  # the raw results are written once, below
    work_dir = args.work_dir or cfg.get("work_dir") or osp.join("work_dirs", osp.splitext(osp.basename(args.config))[0])
    eval_kwargs = check_eval_args(args, dataset, work_dir)
    if rank == 0:  # every output location is checked before the (long) inference
        check_writable(work_dir, "--work-dir")
        if args.eval or args.format_only:
            check_writable(eval_kwargs["jsonfile_prefix"], "--eval-options jsonfile_prefix")
        if args.out:
            check_writable(osp.dirname(osp.abspath(args.out)), "the folder of --out")
    if distributed and args.tmpdir:
        check_writable(args.tmpdir, "--tmpdir")
    if args.result_file:
        if not osp.isfile(args.result_file):
            die(f"--result_file {args.result_file} does not exist.")
        try:
            outputs = mmcv.load(args.result_file)
        except Exception as exc:  # whatever a foreign or torn pickle raises
            die(f"--result_file {args.result_file} cannot be read ({type(exc).__name__}: {exc}).")
    else:
        if not osp.isfile(args.checkpoint):
            die(f"checkpoint {args.checkpoint} does not exist; train first or download it into ckpt/.")
        data_loader = build_dataloader(
            dataset, samples_per_gpu=1, workers_per_gpu=cfg.data.workers_per_gpu, num_gpus=world_size,
            dist=distributed, shuffle=False, nonshuffler_sampler=cfg.data.get("nonshuffler_sampler"),
        )
        model = build_detector(cfg.model, test_cfg=cfg.get("test_cfg"))
        if cfg.get("fp16") and supports_fp16():  # as upstream; mmcv autocasts the fp16-decorated methods
            wrap_fp16_model(model)
        checkpoint = load_for_inference(model, args.checkpoint, fuse_conv_bn=args.fuse_conv_bn)
        model.CLASSES = checkpoint.get("meta", {}).get("CLASSES", dataset.CLASSES)
        model = wrap_model(model, distributed)
        if distributed:
            outputs = multi_gpu_test(model, data_loader, args.tmpdir, args.gpu_collect)
        else:
            outputs = single_gpu_test(model, data_loader)
    leave_distributed()  # the results are on rank 0, which evaluates alone
    if rank != 0:
        return
    results_path = osp.join(work_dir, dataset.raw_results_name())
    if not (args.result_file and osp.abspath(args.result_file) == osp.abspath(results_path)):
        mmcv.dump(outputs, results_path)
    print(f"\nraw results: {results_path}")
    if args.out:
        mmcv.dump(outputs, args.out)
        print(f"raw results also written to {args.out}")
    if args.format_only:
        paths, _ = dataset.format_results(outputs, **accepted_kwargs(dataset.format_results, eval_kwargs))
        print(f"submission: {paths['img_bbox']}")
    if args.eval:
        kwargs = {k: v for k, v in cfg.get("evaluation", {}).items() if k not in HOOK_ONLY_KEYS}
        kwargs.update(accepted_kwargs(dataset.evaluate, eval_kwargs), metric=args.eval)
        metrics = dataset.evaluate(outputs, **kwargs)
        # the tables and the summary are printed above; all values are in metrics.json
        print(f"{len(metrics)} metrics written to {osp.join(kwargs['jsonfile_prefix'], 'metrics.json')}")
    if args.show_dir:
        from tools.visualization.visualize import show

        show(dataset, outputs, args.show_dir, source=results_path)


if __name__ == "__main__":
    run_main(main)
