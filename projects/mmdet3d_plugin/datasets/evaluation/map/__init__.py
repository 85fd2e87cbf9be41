"""Online vector-map evaluation (Chamfer AP)."""
from .vector_eval import evaluate_map_from_infos, evaluate_vector_map, format_map_results, gt_vectors_from_info

__all__ = ["evaluate_map_from_infos", "evaluate_vector_map", "format_map_results", "gt_vectors_from_info"]
