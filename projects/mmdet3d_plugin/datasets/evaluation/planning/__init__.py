"""Open-loop planning evaluation (L2, collision rates)."""
from .planning_eval import PlanningMetric, evaluate_planning, future_boxes

__all__ = ["PlanningMetric", "evaluate_planning", "future_boxes"]
