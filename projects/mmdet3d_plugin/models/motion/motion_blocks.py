"""Prediction branches of the motion-planning head: mode scores, trajectories, ego status."""
from typing import Tuple

from mmcv.cnn import Linear, bias_init_with_prob
from mmcv.cnn.bricks.registry import PLUGIN_LAYERS
from mmcv.runner.base_module import BaseModule
from torch import Tensor, nn

from ..blocks import linear_relu_ln

__all__ = ["MotionPlanningRefinementModule", "NUM_COMMANDS", "EGO_STATUS_DIMS"]

NUM_COMMANDS = 3  # driving commands: turn right, turn left, go straight
EGO_STATUS_DIMS = 10  # acceleration (3), angular rate (3), velocity (3), steering angle (1)


def _mlp(embed_dims: int, out_dims: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(embed_dims, embed_dims),
        nn.ReLU(),
        nn.Linear(embed_dims, embed_dims),
        nn.ReLU(),
        nn.Linear(embed_dims, out_dims),
    )


@PLUGIN_LAYERS.register_module()
class MotionPlanningRefinementModule(BaseModule):
    """Decode mode queries into scores and per-step displacements; decode the ego status.

    Predictions are not residual to the anchors: the anchors only shaped the queries.

    Args:
        embed_dims: C.
        fut_ts: agent future steps T (0.5 s each).
        fut_mode: agent modes M.
        ego_fut_ts: ego future steps T_e.
        ego_fut_mode: ego modes per driving command M_e (3 commands, command-major order).
    """

    def __init__(
        self,
        embed_dims: int = 256,
        fut_ts: int = 12,
        fut_mode: int = 6,
        ego_fut_ts: int = 6,
        ego_fut_mode: int = 3,
    ) -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.fut_ts = fut_ts
        self.fut_mode = fut_mode
        self.ego_fut_ts = ego_fut_ts
        self.ego_fut_mode = ego_fut_mode

        self.motion_cls_branch = nn.Sequential(*linear_relu_ln(embed_dims, 1, 2), Linear(embed_dims, 1))
        self.motion_reg_branch = _mlp(embed_dims, fut_ts * 2)
        self.plan_cls_branch = nn.Sequential(*linear_relu_ln(embed_dims, 1, 2), Linear(embed_dims, 1))
        self.plan_reg_branch = _mlp(embed_dims, ego_fut_ts * 2)
        self.plan_status_branch = _mlp(embed_dims, EGO_STATUS_DIMS)

    def init_weight(self) -> None:
        """Start both mode classifiers at probability 0.01."""
        bias_init = bias_init_with_prob(0.01)
        nn.init.constant_(self.motion_cls_branch[-1].bias, bias_init)
        nn.init.constant_(self.plan_cls_branch[-1].bias, bias_init)

    def forward(
        self,
        motion_query: Tensor,
        plan_query: Tensor,
        ego_feature: Tensor,
        ego_anchor_embed: Tensor,
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """
        Args:
            motion_query: [B, A, M, C].
            plan_query: [B, 1, 3 * M_e, C].
            ego_feature: [B, 1, C]; ego_anchor_embed: [B, 1, C].
        Returns:
            motion_cls [B, A, M], motion_reg [B, A, M, T, 2], plan_cls [B, 1, 3 * M_e],
            plan_reg [B, 1, 3 * M_e, T_e, 2], plan_status [B, 1, 10]; trajectories are per-step
            displacements in metres.
        """
        bs, num_anchor = motion_query.shape[:2]
        motion_cls = self.motion_cls_branch(motion_query).squeeze(-1)
        motion_reg = self.motion_reg_branch(motion_query).reshape(bs, num_anchor, self.fut_mode, self.fut_ts, 2)
        plan_cls = self.plan_cls_branch(plan_query).squeeze(-1)
        plan_reg = self.plan_reg_branch(plan_query).reshape(
            bs, 1, NUM_COMMANDS * self.ego_fut_mode, self.ego_fut_ts, 2
        )
        plan_status = self.plan_status_branch(ego_feature + ego_anchor_embed)
        return motion_cls, motion_reg, plan_cls, plan_reg, plan_status
