"""SparseDrive detector: grid mask -> image backbone -> FPN -> (depth branch) -> SparseDriveHead."""
from inspect import signature
from typing import Dict, List, Optional, Tuple, Union

from mmcv.cnn.bricks.registry import PLUGIN_LAYERS
from mmcv.runner import auto_fp16, force_fp32
from mmcv.utils import build_from_cfg
import torch
from mmdet.models import DETECTORS, BaseDetector, build_backbone, build_head, build_neck
from torch import Tensor

from .. import device, ops
from .grid_mask import GridMask

__all__ = ["SparseDrive"]

FeatureMaps = Union[List[Tensor], List]


@DETECTORS.register_module()
class SparseDrive(BaseDetector):
    """End-to-end sparse perception (and planning) from multi-camera images.

    Args:
        img_backbone: backbone config (mmdet ``ResNet``; its own ``pretrained`` key loads weights).
        head: ``SparseDriveHead`` config.
        img_neck: neck config (mmdet ``FPN``) or None.
        init_cfg: mmcv init config.
        train_cfg / test_cfg: unused, kept for mmdet's interface.
        pretrained: backbone checkpoint path; forwarded into the backbone config (upstream assigns it
            to an undefined name and crashes).
        use_grid_mask: apply ``GridMask`` to the images during training.
        use_deformable_func: flatten the feature maps once per forward into the triple that
            ``ops.deformable_aggregation`` consumes.
        depth_branch: PLUGIN_LAYERS config of the auxiliary depth head, or None.
        grid_mask_seed: seed of the grid mask's private generator (None: torch's global RNG).
    """

    def __init__(
        self,
        img_backbone: dict,
        head: dict,
        img_neck: Optional[dict] = None,
        init_cfg: Optional[dict] = None,
        train_cfg: Optional[dict] = None,
        test_cfg: Optional[dict] = None,
        pretrained: Optional[str] = None,
        use_grid_mask: bool = True,
        use_deformable_func: bool = False,
        depth_branch: Optional[dict] = None,
        grid_mask_seed: Optional[int] = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if pretrained is not None:
            img_backbone = dict(img_backbone, pretrained=pretrained)
        self.img_backbone = build_backbone(img_backbone)
        self.img_neck = build_neck(img_neck) if img_neck is not None else None
        self.head = build_head(head)
        self.use_grid_mask = use_grid_mask
        self.use_deformable_func = use_deformable_func
        self.depth_branch = build_from_cfg(depth_branch, PLUGIN_LAYERS) if depth_branch is not None else None
        if use_grid_mask:
            self.grid_mask = GridMask(
                True, True, rotate=1, offset=False, ratio=0.5, mode=1, prob=0.7, seed=grid_mask_seed
            )
        self._backbone_takes_metas = "metas" in signature(self.img_backbone.forward).parameters
        # the config's activation checkpointing per backbone module; device.activation_checkpointing decides
        # per backend whether it runs (it saves accelerator memory and only costs time on a CPU)
        self._configured_with_cp = [
            (module, module.with_cp)
            for module in self.img_backbone.modules()
            if isinstance(getattr(module, "with_cp", None), bool)
        ]

    def _apply_backend_settings(self, img: Tensor) -> Tensor:
        """Backend-dependent ways to run the backbone that do not change its results (within float rounding).

        Sets every backbone module's ``with_cp`` and returns ``img`` [B*N, 3, H, W] in the memory format
        the backbone and neck should run in (convolutions keep the format of their input).
        """
        for module, configured in self._configured_with_cp:
            module.with_cp = device.activation_checkpointing(configured)
        if device.channels_last():
            return img.contiguous(memory_format=torch.channels_last)
        return img

    @auto_fp16(apply_to=("img",), out_fp32=True)
    def extract_feat(
        self, img: Tensor, return_depth: bool = False, metas: Optional[dict] = None
    ) -> Union[FeatureMaps, Tuple[FeatureMaps, Optional[List[Tensor]]]]:
        """Image features of every camera.

        Args:
            img: [B, N, 3, H, W] (or [B, 3, H, W] for one camera), normalised.
            return_depth: also run the depth branch (needs ``metas['focal']`` [B, N] if present).
            metas: data dict.
        Returns:
            feature maps: with ``use_deformable_func`` the triple [col_feats [B, N*sum(h*w), C],
            spatial_shape [N, L, 2], scale_start_index [N, L]], else a list of L maps [B, N, C, h, w];
            plus the depth predictions (list of [B*N, 1, h, w] or None) when ``return_depth``.
        """
        batch_size = img.shape[0]
        if img.dim() == 5:
            num_cams = img.shape[1]
            img = img.flatten(end_dim=1)
        else:
            num_cams = 1
        if self.use_grid_mask:
            img = self.grid_mask(img)
        img = self._apply_backend_settings(img)
        if self._backbone_takes_metas:
            feature_maps = self.img_backbone(img, num_cams, metas=metas)
        else:
            feature_maps = self.img_backbone(img)
        if self.img_neck is not None:
            feature_maps = self.img_neck(feature_maps)
        feature_maps = [feat.reshape((batch_size, num_cams) + feat.shape[1:]) for feat in feature_maps]
        depths = None
        if return_depth and self.depth_branch is not None:
            depths = self.depth_branch(feature_maps, metas.get("focal") if metas is not None else None)
        if self.use_deformable_func:
            feature_maps = ops.feature_maps_format(feature_maps)
        if return_depth:
            return feature_maps, depths
        return feature_maps

    @force_fp32(apply_to=("img",))
    def forward(self, img: Union[Tensor, List[Tensor]], **data) -> Union[Dict[str, Tensor], List[dict]]:
        """Losses in training mode, per-sample results otherwise."""
        if self.training:
            return self.forward_train(img, **data)
        return self.forward_test(img, **data)

    def forward_train(self, img: Tensor, **data) -> Dict[str, Tensor]:
        """Loss dict: the heads' terms plus ``loss_dense_depth`` when depth GT is given."""
        feature_maps, depths = self.extract_feat(img, True, data)
        model_outs = self.head(feature_maps, data)
        output = self.head.loss(model_outs, data)
        if depths is not None and "gt_depth" in data:
            output["loss_dense_depth"] = self.depth_branch.loss(depths, data["gt_depth"])
        return output

    def forward_test(self, img: Union[Tensor, List[Tensor]], **data) -> List[dict]:
        """Per-sample results; a list of images means the test-time-augmentation form (see ``aug_test``)."""
        if isinstance(img, list):
            return self.aug_test(img, **data)
        return self.simple_test(img, **data)

    def simple_test(self, img: Tensor, **data) -> List[dict]:
        """[{"img_bbox": merged per-sample result}] for each sample."""
        feature_maps = self.extract_feat(img)
        model_outs = self.head(feature_maps, data)
        results = self.head.post_process(model_outs, data)
        return [{"img_bbox": result} for result in results]

    def aug_test(self, img: List[Tensor], **data) -> List[dict]:
        """Test-time-augmentation wrapper form without augmentation: element 0 of every list."""
        data = {key: value[0] if isinstance(value, list) else value for key, value in data.items()}
        return self.simple_test(img[0], **data)
