"""Temporal instance memory of a sparse head: learnable anchors, cached instances, track ids."""
import os
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.registry import PLUGIN_LAYERS
from mmcv.utils import build_from_cfg
from torch import Tensor, nn

__all__ = ["InstanceBank", "topk", "move_state"]


def move_state(state, device: Union[str, torch.device]):
    """Copy of ``state`` (nested dicts / lists / tuples of tensors, arrays, numbers) with tensors on ``device``."""
    if isinstance(state, Tensor):
        return state.detach().to(device, copy=True)
    if isinstance(state, dict):
        return {key: move_state(value, device) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(move_state(value, device) for value in state)
    if isinstance(state, np.ndarray):
        return state.copy()
    return state


def topk(confidence: Tensor, k: int, *inputs: Tensor) -> Tuple[Tensor, List[Tensor]]:
    """Keep the k most confident instances of every sample, sorted descending.

    Args:
        confidence: [B, A].
        k: number kept.
        inputs: tensors [B, A, ...] gathered with the same indices.
    Returns:
        (top confidences [B, k], list of gathered inputs each reshaped to [B, k, -1]).
    """
    confidence, indices = torch.topk(confidence, k, dim=1)
    outputs = []
    for x in inputs:
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        outputs.append(torch.gather(flat, 1, indices[..., None].expand(-1, -1, flat.shape[-1])))
    return confidence, outputs


def read_anchor_file(path: str, owner: str) -> np.ndarray:
    """Load a k-means anchor ``.npy``; a missing or unreadable file raises ``OSError`` naming it and ``owner``."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{owner}: {path} is missing (looked at {os.path.abspath(path)}); run the k-means tools "
            "(sh test/preprocess.sh) first, from the repository root."
        )
    try:
        return np.load(path)
    except (ValueError, EOFError, OSError) as exc:
        raise OSError(
            f"{owner}: {path} cannot be read ({type(exc).__name__}: {exc}; truncated?); "
            "re-run the k-means tools (sh test/preprocess.sh)."
        ) from exc


def _load_anchor(anchor: Union[str, Sequence, np.ndarray]) -> np.ndarray:
    if isinstance(anchor, str):
        anchor = read_anchor_file(anchor, "InstanceBank.anchor")
    anchor = np.asarray(anchor, dtype=np.float32)
    if anchor.ndim == 3:  # map polylines [A, P, 2] -> [A, P*2]
        anchor = anchor.reshape(anchor.shape[0], -1)
    return anchor


@PLUGIN_LAYERS.register_module()
class InstanceBank(nn.Module):
    """Learnable anchors plus the instances carried over from the previous frame.

    Runtime state (plain attributes, not saved): cached_feature [B, K, C], cached_anchor [B, K, S],
    metas (previous frame), mask [B] (temporal link valid), confidence [B, K], temp_confidence [B, A],
    instance_id [B, A], prev_id (next free track id; a 0-dim tensor once ids were handed out).

    Args:
        num_anchor: number of anchors A (truncates the anchor file).
        embed_dims: instance feature width C.
        anchor: [A, S] array, nested list, or path to a .npy file ([A, P, 2] map files are flattened).
        anchor_handler: config of a keypoint generator providing ``anchor_projection``.
        num_temp_instances: K instances cached per frame (<= 0 disables the temporal cache).
        default_time_interval: dt in seconds used on the first frame and where dt is 0 or invalid.
        confidence_decay: factor on the previous confidence of propagated instances.
        anchor_grad: anchors are trainable.
        feat_grad: instance features are trainable.
        max_time_interval: seconds; a larger gap between frames starts a new scene.
    """

    def __init__(
        self,
        num_anchor: int,
        embed_dims: int,
        anchor: Union[str, Sequence, np.ndarray],
        anchor_handler: Optional[dict] = None,
        num_temp_instances: int = 0,
        default_time_interval: float = 0.5,
        confidence_decay: float = 0.6,
        anchor_grad: bool = True,
        feat_grad: bool = True,
        max_time_interval: float = 2,
    ) -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.num_temp_instances = num_temp_instances
        self.default_time_interval = default_time_interval
        self.confidence_decay = confidence_decay
        self.max_time_interval = max_time_interval
        if anchor_handler is not None:
            anchor_handler = build_from_cfg(anchor_handler, PLUGIN_LAYERS)
            if not hasattr(anchor_handler, "anchor_projection"):
                raise TypeError(f"InstanceBank.anchor_handler: {type(anchor_handler).__name__} has no anchor_projection.")
        self.anchor_handler = anchor_handler
        anchor = _load_anchor(anchor)[:num_anchor]
        self.num_anchor = len(anchor)
        self.anchor = nn.Parameter(torch.tensor(anchor), requires_grad=anchor_grad)
        self.anchor_init = anchor
        self.instance_feature = nn.Parameter(torch.zeros(self.num_anchor, embed_dims), requires_grad=feat_grad)
        self.reset()

    def init_weight(self) -> None:
        """Reset anchors to the file values; xavier-init the instance features if they are trainable."""
        self.anchor.data = self.anchor.data.new_tensor(self.anchor_init)
        if self.instance_feature.requires_grad:
            nn.init.xavier_uniform_(self.instance_feature.data, gain=1)

    def reset(self) -> None:
        self.cached_feature = None
        self.cached_anchor = None
        self.metas = None
        self.mask = None
        self.confidence = None
        self.temp_confidence = None
        self.instance_id = None
        self.prev_id = 0

    # what the next frame reads; saved in checkpoints so a resumed run continues the same sequences
    TEMPORAL_ATTRS = ("cached_feature", "cached_anchor", "metas", "mask", "confidence", "temp_confidence",
                      "instance_id", "prev_id")

    def temporal_state(self) -> dict:
        """CPU copies of the cache (for exact resume)."""
        return {name: move_state(getattr(self, name), "cpu") for name in self.TEMPORAL_ATTRS}

    def load_temporal_state(self, state: dict, device: Union[str, torch.device]) -> None:
        """Restore a cache saved by ``temporal_state`` onto ``device``."""
        for name in self.TEMPORAL_ATTRS:
            setattr(self, name, move_state(state[name], device))

    def _temp2cur(self, metas: dict, like: Tensor) -> Tensor:
        """Transforms from the cached frame's LiDAR frame to the current one, [B, 4, 4]."""
        mats = np.stack(
            [
                cur["T_global_inv"] @ prev["T_global"]
                for cur, prev in zip(metas["img_metas"], self.metas["img_metas"])
            ]
        )
        return like.new_tensor(mats)

    def get(
        self, batch_size: int, metas: Optional[dict] = None, dn_metas: Optional[dict] = None
    ) -> Tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor], Tensor]:
        """Instances for the current frame.

        Args:
            batch_size: B.
            metas: needs ``timestamp`` [B] (seconds) and ``img_metas`` (per sample ``T_global``,
                ``T_global_inv``, 4x4) when a cache exists.
            dn_metas: temporal denoising state whose ``dn_anchor`` [B, G, D, S] is projected in place.
        Returns:
            instance_feature [B, A, C], anchor [B, A, S], cached feature [B, K, C] or None,
            cached anchor [B, K, S] (projected into the current frame) or None, time interval [B] (s).
        """
        instance_feature = torch.tile(self.instance_feature[None], (batch_size, 1, 1))
        anchor = torch.tile(self.anchor[None], (batch_size, 1, 1))
        if self.cached_anchor is not None and batch_size == self.cached_anchor.shape[0]:
            time_interval = (metas["timestamp"] - self.metas["timestamp"]).to(dtype=instance_feature.dtype)
            self.mask = torch.abs(time_interval) <= self.max_time_interval
            if self.anchor_handler is not None:
                t_temp2cur = self._temp2cur(metas, self.cached_anchor)
                self.cached_anchor = self.anchor_handler.anchor_projection(
                    self.cached_anchor, [t_temp2cur], time_intervals=[-time_interval]
                )[0]
                if dn_metas is not None and batch_size == dn_metas["dn_anchor"].shape[0]:
                    num_dn_group, num_dn = dn_metas["dn_anchor"].shape[1:3]
                    dn_anchor = self.anchor_handler.anchor_projection(
                        dn_metas["dn_anchor"].flatten(1, 2), [t_temp2cur], time_intervals=[-time_interval]
                    )[0]
                    dn_metas["dn_anchor"] = dn_anchor.reshape(batch_size, num_dn_group, num_dn, -1)
            time_interval = torch.where(
                (time_interval != 0) & self.mask,
                time_interval,
                time_interval.new_tensor(self.default_time_interval),
            )
        else:
            self.reset()
            time_interval = instance_feature.new_full((batch_size,), self.default_time_interval)
        return instance_feature, anchor, self.cached_feature, self.cached_anchor, time_interval

    def update(self, instance_feature: Tensor, anchor: Tensor, confidence: Tensor) -> Tuple[Tensor, Tensor]:
        """Replace the weakest current instances by the cached ones (per sample, where the link is valid).

        Args:
            instance_feature: [B, A (+ denoising), C]; anchor: [B, A (+ dn), S]; confidence: logits [B, A (+ dn), num_cls].
        Returns:
            (instance_feature, anchor) with the first K rows the cached instances, then the top A-K current ones.
        """
        if self.cached_feature is None:
            return instance_feature, anchor
        num_dn = instance_feature.shape[1] - self.num_anchor
        if num_dn > 0:
            dn_instance_feature = instance_feature[:, -num_dn:]
            dn_anchor = anchor[:, -num_dn:]
            instance_feature = instance_feature[:, : self.num_anchor]
            anchor = anchor[:, : self.num_anchor]
            confidence = confidence[:, : self.num_anchor]
        num_select = self.num_anchor - self.num_temp_instances
        _, (selected_feature, selected_anchor) = topk(
            confidence.max(dim=-1).values, num_select, instance_feature, anchor
        )
        selected_feature = torch.cat([self.cached_feature, selected_feature], dim=1)
        selected_anchor = torch.cat([self.cached_anchor, selected_anchor], dim=1)
        keep = self.mask[:, None, None]
        instance_feature = torch.where(keep, selected_feature, instance_feature)
        anchor = torch.where(keep, selected_anchor, anchor)
        self.confidence = torch.where(self.mask[:, None], self.confidence, self.confidence.new_tensor(0))
        if self.instance_id is not None:
            self.instance_id = torch.where(self.mask[:, None], self.instance_id, self.instance_id.new_tensor(-1))
        if num_dn > 0:
            instance_feature = torch.cat([instance_feature, dn_instance_feature], dim=1)
            anchor = torch.cat([anchor, dn_anchor], dim=1)
        return instance_feature, anchor

    def cache(
        self,
        instance_feature: Tensor,
        anchor: Tensor,
        confidence: Tensor,
        metas: Optional[dict] = None,
        feature_maps: Optional[List[Tensor]] = None,
    ) -> None:
        """Keep the K most confident final instances (detached) for the next frame.

        Propagated instances (the first K rows) keep max(decayed previous confidence, current confidence).

        Args:
            instance_feature: [B, A, C]; anchor: [B, A, S]; confidence: logits [B, A, num_cls]; metas: this frame's.
            feature_maps: unused (upstream's signature).
        """
        if self.num_temp_instances <= 0:
            return
        instance_feature = instance_feature.detach()
        anchor = anchor.detach()
        self.metas = metas
        confidence = confidence.detach().max(dim=-1).values.sigmoid()
        if self.confidence is not None:
            k = self.num_temp_instances
            confidence = torch.cat(
                [torch.maximum(self.confidence * self.confidence_decay, confidence[:, :k]), confidence[:, k:]],
                dim=1,
            )
        self.temp_confidence = confidence
        self.confidence, (self.cached_feature, self.cached_anchor) = topk(
            confidence, self.num_temp_instances, instance_feature, anchor
        )

    def get_instance_id(
        self, confidence: Tensor, anchor: Optional[Tensor] = None, threshold: Optional[float] = None
    ) -> Tensor:
        """Track ids: propagated instances keep theirs, every other (confident enough) instance gets a new one.

        New ids are consecutive from ``prev_id`` in row-major (sample, instance) order, computed on the
        device without a host sync.

        Args:
            confidence: logits [B, A, num_cls].
            anchor: unused (upstream's signature).
            threshold: minimum sigmoid score for a new id (None: every instance).
        Returns:
            ids [B, A] int64, -1 where none was assigned.
        """
        confidence = confidence.max(dim=-1).values.sigmoid()
        instance_id = torch.full(confidence.shape, -1, dtype=torch.long, device=confidence.device)
        if self.instance_id is not None and self.instance_id.shape[0] == instance_id.shape[0]:
            instance_id[:, : self.instance_id.shape[1]] = self.instance_id
        mask = instance_id < 0
        if threshold is not None:
            mask = mask & (confidence >= threshold)
        order = torch.cumsum(mask.flatten().long(), dim=0).reshape(mask.shape) - 1
        instance_id = torch.where(mask, order + self.prev_id, instance_id)
        self.prev_id = self.prev_id + mask.sum()
        self.update_instance_id(instance_id, confidence)
        return instance_id

    def update_instance_id(self, instance_id: Tensor, confidence: Optional[Tensor] = None) -> None:
        """Store the ids of the instances ``cache`` kept (same top-k), padded with -1 to A."""
        if self.temp_confidence is None:
            temp_conf = confidence.max(dim=-1).values if confidence.dim() == 3 else confidence
        else:
            temp_conf = self.temp_confidence
        kept = topk(temp_conf, self.num_temp_instances, instance_id)[1][0].squeeze(-1)
        self.instance_id = F.pad(kept, (0, self.num_anchor - self.num_temp_instances), value=-1)
