"""Interface of the target samplers (matching + denoising) used by the Sparse4D heads."""
from abc import ABC, abstractmethod
from typing import Any, List, Optional, Tuple

from torch import Tensor

__all__ = ["BaseTargetWithDenoising"]


class BaseTargetWithDenoising(ABC):
    """Match predictions to ground truth; optionally build noisy GT copies (denoising) and carry some over time.

    Args:
        num_dn_groups: groups of noisy GT instances added in training (0 disables denoising).
        num_temp_dn_groups: how many of those groups are cached for the next frame.
    """

    def __init__(self, num_dn_groups: int = 0, num_temp_dn_groups: int = 0) -> None:
        self.num_dn_groups = num_dn_groups
        self.num_temp_dn_groups = num_temp_dn_groups
        self.dn_metas: Optional[dict] = None

    @abstractmethod
    def sample(self, cls_pred: Tensor, box_pred: Tensor, cls_target: List[Tensor], box_target: List[Tensor]) -> Any:
        """Hungarian-match predictions with GT; return per-prediction targets and regression weights."""

    def get_dn_anchors(
        self, cls_target: List[Tensor], box_target: List[Tensor], gt_instance_id: Optional[List[Tensor]] = None
    ) -> Optional[Tuple]:
        """Noisy GT anchors for ``num_dn_groups`` groups, or None when denoising is off."""
        return None

    def update_dn(self, instance_feature: Tensor, anchor: Tensor, *args: Any) -> Optional[Tuple]:
        """Insert the cached temporal noisy instances (``dn_metas``) into the current ones."""
        return None

    def cache_dn(
        self,
        dn_instance_feature: Tensor,
        dn_anchor: Tensor,
        dn_cls_target: Tensor,
        valid_mask: Tensor,
        dn_id_target: Optional[Tensor],
    ) -> None:
        """Keep the first ``num_temp_dn_groups`` groups of noisy anchors for the next frame."""
        if self.num_temp_dn_groups < 0:
            return
        self.dn_metas = dict(dn_anchor=dn_anchor[:, : self.num_temp_dn_groups])
