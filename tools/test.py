"""Test (and evaluate) a SparseDrive checkpoint: ``python tools/test.py CONFIG CKPT --eval bbox``.

Runs at batch 1 per device (temporal state); distributed runs (``tools/dist_test.sh``) give each rank a
contiguous block of whole scenes and gather the results in dataset order.
"""
import argparse
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.cli_utils import die, load_config, run_main, set_random_seed, setup_backend  # noqa: E402

# Keys of the config's `evaluation` dict that steer the training-time hook, not dataset.evaluate().
HOOK_ONLY_KEYS = ("interval", "tmpdir", "start", "gpu_collect", "save_best", "rule", "by_epoch")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Test (and evaluate) a SparseDrive model")
    parser.add_argument("config", help="test config file path")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("--out", help="output result file in pickle format")
    parser.add_argument("--format-only", action="store_true", help="format the output results without evaluation")
    parser.add_argument("--eval", type=str, nargs="+", help='evaluation metrics, e.g. "bbox"')
    parser.add_argument("--gpu-collect", action="store_true", help="accepted for upstream's CLI; results go through files")
    parser.add_argument("--tmpdir", help="tmp directory used for collecting results from multiple workers")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--deterministic", action="store_true", help="deterministic kernels where available")
    parser.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE", help="override config settings")
    parser.add_argument("--eval-options", "--options", nargs="+", default=None, metavar="KEY=VALUE",
                        help="custom options for evaluation, passed to dataset.evaluate()")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none", help="job launcher")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    parser.add_argument("--result_file", "--result-file", help="evaluate saved results (.pkl) instead of running the model")
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    if not (args.out or args.eval or args.format_only):
        parser.error("give at least one of --out, --eval, --format-only")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    setup_backend()

    import mmcv
    from mmdet.models import build_detector

    from projects.mmdet3d_plugin.apis.test import multi_gpu_test, single_gpu_test
    from projects.mmdet3d_plugin.apis.checkpoint import load_weights
    from projects.mmdet3d_plugin.apis.dist import get_dist_info, init_distributed
    from projects.mmdet3d_plugin.apis.parallel import wrap_model
    from projects.mmdet3d_plugin.datasets import build_dataloader
    from projects.mmdet3d_plugin.datasets.builder import build_dataset

    distributed = args.launcher != "none"
    if distributed:
        init_distributed(args.launcher)
    rank, world_size = get_dist_info()
    set_random_seed(args.seed, deterministic=args.deterministic)

    cfg.data.test.test_mode = True
    dataset = build_dataset(cfg.data.test)
    if args.result_file:
        if not osp.isfile(args.result_file):
            die(f"--result_file {args.result_file} does not exist.")
        outputs = mmcv.load(args.result_file)
    else:
        if not osp.isfile(args.checkpoint):
            die(f"checkpoint {args.checkpoint} does not exist; train first or download it into ckpt/.")
        data_loader = build_dataloader(
            dataset, samples_per_gpu=1, workers_per_gpu=cfg.data.workers_per_gpu, num_gpus=world_size,
            dist=distributed, shuffle=False, nonshuffler_sampler=cfg.data.get("nonshuffler_sampler"),
        )
        model = build_detector(cfg.model, test_cfg=cfg.get("test_cfg"))
        checkpoint = load_weights(model, args.checkpoint, strict=True)
        model.CLASSES = checkpoint.get("meta", {}).get("CLASSES", dataset.CLASSES)
        model = wrap_model(model, distributed)
        if distributed:
            outputs = multi_gpu_test(model, data_loader, args.tmpdir, args.gpu_collect)
        else:
            outputs = single_gpu_test(model, data_loader)
    if rank != 0:
        return
    if args.out:
        print(f"\nwriting results to {args.out}")
        mmcv.dump(outputs, args.out)
    eval_kwargs = {}
    if args.eval_options:
        eval_kwargs.update(item.split("=", 1) for item in args.eval_options)
    if args.format_only:
        dataset.format_results(outputs, **eval_kwargs)
    if args.eval:
        kwargs = {k: v for k, v in cfg.get("evaluation", {}).items() if k not in HOOK_ONLY_KEYS}
        kwargs.update(eval_kwargs, metric=args.eval)
        kwargs.setdefault("jsonfile_prefix", osp.join(osp.dirname(osp.abspath(args.checkpoint)), "eval"))
        print(dataset.evaluate(outputs, **kwargs))


if __name__ == "__main__":
    run_main(main)
