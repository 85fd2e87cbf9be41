"""Run one SparseDrive model in a subprocess, for comparing the tree SparseDrive.patch makes with this one.

Both trees name their package ``projects.mmdet3d_plugin``, so each side runs in its own process with its
tree first on ``PYTHONPATH``; results go through files (``torch.save``) and are compared by the caller
(tests/tools/test_sparsedrive_patch_upstream.py).

    patch_model_runner.py make CONFIG DATA          # this tree: seeded weights + inputs -> DATA
    patch_model_runner.py run CONFIG DATA OUT       # any tree: load DATA, run, results -> OUT
    patch_model_runner.py keys CONFIG OUT           # any tree: {state-dict key: shape} of CONFIG -> OUT

``run`` does two inference frames (the second uses the first's temporal instances), then one training
forward + backward; results are the flattened outputs, the losses and every parameter's gradient.
Randomness is switched off on both sides (grid mask, dropouts, denoising groups) so the values must agree.
"""
import os
import sys
from typing import Dict

import torch

DROPOUT_ATTRS = ("dropout_p", "attn_drop", "drop_prob")
# upstream's SparseBox3DMotionDecoder takes no arguments and keeps the top 300 det instances
UPSTREAM_MOTION_TOPK = 300


def load_config(path: str, folder: str):
    """The config with every source of training randomness switched off (anchor files written to ``folder``)."""
    import numpy as np
    from mmcv import Config

    cfg = Config.fromfile(path)
    cfg.model.use_grid_mask = False

    def no_denoising(node) -> None:
        if isinstance(node, dict):
            for key in ("num_dn_groups", "num_temp_dn_groups"):
                if key in node:
                    node[key] = 0
            for value in node.values():
                no_denoising(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                no_denoising(value)

    no_denoising(cfg.model)
    head = cfg.model.head
    motion_decoder = head.get("motion_plan_head", {}).get("motion_decoder", {})
    if motion_decoder.pop("num_output", None) is not None and head.task_config.with_motion_plan:
        # our decoder's top-k is configurable, upstream's is not: give both enough det anchors for it
        rows, cols = 20, UPSTREAM_MOTION_TOPK // 20
        head.det_head.instance_bank.num_anchor = UPSTREAM_MOTION_TOPK
        head.det_head.instance_bank.anchor = [
            [-40 + 80 * i / (rows - 1), -40 + 80 * j / (cols - 1), -0.5, 1, 1, 1, 1, 0, 0, 0, 0]
            for i in range(rows)
            for j in range(cols)
        ]
    motion_head = head.get("motion_plan_head", {})
    for key in ("motion_anchor", "plan_anchor"):
        # upstream's MotionPlanningHead reads these from .npy files only
        value = motion_head.get(key)
        if isinstance(value, (list, tuple)):
            motion_head[key] = os.path.join(folder, f"{key}.npy")
            np.save(motion_head[key], np.asarray(value, dtype=np.float32))
    return cfg


def build(cfg, seed: int = 0, init: bool = True) -> torch.nn.Module:
    import projects.mmdet3d_plugin  # noqa: F401  registers the tree's modules
    from mmdet.models import build_detector

    torch.manual_seed(seed)
    model = build_detector(cfg.model)
    if init:
        model.init_weights()
    return model


def no_dropout(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
        for name in DROPOUT_ATTRS:
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)


def flatten(value, prefix: str, out: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Nested dicts / lists of tensors, arrays and numbers -> {path: tensor}."""
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            flatten(value[key], f"{prefix}/{key}", out)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            flatten(item, f"{prefix}/{i}", out)
    elif isinstance(value, torch.Tensor):
        out[prefix] = value.detach().cpu()
    elif value is not None:
        out[prefix] = torch.as_tensor(value)
    return out


def make(config: str, data_path: str) -> None:
    from tests.models.batch_factory import inference_data, make_batch

    cfg = load_config(config, os.path.dirname(data_path))
    model = build(cfg)
    hw = tuple(cfg.input_shape[::-1])
    frames = [inference_data(make_batch(batch_size=1, image_hw=hw, frame=f, seed=3)) for f in (0, 1)]
    train = make_batch(batch_size=2, image_hw=hw, num_gt=(4, 2), num_map_gt=(3, 1), seed=4)
    torch.save(dict(state_dict=model.state_dict(), frames=frames, train=train), data_path)


def run(config: str, data_path: str, out_path: str) -> None:
    data = torch.load(data_path, weights_only=False)
    model = build(load_config(config, os.path.dirname(out_path)), init=False)
    model.load_state_dict(data["state_dict"], strict=True)
    no_dropout(model)
    results: Dict[str, torch.Tensor] = {}
    model.eval()
    with torch.no_grad():
        for i, frame in enumerate(data["frames"]):
            flatten(model.forward_test(**frame), f"frame{i}", results)
    model.train()
    losses = model.forward_train(**data["train"])
    flatten(losses, "loss", results)
    # mmdet's sum: every "loss" entry, a list counting as the sum of its items' means
    total = sum(
        v.mean() if isinstance(v, torch.Tensor) else sum(x.mean() for x in v) for k, v in losses.items() if "loss" in k
    )
    total.backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            results[f"grad/{name}"] = param.grad.detach().clone()
    torch.save(results, out_path)


def keys(config: str, out_path: str) -> None:
    from mmcv import Config

    model = build(Config.fromfile(config), init=False)
    torch.save({k: tuple(v.shape) for k, v in model.state_dict().items()}, out_path)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"make": make, "run": run, "keys": keys}[mode](*args)
