"""Temporal memory of the motion-planning head: per-agent and ego feature/anchor queues."""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmcv.cnn.bricks.registry import PLUGIN_LAYERS
from torch import Tensor, nn

from projects.mmdet3d_plugin.core.box3d import VY
from projects.mmdet3d_plugin.models.instance_bank import move_state

__all__ = ["InstanceQueue", "select_front_stride32_map"]

# ego box: 0.5 m ahead of the LiDAR origin, centre at half height above the ground (-1.84 m),
# size 4.08 x 1.73 x 1.56 m, heading +Y (sin = 1, cos = 0), at rest.
EGO_ANCHOR = [0.0, 0.5, -1.84 + 1.56 / 2, np.log(4.08), np.log(1.73), np.log(1.56), 1.0, 0.0, 0.0, 0.0, 0.0]
FORWARD_SPEED = 6  # index of the forward velocity in the 10-value ego status


def select_front_stride32_map(feature_maps: Sequence[Tensor]) -> Tensor:
    """Take the coarsest feature map of camera 0 (front), from either feature format.

    Args:
        feature_maps: per-level maps ``[B, N, C, H_l, W_l]`` (pure-PyTorch path), or the flattened triple
            ``(features [B, N * sum(H_l * W_l), C], spatial_shape [N, L, 2], scale_start_index [N, L])``
            that the deformable-aggregation op consumes (camera-major, level-minor blocks).
    Returns:
        [B, C, H, W] map of the last level of camera 0.
    """
    if feature_maps[0].dim() == 5:
        return feature_maps[-1][:, 0]
    features, spatial_shape, scale_start_index = feature_maps[:3]
    height, width = (int(v) for v in spatial_shape[0, -1].tolist())
    start = int(scale_start_index[0, -1])
    block = features[:, start : start + height * width]
    return block.transpose(1, 2).reshape(features.shape[0], features.shape[2], height, width)


