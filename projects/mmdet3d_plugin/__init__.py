"""SparseDrive plugin: importing it registers every model, dataset, pipeline, hook and op with mmcv/mmdet."""
from . import apis, core, datasets, models, ops  # noqa: F401
