"""Post-processing of the motion-planning head: agent trajectories and the command-conditioned ego plan."""
import math
from typing import List, Optional, Tuple

import torch
from mmdet.core.bbox.builder import BBOX_CODERS
from torch import Tensor

from projects.mmdet3d_plugin.core.box3d import CNS, COS_YAW, SIN_YAW, L, W, X, Y, decode_box

from ..detection3d.decoder import SparseBox3DDecoder
from .motion_blocks import NUM_COMMANDS

__all__ = ["SparseBox3DMotionDecoder", "HierarchicalPlanningDecoder", "check_collision"]

EGO_SIZE = (4.08, 1.73, 1.56)  # W (along heading), L, H in metres


@BBOX_CODERS.register_module()
class SparseBox3DMotionDecoder(SparseBox3DDecoder):
    """Trajectories of the det instances the det decoder keeps (same top-k and centerness re-scoring).

    Boxes themselves come from the det decoder; this one emits, per sample, ``trajs_3d`` [n, M, T, 2]
    (positions in the LiDAR frame, metres), ``trajs_score`` [n, M], ``anchor_queue`` (decoded queued boxes
    [n, T_q, 10]) and ``period`` [n].
    """

    def decode(
        self,
        cls_scores: List[Tensor],
        box_preds: List[Tensor],
        instance_id: Optional[Tensor] = None,
        quality: Optional[List[Optional[Tensor]]] = None,
        motion_output: Optional[dict] = None,
        output_idx: int = -1,
    ) -> List[dict]:
        """
        Args:
            cls_scores: per det layer [B, A, num_cls] logits; box_preds: per layer [B, A, 11].
            instance_id: [B, A] track ids (present: score = max over classes).
            quality: per layer [B, A, 2] or None.
            motion_output: the head's motion output (``classification``, ``prediction``, ``anchor_queue``,
                ``period``).
        """
        anchor_idx, mask = self._select(cls_scores[output_idx], instance_id, quality, output_idx)
        box_xy = box_preds[output_idx][..., [X, Y]]
        trajs = motion_output["prediction"][-1]
        traj_cls = motion_output["classification"][-1].sigmoid()
        anchor_queue = torch.stack(motion_output["anchor_queue"], dim=2)
        period = motion_output["period"]

        output = []
        for i in range(anchor_idx.shape[0]):
            idx = anchor_idx[i] if mask is None else anchor_idx[i][mask[i]]
            traj = trajs[i, idx].cumsum(dim=-2) + box_xy[i, idx][:, None, None]
            output.append(
                {
                    "trajs_3d": traj.cpu(),
                    "trajs_score": traj_cls[i, idx].cpu(),
                    "anchor_queue": decode_box(anchor_queue[i, idx]).cpu(),
                    "period": period[i, idx].cpu(),
                }
            )
        return output

    def _select(
        self,
        cls_logits: Tensor,
        instance_id: Optional[Tensor],
        quality: Optional[List[Optional[Tensor]]],
        output_idx: int,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Instance indices [B, K] in the det decoder's output order and the score-threshold mask (or None)."""
        scores = cls_logits.sigmoid()
        if instance_id is not None:
            scores = scores.max(dim=-1, keepdim=True).values
        num_cls = scores.shape[-1]
        num_output = min(self.num_output, scores.shape[1] * num_cls)
        scores, indices = scores.flatten(start_dim=1).topk(num_output, dim=1, sorted=self.sorted)
        mask = scores >= self.score_threshold if self.score_threshold is not None else None
        if quality is not None and quality[output_idx] is not None:
            centerness = torch.gather(quality[output_idx][..., CNS], 1, indices // num_cls)
            scores, order = torch.sort(scores * centerness.sigmoid(), dim=1, descending=True)
            indices = torch.gather(indices, 1, order)
            if mask is not None:
                mask = torch.gather(mask, 1, order)
        return indices // num_cls, mask


@BBOX_CODERS.register_module()
class HierarchicalPlanningDecoder:
    """Pick the ego plan: the driving command selects 6 modes, the best-scored (collision-aware) one wins.

    Args:
        ego_fut_ts: ego future steps T_e.
        ego_fut_mode: modes per command M_e.
        use_rescore: push down modes whose ego box collides with a confident agent's predicted box.
        fix_ego_offset: upstream means to shift the ego box 0.5 m forward along its heading before the
            collision test, but indexes rows instead of columns (no shift; two ego boxes of sample 0 are
            perturbed instead). False reproduces that for metric parity; True applies the intended shift.
    """

    def __init__(
        self,
        ego_fut_ts: int,
        ego_fut_mode: int,
        use_rescore: bool = False,
        fix_ego_offset: bool = False,
    ) -> None:
        self.ego_fut_ts = ego_fut_ts
        self.ego_fut_mode = ego_fut_mode
        self.use_rescore = use_rescore
        self.fix_ego_offset = fix_ego_offset

    def decode(self, det_output: dict, motion_output: dict, planning_output: dict, data: dict) -> List[dict]:
        """
        Returns per sample: ``planning_score`` [3, M_e] (sigmoid; the command's row rescored),
        ``planning`` [3, M_e, T_e, 2] (positions, metres), ``final_planning`` [T_e, 2], ``ego_period`` [1],
        ``ego_anchor_queue`` [1, T_q, 10] (decoded boxes).
        """
        classification = planning_output["classification"][-1]
        bs = classification.shape[0]
        classification = classification.reshape(bs, NUM_COMMANDS, self.ego_fut_mode)
        prediction = planning_output["prediction"][-1].reshape(
            bs, NUM_COMMANDS, self.ego_fut_mode, self.ego_fut_ts, 2
        ).cumsum(dim=-2)
        classification, final_planning = self.select(det_output, motion_output, classification, prediction, data)
        anchor_queue = decode_box(torch.stack(planning_output["anchor_queue"], dim=2))
        period = planning_output["period"]
        return [
            {
                "planning_score": classification[i].sigmoid().cpu(),
                "planning": prediction[i].cpu(),
                "final_planning": final_planning[i].cpu(),
                "ego_period": period[i].cpu(),
                "ego_anchor_queue": anchor_queue[i].cpu(),
            }
            for i in range(bs)
        ]

    def select(
        self, det_output: dict, motion_output: dict, plan_cls: Tensor, plan_reg: Tensor, data: dict
    ) -> Tuple[Tensor, Tensor]:
        """
        Args:
            plan_cls: [B, 3, M_e] logits; plan_reg: [B, 3, M_e, T_e, 2] positions.
            data: ``gt_ego_fut_cmd`` [B, 3] one-hot (the benchmark feeds the GT command at test time).
        Returns:
            logits [B, 3, M_e] with the command's row rescored, final plan [B, T_e, 2].
        """
        bs = plan_cls.shape[0]
        bs_indices = torch.arange(bs, device=plan_cls.device)
        cmd = data["gt_ego_fut_cmd"].argmax(dim=-1)
        plan_cls_full = plan_cls.detach().clone()
        plan_cls = plan_cls[bs_indices, cmd]
        plan_reg = plan_reg[bs_indices, cmd]
        if self.use_rescore:
            plan_cls = self.rescore(
                plan_cls,
                plan_reg,
                motion_output["classification"][-1].sigmoid(),
                motion_output["prediction"][-1],
                det_output["prediction"][-1],
                det_output["classification"][-1].sigmoid().max(dim=-1).values,
            )
        plan_cls_full[bs_indices, cmd] = plan_cls
        mode_idx = plan_cls.argmax(dim=-1)
        return plan_cls_full, plan_reg[bs_indices, mode_idx]

    def rescore(
        self,
        plan_cls: Tensor,
        plan_reg: Tensor,
        motion_cls: Tensor,
        motion_reg: Tensor,
        det_anchors: Tensor,
        det_confidence: Tensor,
        score_thresh: float = 0.5,
        static_dis_thresh: float = 0.5,
        dim_scale: float = 1.1,
        num_motion_mode: int = 1,
        offset: float = 0.5,
    ) -> Tensor:
        """Add -999 to every ego mode whose box hits a confident agent at some future step.

        Args:
            plan_cls: [B, M_e]; plan_reg: [B, M_e, T_e, 2] ego positions.
            motion_cls: [B, A, M] mode probabilities; motion_reg: [B, A, M, T, 2] displacements.
            det_anchors: [B, A, 11] det boxes; det_confidence: [B, A].
        Returns:
            rescored logits [B, M_e] (unchanged where every mode collides).
        """
        ts = self.ego_fut_ts
        # boxes as (x, y, w, l, yaw): height and z never matter for the 2-D test
        ego_xy = _prepend_origin(plan_reg)
        ego_size = plan_reg.new_tensor(EGO_SIZE[:2]) * dim_scale
        ego_yaw = _trajectory_yaw(ego_xy, plan_reg.new_tensor(math.pi / 2), static_dis_thresh)
        ego_box = torch.cat([ego_xy, ego_size.expand(*ego_xy.shape[:-1], 2), ego_yaw[..., None]], dim=-1)

        centre = det_anchors[..., [X, Y]]
        motion_xy = _prepend_origin(motion_reg[..., :ts, :].cumsum(dim=-2)) + centre[:, :, None, None]
        mode_idx = motion_cls.topk(num_motion_mode, dim=-1).indices
        motion_xy = torch.gather(motion_xy, 2, mode_idx[..., None, None].expand(-1, -1, -1, ts + 1, 2))
        box_yaw = torch.atan2(det_anchors[..., SIN_YAW], det_anchors[..., COS_YAW])
        motion_yaw = _trajectory_yaw(motion_xy, box_yaw[..., None], static_dis_thresh)
        motion_size = det_anchors[..., [W, L]].exp()[:, :, None, None].expand(*motion_xy.shape[:-1], 2)
        motion_box = torch.cat([motion_xy, motion_size, motion_yaw[..., None]], dim=-1)
        # unconfident agents are sent far away so that they never collide
        far = (det_confidence < score_thresh)[:, :, None, None, None]
        motion_box = motion_box.masked_fill(far, 1e6)

        ego_box = ego_box[..., 1:, :]  # [B, M_e, T_e, 5]
        motion_box = motion_box[..., 1:, :]  # [B, A, m, T_e, 5]
        if self.fix_ego_offset:
            heading = ego_box[..., 4:5]
            shift = offset * torch.cat([torch.cos(heading), torch.sin(heading)], dim=-1)
            ego_box = torch.cat([ego_box[..., :2] + shift, ego_box[..., 2:]], dim=-1)
        col = check_collision(ego_box[:, :, None, None], motion_box[:, None])  # [B, M_e, A, m, T_e]
        if not self.fix_ego_offset:
            col = _upstream_offset_rows(col, ego_box, motion_box, offset)

        col = col.flatten(2).any(dim=-1)
        col = col & ~col.all(dim=-1, keepdim=True)
        return plan_cls + col.to(plan_cls) * -999


def _prepend_origin(traj: Tensor) -> Tensor:
    """[..., T, 2] -> [..., T + 1, 2] starting at (0, 0)."""
    return torch.cat([traj.new_zeros(traj.shape[:-2] + (1, 2)), traj], dim=-2)


def _trajectory_yaw(traj: Tensor, start_yaw: Tensor, static_dis_thresh: float) -> Tensor:
    """Heading along a trajectory [..., T + 1, 2] -> [..., T + 1].

    Step 0 takes ``start_yaw``, interior steps the central difference, the last step the backward
    difference; trajectories moving less than ``static_dis_thresh`` metres keep ``start_yaw`` throughout.
    """
    delta = torch.cat([traj[..., 2:, :] - traj[..., :-2, :], traj[..., -1:, :] - traj[..., -2:-1, :]], dim=-2)
    moving_yaw = torch.atan2(delta[..., 1], delta[..., 0])
    start = start_yaw.expand(traj.shape[:-2])[..., None]
    yaw = torch.cat([start, moving_yaw], dim=-1)
    static = torch.linalg.norm(traj[..., -1, :] - traj[..., 0, :], dim=-1) < static_dis_thresh
    return torch.where(static[..., None], start, yaw)


def _corners_inside(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Whether any of the 4 corners of ``boxes2`` lies inside ``boxes1`` (inclusive), broadcasting [..., 5]."""
    half = boxes2[..., 2:4, None] / 2
    signs = boxes2.new_tensor([[-1.0, -1.0, 1.0, 1.0], [-1.0, 1.0, 1.0, -1.0]])
    local = half * signs  # [..., 2, 4]: corner offsets along box2's heading and across it
    cos2, sin2 = torch.cos(boxes2[..., 4:5]), torch.sin(boxes2[..., 4:5])
    corner_x = boxes2[..., 0:1] + local[..., 0, :] * cos2 - local[..., 1, :] * sin2
    corner_y = boxes2[..., 1:2] + local[..., 0, :] * sin2 + local[..., 1, :] * cos2
    rel_x = corner_x - boxes1[..., 0:1]
    rel_y = corner_y - boxes1[..., 1:2]
    cos1, sin1 = torch.cos(boxes1[..., 4:5]), torch.sin(boxes1[..., 4:5])
    u = rel_x * cos1 + rel_y * sin1
    v = rel_y * cos1 - rel_x * sin1
    inside = (u.abs() <= boxes1[..., 2:3] / 2) & (v.abs() <= boxes1[..., 3:4] / 2)
    return inside.any(dim=-1)


def check_collision(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Rough 2-D overlap test: a corner of one box inside the other, either way round.

    Args:
        boxes1, boxes2: broadcastable [..., 5] boxes (x, y, w, l, yaw); w along the heading.
    Returns:
        [...] bool.
    """
    return _corners_inside(boxes1, boxes2) | _corners_inside(boxes2, boxes1)


def _upstream_offset_rows(col: Tensor, ego_box: Tensor, motion_box: Tensor, offset: float) -> Tensor:
    """Redo the two pairs upstream's misindexed offset touches (rows 0 and 1 of its flattened pair list).

    Upstream flattens pairs in (B, A, m, M_e, T_e) order and adds offset * cos / sin of every field of
    row 6 to every field of rows 0 / 1 respectively.
    """
    bs, num_anchor, num_mode, ts = motion_box.shape[:4]
    num_ego_mode = ego_box.shape[1]
    shape = (bs, num_anchor, num_mode, num_ego_mode, ts)

    def unravel(row: int) -> Tuple[int, ...]:
        index = []
        for size in reversed(shape):
            row, rem = divmod(row, size)
            index.append(rem)
        return tuple(reversed(index))

    if bs * num_anchor * num_mode * num_ego_mode * ts <= 6:
        return col
    b6, _, _, e6, t6 = unravel(6)
    source = ego_box[b6, e6, t6]
    col = col.clone()
    for row, wave in ((0, torch.cos), (1, torch.sin)):
        b, a, m, e, t = unravel(row)
        perturbed = ego_box[b, e, t] + offset * wave(source)
        col[b, e, a, m, t] = check_collision(perturbed, motion_box[b, a, m, t])
    return col