@PLUGIN_LAYERS.register_module()
class InstanceQueue(nn.Module):
    """Keeps the last ``queue_length`` frames of every tracked agent and of the ego vehicle.

    Agents are re-aligned every frame by track id (ids from the det instance bank); the ego instance is
    encoded from the front camera's stride-32 feature map. Runtime state lives in plain attributes
    (not in the state dict): previous metas, ids and confidences, ``period`` [B, A] (frames tracked),
    feature / anchor queues (lists of [B, A, C] / [B, A, 11], oldest first), previous ego status
    [B, 1, 10], ``ego_period`` [B, 1], ego feature / anchor queues ([B, 1, C] / [B, 1, 11]).

    Args:
        embed_dims: feature width C.
        queue_length: frames kept, history plus current.
        tracking_threshold: a previous instance must have confidence above this to be matched.
        feature_map_scale: (H, W) of the stride-32 map; the ego encoder pools over half of it.
    """

    def __init__(
        self,
        embed_dims: int,
        queue_length: int = 0,
        tracking_threshold: float = 0,
        feature_map_scale: Optional[Tuple[float, float]] = None,
    ) -> None:
        super().__init__()
        if feature_map_scale is None:
            raise ValueError("InstanceQueue.feature_map_scale: give (H, W) of the stride-32 feature map.")
        self.embed_dims = embed_dims
        self.queue_length = queue_length
        self.tracking_threshold = tracking_threshold
        kernel_size = tuple(int(x / 2) for x in feature_map_scale)
        # no activation between the first BN and the second conv, as upstream
        self.ego_feature_encoder = nn.Sequential(
            nn.Conv2d(embed_dims, embed_dims, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(embed_dims),
            nn.Conv2d(embed_dims, embed_dims, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(embed_dims),
            nn.ReLU(),
            nn.AvgPool2d(kernel_size),
        )
        self.ego_anchor = nn.Parameter(torch.tensor([EGO_ANCHOR], dtype=torch.float32), requires_grad=False)
        self.reset()

    def reset(self) -> None:
        self.metas = None
        self.prev_instance_id = None
        self.prev_confidence = None
        self.period = None
        self.instance_feature_queue: List[Tensor] = []
        self.anchor_queue: List[Tensor] = []
        self.prev_ego_status = None
        self.ego_period = None
        self.ego_feature_queue: List[Tensor] = []
        self.ego_anchor_queue: List[Tensor] = []

    # what the next frame reads; saved in checkpoints so a resumed run continues the same sequences
    TEMPORAL_ATTRS = ("metas", "prev_instance_id", "prev_confidence", "period", "instance_feature_queue",
                      "anchor_queue", "prev_ego_status", "ego_period", "ego_feature_queue", "ego_anchor_queue")

    def temporal_state(self) -> dict:
        """CPU copies of the queues (for exact resume)."""
        return {name: move_state(getattr(self, name), "cpu") for name in self.TEMPORAL_ATTRS}

    def load_temporal_state(self, state: dict, device) -> None:
        """Restore queues saved by ``temporal_state`` onto ``device``."""
        for name in self.TEMPORAL_ATTRS:
            setattr(self, name, move_state(state[name], device))

    def get(
        self,
        det_output: dict,
        feature_maps: Sequence[Tensor],
        metas: dict,
        batch_size: int,
        mask: Optional[Tensor],
        anchor_handler: Optional[nn.Module],
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Update the queues with the current frame and return the ego instance and the histories.

        Args:
            det_output: det head output (``instance_feature`` [B, A, C], ``prediction`` list of [B, A, 11],
                ``instance_id`` [B, A]).
            feature_maps: image features in either format (see :func:`select_front_stride32_map`).
            metas: batch metas with ``img_metas[i]["T_global"]`` / ``["T_global_inv"]`` (4x4 numpy).
            batch_size: B; a change resets the queues.
            mask: [B] bool, True where the det instance bank kept its temporal link (None: all True).
            anchor_handler: moves queued anchors into the current frame (None: no motion compensation).
        Returns:
            ego_feature [B, 1, C], ego_anchor [B, 1, 11], temporal features [B, A+1, T, C],
            temporal anchors [B, A+1, T, 11], temporal mask [B, A+1, T] (True = ignore; oldest first).
        """
        if self.period is not None and batch_size == self.period.shape[0]:
            if anchor_handler is not None:
                self._project_queues(metas, anchor_handler)
        else:
            self.reset()
        if mask is None:
            mask = torch.ones(batch_size, dtype=torch.bool, device=det_output["instance_feature"].device)

        self.prepare_motion(det_output)
        ego_feature, ego_anchor = self.prepare_planning(feature_maps, mask, batch_size)

        temp_instance_feature = torch.cat(
            [torch.stack(self.instance_feature_queue, dim=2), torch.stack(self.ego_feature_queue, dim=2)], dim=1
        )
        temp_anchor = torch.cat(
            [torch.stack(self.anchor_queue, dim=2), torch.stack(self.ego_anchor_queue, dim=2)], dim=1
        )
        period = torch.cat([self.period, self.ego_period], dim=1)
        queue_len = len(self.anchor_queue)
        # slot t (oldest first) needs the instance tracked for queue_len - t frames; the newest slot needs 1
        age = torch.arange(queue_len, 0, -1, device=temp_anchor.device)
        temp_mask = age > period[..., None]
        return ego_feature, ego_anchor, temp_instance_feature, temp_anchor, temp_mask

    def _project_queues(self, metas: dict, anchor_handler: nn.Module) -> None:
        """Move every queued agent and ego anchor from the previous frame into the current one."""
        reference = self.anchor_queue[0]
        T_temp2cur = reference.new_tensor(
            np.stack(
                [
                    x["T_global_inv"] @ self.metas["img_metas"][i]["T_global"]
                    for i, x in enumerate(metas["img_metas"])
                ]
            )
        )
        queues = self.anchor_queue + self.ego_anchor_queue
        sizes = [q.shape[1] for q in queues]
        projected = anchor_handler.anchor_projection(torch.cat(queues, dim=1), [T_temp2cur])[0]
        projected = list(projected.split(sizes, dim=1))
        num_agent_entries = len(self.anchor_queue)
        self.anchor_queue = projected[:num_agent_entries]
        self.ego_anchor_queue = projected[num_agent_entries:]

    def prepare_motion(self, det_output: dict) -> None:
        """Re-index the agent queues to the current instance order by track id, then append this frame."""
        instance_feature = det_output["instance_feature"]
        det_anchors = det_output["prediction"][-1]

        if self.period is None:
            self.period = instance_feature.new_zeros(instance_feature.shape[:2], dtype=torch.long)
        else:
            match = det_output["instance_id"][..., None] == self.prev_instance_id[:, None]
            if self.tracking_threshold > 0:
                match = match & (self.prev_confidence > self.tracking_threshold)[:, None]
            # One matmul re-aligns all queued features, anchors and periods: match [B, A, A_prev] is 0/1,
            # so this equals upstream's broadcast multiply-and-sum without its [B, A, A_prev, C] temporary.
            feature_dims = [q.shape[-1] for q in self.instance_feature_queue]
            anchor_dims = [q.shape[-1] for q in self.anchor_queue]
            stacked = torch.cat(
                self.instance_feature_queue + self.anchor_queue + [self.period[..., None].to(instance_feature)],
                dim=-1,
            )
            aligned = torch.bmm(match.to(stacked), stacked)
            parts = aligned.split(feature_dims + anchor_dims + [1], dim=-1)
            num_entries = len(feature_dims)
            self.instance_feature_queue = list(parts[:num_entries])
            self.anchor_queue = list(parts[num_entries : 2 * num_entries])
            self.period = parts[-1][..., 0].round().long()

        self.instance_feature_queue.append(instance_feature.detach())
        self.anchor_queue.append(det_anchors.detach())
        self.period = self.period + 1
        if len(self.instance_feature_queue) > self.queue_length:
            self.instance_feature_queue.pop(0)
            self.anchor_queue.pop(0)
        self.period = torch.clip(self.period, 0, self.queue_length)

    def prepare_planning(
        self, feature_maps: Sequence[Tensor], mask: Tensor, batch_size: int
    ) -> Tuple[Tensor, Tensor]:
        """Encode the ego instance of this frame and append it to the ego queues.

        Returns:
            ego_feature [B, 1, C] (not detached: trains the encoder, neck and backbone),
            ego_anchor [B, 1, 11] with VY = previous predicted forward speed (0 where mask is False).
        """
        feature_map = select_front_stride32_map(feature_maps)
        ego_feature = self.ego_feature_encoder(feature_map)
        ego_feature = ego_feature.flatten(2).transpose(1, 2)
        if ego_feature.shape[1] != 1:
            raise ValueError(
                f"InstanceQueue.feature_map_scale: the ego encoder pooled a {tuple(feature_map.shape[-2:])} map "
                f"to {ego_feature.shape[1]} cells, expected 1; set feature_map_scale to that (H, W)."
            )

        ego_anchor = torch.tile(self.ego_anchor[None], (batch_size, 1, 1))
        if self.prev_ego_status is not None:
            speed = torch.where(mask[:, None], self.prev_ego_status[..., FORWARD_SPEED], 0.0)
            ego_anchor[..., VY] = speed

        if self.ego_period is None:
            self.ego_period = ego_feature.new_zeros((batch_size, 1), dtype=torch.long)
        else:
            self.ego_period = torch.where(mask[:, None], self.ego_period, 0)

        self.ego_feature_queue.append(ego_feature.detach())
        self.ego_anchor_queue.append(ego_anchor.detach())
        self.ego_period = self.ego_period + 1
        if len(self.ego_feature_queue) > self.queue_length:
            self.ego_feature_queue.pop(0)
            self.ego_anchor_queue.pop(0)
        self.ego_period = torch.clip(self.ego_period, 0, self.queue_length)
        return ego_feature, ego_anchor

    def cache_motion(self, instance_feature: Tensor, det_output: dict, metas: dict) -> None:
        """Remember this frame's metas, det confidences and track ids.

        ``instance_feature`` (the refined agent features) is accepted for upstream's signature but not
        stored: the agent queues keep the det head's features, as upstream.
        """
        det_classification = det_output["classification"][-1].detach().sigmoid()
        # only the poses are needed next frame; keeping the whole batch dict would pin its images
        self.metas = {"img_metas": metas["img_metas"]}
        self.prev_confidence = det_classification.max(dim=-1).values
        self.prev_instance_id = det_output["instance_id"]

    def cache_planning(self, ego_feature: Tensor, ego_status: Tensor) -> None:
        """Keep the predicted ego status [B, 1, 10] and swap the newest ego queue entry for the refined feature."""
        self.prev_ego_status = ego_status.detach()
        self.ego_feature_queue[-1] = ego_feature.detach()
