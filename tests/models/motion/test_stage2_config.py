"""The merged stage-2 config carries upstream's stage-2 values, nested keys included."""
import pytest

from tests.models.batch_factory import ROOT

pytest.importorskip("mmcv")

STAGE2_CONFIG = ROOT / "projects" / "configs" / "sparsedrive_small_stage2.py"


def test_stage2_config_overrides_every_derived_value(monkeypatch):
    from mmcv import Config

    monkeypatch.delenv("SPARSEDRIVE_BATCH_SIZE", raising=False)
    monkeypatch.delenv("SPARSEDRIVE_NUM_GPUS", raising=False)
    cfg = Config.fromfile(str(STAGE2_CONFIG))
    iters = 28130 // 48  # 586 per epoch at 8 x 6
    assert cfg.model.head.task_config.with_motion_plan and cfg.task_config.with_motion_plan, "motion on"
    assert cfg.model.head.motion_plan_head.type == "MotionPlanningHead", "motion head configured"
    assert cfg.model.head.map_head.instance_bank.num_temp_instances == 33, "33 temporal map instances"
    assert cfg.model.head.det_head.instance_bank.num_temp_instances == 600, "det bank unchanged"
    assert cfg.data.samples_per_gpu == 6 and cfg.data.workers_per_gpu == 6, "batch 48 on 8 cards"
    assert cfg.optimizer.lr == 3e-4 and cfg.optimizer.weight_decay == 0.001, "AdamW lr 3e-4"
    assert cfg.optimizer.paramwise_cfg.custom_keys.img_backbone.lr_mult == 0.1, "backbone lr x0.1"
    assert cfg.runner.max_iters == iters * 10, f"10 epochs: {cfg.runner.max_iters}"
    assert cfg.checkpoint_config.interval == iters * 10, "checkpoint every 10 epochs"
    assert cfg.evaluation.interval == iters * 10, "evaluate every 10 epochs"
    assert cfg.evaluation.eval_mode.with_motion and cfg.evaluation.eval_mode.with_planning, "motion/planning eval"
    assert cfg.load_from == "ckpt/sparsedrive_stage1.pth", "starts from the stage-1 checkpoint"
    assert cfg.lr_config.warmup_iters == 500 and cfg.optimizer_config.grad_clip.max_norm == 25, "inherited"


def test_stage2_batch_follows_the_environment(monkeypatch):
    from mmcv import Config

    monkeypatch.setenv("SPARSEDRIVE_BATCH_SIZE", "8")
    monkeypatch.setenv("SPARSEDRIVE_NUM_GPUS", "1")
    cfg = Config.fromfile(str(STAGE2_CONFIG))
    assert cfg.data.samples_per_gpu == 8, "per-card batch = global batch / cards"
    assert cfg.runner.max_iters == (28130 // 8) * 10, "iterations follow the global batch"
