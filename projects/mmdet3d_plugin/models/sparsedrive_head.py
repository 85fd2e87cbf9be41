"""Runs the detection, map and (stage 2) motion-planning heads on shared image features."""
from typing import Dict, List, Optional, Tuple, Union

from mmcv.runner import BaseModule
from mmdet.models import HEADS, build_head
from torch import Tensor

__all__ = ["SparseDriveHead"]


@HEADS.register_module()
class SparseDriveHead(BaseModule):
    """Det head, then map head (independently), then the motion-planning head that reads both.

    Args:
        task_config: flags ``with_det``, ``with_map``, ``with_motion_plan`` (motion needs det and map).
        det_head / map_head / motion_plan_head: head configs; only those enabled are built.
        init_cfg: mmcv init config.
    """

    def __init__(
        self,
        task_config: dict,
        det_head: Optional[dict] = None,
        map_head: Optional[dict] = None,
        motion_plan_head: Optional[dict] = None,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(init_cfg)
        self.task_config = task_config
        self.with_det = bool(task_config["with_det"])
        self.with_map = bool(task_config["with_map"])
        self.with_motion_plan = bool(task_config["with_motion_plan"])
        if self.with_motion_plan and not (self.with_det and self.with_map):
            raise ValueError("SparseDriveHead.task_config: with_motion_plan=True needs with_det and with_map.")
        for name, cfg, enabled in (
            ("det_head", det_head, self.with_det),
            ("map_head", map_head, self.with_map),
            ("motion_plan_head", motion_plan_head, self.with_motion_plan),
        ):
            if enabled:
                if cfg is None:
                    raise ValueError(f"SparseDriveHead.{name}: enabled in task_config but no config given.")
                setattr(self, name, build_head(cfg))

    def init_weights(self) -> None:
        """Initialise every enabled head."""
        for name, enabled in (("det_head", self.with_det), ("map_head", self.with_map),
                              ("motion_plan_head", self.with_motion_plan)):
            if enabled:
                getattr(self, name).init_weights()

    def forward(self, feature_maps: Union[Tensor, List], metas: dict) -> Tuple[Optional[dict], ...]:
        """Run the enabled heads.

        Args:
            feature_maps: flattened feature triple or list of per-level maps [B, N, C, h, w].
            metas: data dict.
        Returns:
            (det_output, map_output, motion_output, planning_output), None for disabled parts.
        """
        det_output = self.det_head(feature_maps, metas) if self.with_det else None
        map_output = self.map_head(feature_maps, metas) if self.with_map else None
        motion_output, planning_output = None, None
        if self.with_motion_plan:
            motion_output, planning_output = self.motion_plan_head(
                det_output,
                map_output,
                feature_maps,
                metas,
                self.det_head.anchor_encoder,
                self.det_head.instance_bank.mask,
                self.det_head.instance_bank.anchor_handler,
            )
        return det_output, map_output, motion_output, planning_output

    def loss(self, model_outs: Tuple[Optional[dict], ...], data: dict) -> Dict[str, Tensor]:
        """Union of the heads' loss dicts; motion reuses the det sampler's last Hungarian assignment."""
        det_output, map_output, motion_output, planning_output = model_outs
        losses = {}
        if self.with_det:
            losses.update(self.det_head.loss(det_output, data))
        if self.with_map:
            losses.update(self.map_head.loss(map_output, data))
        if self.with_motion_plan:
            motion_loss_cache = dict(indices=self.det_head.sampler.indices)
            losses.update(self.motion_plan_head.loss(motion_output, planning_output, data, motion_loss_cache))
        return losses

    def post_process(self, model_outs: Tuple[Optional[dict], ...], data: dict) -> List[dict]:
        """One merged result dict per sample (independent dicts; upstream repeats one dict object)."""
        det_output, map_output, motion_output, planning_output = model_outs
        per_task = []
        if self.with_det:
            per_task.append(self.det_head.post_process(det_output))
        if self.with_map:
            per_task.append(self.map_head.post_process(map_output))
        if self.with_motion_plan:
            per_task.extend(self.motion_plan_head.post_process(det_output, motion_output, planning_output, data))
        batch_size = len(per_task[-1]) if per_task else 0
        results = [dict() for _ in range(batch_size)]
        for task_results in per_task:
            for result, task_result in zip(results, task_results):
                result.update(task_result)
        return results
