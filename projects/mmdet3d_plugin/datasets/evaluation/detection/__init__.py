"""nuScenes detection / tracking submission formatting and the devkit evaluators."""
from .nusc_eval import evaluate_detection, evaluate_tracking
from .nusc_format import format_nusc_submission, pick_attribute, select_global_boxes

__all__ = ["evaluate_detection", "evaluate_tracking", "format_nusc_submission", "pick_attribute",
           "select_global_boxes"]
