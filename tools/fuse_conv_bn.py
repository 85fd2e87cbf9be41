"""Fold every BatchNorm into the convolution before it, for inference: ``python tools/fuse_conv_bn.py CONFIG CKPT OUT``.

In eval mode a BatchNorm after a convolution is an affine map per channel, so it folds into the
convolution's weight and bias (mmcv's ``fuse_conv_bn``; the BatchNorm becomes an identity). Results stay
equal within float rounding and the backbone runs fewer kernels. The fused checkpoint keeps the config's
module names, has no BatchNorm entries and is marked ``meta['fused_conv_bn']``: ``load_for_inference``
(used by ``tools/test.py --fuse-conv-bn`` and ``tools/benchmark.py``) fuses the model before loading it.
Training from a fused checkpoint is not supported (the BatchNorm statistics are gone).
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
from typing import TYPE_CHECKING, List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.cli_utils import die, load_config, run_main  # noqa: E402

if TYPE_CHECKING:  # torch is imported inside run_main, which names a missing one in one line
    import torch

FUSED_KEY = "fused_conv_bn"


def fuse(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in eval mode with each conv + BatchNorm pair folded into the conv (in place; returned)."""
    from mmcv.cnn import fuse_conv_bn

    model.eval()
    return fuse_conv_bn(model)


def load_for_inference(model: torch.nn.Module, path: str, fuse_conv_bn: bool = False) -> dict:
    """Load checkpoint ``path`` into ``model`` strictly, fusing conv + BatchNorm when asked or when it is fused.

    A checkpoint written by this tool is loaded into the fused model; any other is loaded first and
    fused afterwards (upstream's order). Returns the checkpoint dict.
    """
    from projects.mmdet3d_plugin.apis.checkpoint import load_weights, read_checkpoint

    checkpoint = read_checkpoint(path)
    if checkpoint.get("meta", {}).get(FUSED_KEY):
        fuse(model)
        return load_weights(model, path, strict=True)
    checkpoint = load_weights(model, path, strict=True)
    if fuse_conv_bn:
        fuse(model)
    return checkpoint


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="fuse Conv and BN layers of a SparseDrive checkpoint")
    parser.add_argument("config", help="config file path")
    parser.add_argument("checkpoint", help="checkpoint file path")
    parser.add_argument("out", help="output path of the fused checkpoint")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config)
    if not osp.isfile(args.checkpoint):
        die(f"checkpoint {args.checkpoint} does not exist; train first or download it into ckpt/.")
    from mmdet.models import build_detector

    from projects.mmdet3d_plugin.apis.checkpoint import atomic_torch_save

    model = build_detector(cfg.model, test_cfg=cfg.get("test_cfg"))
    checkpoint = load_for_inference(model, args.checkpoint, fuse_conv_bn=True)
    meta = dict(checkpoint.get("meta", {}), **{FUSED_KEY: True})
    state_dict = {key: value.cpu() for key, value in model.state_dict().items()}
    atomic_torch_save({"meta": meta, "state_dict": state_dict}, args.out)
    print(f"fused checkpoint written to {args.out} ({len(state_dict)} tensors)")


if __name__ == "__main__":
    run_main(main)
