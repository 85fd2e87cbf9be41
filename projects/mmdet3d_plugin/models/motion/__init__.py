"""Stage-2 motion prediction and planning: head, instance queue, refinement, targets, decoders."""
from .decoder import HierarchicalPlanningDecoder, SparseBox3DMotionDecoder
from .instance_queue import InstanceQueue
from .motion_blocks import MotionPlanningRefinementModule
from .motion_planning_head import MotionPlanningHead
from .target import MotionTarget, PlanningTarget

__all__ = [
    "MotionPlanningHead",
    "MotionPlanningRefinementModule",
    "InstanceQueue",
    "MotionTarget",
    "PlanningTarget",
    "SparseBox3DMotionDecoder",
    "HierarchicalPlanningDecoder",
]
