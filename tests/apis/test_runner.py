"""The runner: atomic checkpoints with resume state, exact resume, and stop_at_iter keeping the schedule."""
import logging
import os

import pytest
import torch
from mmcv.runner import IterBasedRunner

from projects.mmdet3d_plugin.apis.optimizer import (
    NonFiniteLossError, SparseDriveOptimizerHook, build_optimizer, check_finite_loss,
)
from projects.mmdet3d_plugin.apis.runner import SparseDriveIterRunner


class ToyModel(torch.nn.Module):
    """A linear model with a temporal cache, like the instance bank: the cache feeds the next step."""

    def __init__(self) -> None:
        super().__init__()
        self.img_backbone = torch.nn.Linear(4, 4)
        self.head = torch.nn.Linear(4, 1)
        self.cache = None

    def temporal_state(self):
        return {"cache": self.cache}

    def load_temporal_state(self, state, device):
        self.cache = None if state["cache"] is None else state["cache"].to(device)

    def train_step(self, data, optimizer):
        x = data + torch.rand(4) * 0.1  # consumes the torch RNG, as dropout would
        if self.cache is not None:
            x = x + self.cache
        feat = self.img_backbone(x)
        self.cache = feat.detach().mean(0)
        loss = self.head(feat).pow(2).mean()
        return dict(loss=loss, log_vars={"loss": loss.item()}, num_samples=1)


def _loader():
    """Three batches per pass; the resume test stops at a multiple of 3 so both runs see the same batches."""
    g = torch.Generator().manual_seed(0)
    return torch.utils.data.DataLoader([torch.randn(2, 4, generator=g) for _ in range(3)], batch_size=None)


def _run(work_dir, max_iters, stop_at_iter=None, resume_from=None, seed=0):
    torch.manual_seed(seed)
    model = ToyModel()
    optimizer = build_optimizer(model, dict(type="AdamW", lr=1e-2, weight_decay=0.01,
                                            paramwise_cfg=dict(custom_keys={"img_backbone": dict(lr_mult=0.5)})))
    runner = SparseDriveIterRunner(model=model, optimizer=optimizer, work_dir=str(work_dir),
                                   logger=logging.getLogger("test_runner"), max_iters=max_iters,
                                   stop_at_iter=stop_at_iter, meta={})
    runner.register_training_hooks(
        lr_config=dict(policy="CosineAnnealing", warmup="linear", warmup_iters=2, warmup_ratio=1.0 / 3,
                       min_lr_ratio=1e-3, by_epoch=False),
        optimizer_config=SparseDriveOptimizerHook(grad_clip=dict(max_norm=25, norm_type=2)),
        checkpoint_config=dict(interval=3, by_epoch=False),
    )
    if resume_from:
        runner.resume(resume_from)
    runner.run([_loader()], [("train", 1)])
    return runner, model


def test_backbone_lr_multiplier_applies():
    model = ToyModel()
    opt = build_optimizer(model, dict(type="AdamW", lr=1e-2, weight_decay=0.01,
                                      paramwise_cfg=dict(custom_keys={"img_backbone": dict(lr_mult=0.5)})))
    lrs = sorted({g["lr"] for g in opt.param_groups})
    assert lrs == [5e-3, 1e-2], f"backbone at half lr, the rest at full lr; got {lrs}"


def test_stop_at_iter_keeps_the_full_schedule(tmp_path):
    full, _ = _run(tmp_path / "full", max_iters=12)
    stopped, _ = _run(tmp_path / "stop", max_iters=12, stop_at_iter=5)
    assert stopped.iter == 5 and full.iter == 12
    assert stopped.max_iters == 12, "lr hooks must still see the full schedule length"
    assert os.path.exists(tmp_path / "stop" / "iter_5.pth"), "the last iteration is checkpointed"
    assert os.readlink(tmp_path / "stop" / "latest.pth") == "iter_5.pth"


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    _, uninterrupted = _run(tmp_path / "a", max_iters=9)
    _run(tmp_path / "b", max_iters=9, stop_at_iter=6)  # "killed" after the iteration-6 checkpoint
    _, resumed = _run(tmp_path / "b", max_iters=9, resume_from=str(tmp_path / "b" / "latest.pth"), seed=123)
    for (name, a), (_, b) in zip(uninterrupted.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), f"{name} differs after resume: weights, optimiser, RNG or cache not restored"
    assert torch.equal(uninterrupted.cache, resumed.cache)


def test_checkpoint_holds_resume_state(tmp_path):
    _run(tmp_path, max_iters=3)
    ckpt = torch.load(tmp_path / "iter_3.pth", weights_only=False)
    assert set(ckpt) == {"meta", "state_dict", "optimizer", "resume_state"}
    assert ckpt["meta"]["iter"] == 3
    assert "" in ckpt["resume_state"]["temporal"], "the root module's temporal cache is saved"
    assert issubclass(SparseDriveIterRunner, IterBasedRunner)


class NanAfter(ToyModel):
    """The toy model whose loss turns nan from the ``bad_from``-th training step on."""

    def __init__(self, bad_from: int) -> None:
        super().__init__()
        self.bad_from, self.steps = bad_from, 0
        self.weights_before_step = {}

    def train_step(self, data, optimizer):
        self.weights_before_step = {k: v.clone() for k, v in self.state_dict().items()}
        out = super().train_step(data, optimizer)
        self.steps += 1
        if self.steps >= self.bad_from:
            out["loss"] = out["loss"] * float("nan")
            out["log_vars"] = {"loss": float("nan"), "head_loss": float("nan"), "aux_loss": 0.5}
        return out


def test_a_nan_loss_stops_training_before_the_step_and_names_the_terms(tmp_path):
    torch.manual_seed(0)
    model = NanAfter(bad_from=3)
    optimizer = build_optimizer(model, dict(type="AdamW", lr=1e-2, weight_decay=0.01))
    runner = SparseDriveIterRunner(model=model, optimizer=optimizer, work_dir=str(tmp_path),
                                   logger=logging.getLogger("test_runner"), max_iters=6, meta={})
    runner.register_training_hooks(lr_config=dict(policy="Fixed"),
                                   optimizer_config=SparseDriveOptimizerHook(grad_clip=dict(max_norm=25, norm_type=2)))
    with pytest.raises(NonFiniteLossError, match=r"iteration 3: the training loss is nan \(non-finite terms: "
                                                 r"head_loss\)"):
        runner.run([_loader()], [("train", 1)])
    assert runner.iter == 2, "the two finite steps ran, the third did not complete"
    for key, value in model.state_dict().items():
        assert torch.isfinite(value).all(), f"{key} was stepped with a nan loss"
        assert torch.equal(value, model.weights_before_step[key]), f"{key} changed after the nan loss"


def test_finite_losses_pass_the_check():
    check_finite_loss({"loss": 1.5, "det_loss": 1.0, "map_loss": 0.5}, iteration=1)
    check_finite_loss({}, iteration=1)
    with pytest.raises(NonFiniteLossError, match="loss is inf"):
        check_finite_loss({"loss": float("inf"), "det_loss": float("inf")}, iteration=7)
