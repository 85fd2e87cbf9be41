"""Pixel helpers for the render tests: where a colour appears in an RGB image."""
import numpy as np

CLASSES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle",
           "pedestrian", "traffic_cone")
MAP_CLASSES = ("ped_crossing", "divider", "boundary")


def color_mask(image: np.ndarray, color, tol: int = 6) -> np.ndarray:
    """[H, W] bool: pixels within ``tol`` of ``color`` in every channel."""
    return (np.abs(image.astype(np.int32) - np.asarray(color, dtype=np.int32)) <= tol).all(-1)


def bbox_of(mask: np.ndarray):
    """(col_min, row_min, col_max, row_max) of the true pixels of ``mask``."""
    rows, cols = np.nonzero(mask)
    return cols.min(), rows.min(), cols.max(), rows.max()
