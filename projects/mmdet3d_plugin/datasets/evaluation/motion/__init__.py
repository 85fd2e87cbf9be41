"""Motion forecasting evaluation (EPA, minADE, minFDE, miss rate)."""
from .motion_eval_uniad import evaluate_motion

__all__ = ["evaluate_motion"]
