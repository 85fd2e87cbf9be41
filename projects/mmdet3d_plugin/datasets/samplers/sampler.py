"""Registry of the samplers a config can name (``shuffler_sampler`` / ``nonshuffler_sampler``)."""
from typing import Dict, Optional

from mmcv.utils import Registry, build_from_cfg

SAMPLER = Registry("sampler")


def build_sampler(cfg: Dict, default_args: Optional[Dict] = None):
    """Build a sampler from ``cfg`` (``type`` + arguments), filling the rest from ``default_args``."""
    return build_from_cfg(cfg, SAMPLER, default_args)
