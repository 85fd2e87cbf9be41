"""Map GT: shapely polylines -> fixed-size point sets (and their equivalent orderings) for training."""
from typing import Dict, List, Sequence

import numpy as np
import shapely
from mmcv.parallel import DataContainer as DC
from mmdet.datasets.builder import PIPELINES
from shapely.geometry import LineString

PERMUTE_PADDING = 1e5


@PIPELINES.register_module()
class VectorizeMap:
    """Sample every map polyline of ``map_geoms`` (label -> LineStrings, lidar frame, meters).

    Exactly one sampling mode: ``sample_dist > 0`` (points every ``sample_dist`` meters plus both
    ends), ``sample_num > 0`` (that many points at equal arc length, ends included) or
    ``simplify=True`` (Douglas-Peucker with 0.2 m tolerance, raw vertices). Polygons are skipped.

    Args:
        roi_size: (x extent, y extent) of the map ROI in meters, e.g. (30, 60).
        normalize: map x in [-roi_x / 2, roi_x / 2] and y likewise to (0, 1).
        coords_dim: coordinates kept per point.
        simplify: use the simplify mode (evaluation GT).
        sample_num: points per polyline, or -1.
        sample_dist: spacing in meters, or -1.
        permute: emit training targets with all equivalent orderings (needs ``sample_num``):
            ``gt_map_labels`` int64 [K] and ``gt_map_pts`` float32 [K, 2 * (S - 1), S, coords_dim]
            with S = sample_num, instances in ``map_geoms`` order. Otherwise ``vectors``: a CPU-only
            DC of label -> list of [S_k, coords_dim] arrays.
    """

    def __init__(
        self,
        roi_size: Sequence[float],
        normalize: bool,
        coords_dim: int = 2,
        simplify: bool = False,
        sample_num: int = -1,
        sample_dist: float = -1,
        permute: bool = False,
    ) -> None:
        if sample_dist > 0:
            if sample_num > 0 or simplify:
                raise ValueError("VectorizeMap: give only one of sample_dist, sample_num, simplify.")
            self.sample_fn = self.interp_fixed_dist
        elif sample_num > 0:
            if simplify:
                raise ValueError("VectorizeMap: give only one of sample_dist, sample_num, simplify.")
            self.sample_fn = self.interp_fixed_num
        elif not simplify:
            raise ValueError("VectorizeMap: set sample_num > 0, sample_dist > 0 or simplify=True.")
        if permute and sample_num <= 1:
            raise ValueError("VectorizeMap: permute=True needs sample_num > 1 (fixed-size polylines).")
        self.roi_size = np.array(roi_size, dtype=np.float64)
        self.normalize = normalize
        self.coords_dim = coords_dim
        self.simplify = simplify
        self.sample_num = sample_num
        self.sample_dist = sample_dist
        self.permute = permute

    def interp_fixed_num(self, line: LineString) -> np.ndarray:
        """[sample_num, D] points at equal arc-length spacing from start to end."""
        return self._points_at(line, np.linspace(0, line.length, self.sample_num))

    def interp_fixed_dist(self, line: LineString) -> np.ndarray:
        """Points at 0, d, 2d, ... and at the end (at least two points)."""
        distances = np.concatenate([[0.0], np.arange(self.sample_dist, line.length, self.sample_dist), [line.length]])
        return self._points_at(line, distances)

    @staticmethod
    def _points_at(line: LineString, distances: np.ndarray) -> np.ndarray:
        if not hasattr(shapely, "line_interpolate_point"):  # shapely 1.8 (Python 3.8's nuscenes-devkit 1.1.11)
            return np.array([line.interpolate(d).coords[0] for d in distances]).reshape(len(distances), -1)
        points = shapely.line_interpolate_point(line, distances)
        return shapely.get_coordinates(points, include_z=line.has_z)

    def get_vectorized_lines(self, map_geoms: Dict) -> Dict[int, List[np.ndarray]]:
        """label -> list of sampled (optionally normalized / permuted) polylines."""
        vectors: Dict[int, List[np.ndarray]] = {}
        for label, geoms in map_geoms.items():
            vectors[label] = []
            for geom in geoms:
                if geom.geom_type == "Polygon":
                    continue
                if geom.geom_type != "LineString":
                    raise ValueError(
                        f"VectorizeMap: map_geoms[{label}] holds a {geom.geom_type}; only LineString/Polygon allowed."
                    )
                if self.simplify:
                    line = np.array(geom.simplify(0.2, preserve_topology=True).coords)
                else:
                    line = self.sample_fn(geom)
                line = line[:, : self.coords_dim]
                if self.normalize:
                    line = self.normalize_line(line)
                if self.permute:
                    line = self.permute_line(line)
                vectors[label].append(line)
        return vectors

    def normalize_line(self, line: np.ndarray) -> np.ndarray:
        """Map metric xy into (0, 1): (p + roi / 2) / (roi + 1e-5)."""
        out = np.array(line, dtype=np.float64)
        out[:, :2] = (out[:, :2] + self.roi_size / 2) / (self.roi_size + 1e-5)
        return out

    def permute_line(self, line: np.ndarray, padding: float = PERMUTE_PADDING) -> np.ndarray:
        """[S, D] -> [2 * (S - 1), S, D]: every start point and direction that describe the same polyline.

        A closed polyline (first == last within 1e-3) gives S - 1 cyclic shifts of its S - 1 distinct
        points, then S - 1 shifts of the reversed order, each closed again by repeating its first
        point. An open one gives itself and its reverse, then rows filled with ``padding``.
        """
        num_points = len(line)
        num_shift = num_points - 1
        if np.allclose(line[0], line[-1], atol=1e-3):
            ring = line[:-1]
            # np.roll(ring, s)[j] == ring[(j - s) % m]
            index = (np.arange(num_shift)[None, :] - np.arange(num_shift)[:, None]) % num_shift
            shifted = np.concatenate([ring[index], ring[::-1][index]], axis=0)
            return np.concatenate([shifted, shifted[:, :1]], axis=1)
        out = np.full((2 * num_shift, num_points, line.shape[1]), padding, dtype=np.float64)
        out[0] = line
        out[1] = line[::-1]
        return out

    def __call__(self, results: Dict) -> Dict:
        if "map_geoms" not in results:
            return results
        vectors = self.get_vectorized_lines(results["map_geoms"])
        if not self.permute:
            results["vectors"] = DC(vectors, stack=False, cpu_only=True)
            return results
        labels = [label for label, lines in vectors.items() for _ in lines]
        points = [line for lines in vectors.values() for line in lines]
        shape = (-1, 2 * (self.sample_num - 1), self.sample_num, self.coords_dim)
        results["gt_map_labels"] = np.array(labels, dtype=np.int64)
        results["gt_map_pts"] = np.array(points, dtype=np.float32).reshape(shape)
        return results

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(roi_size={self.roi_size.tolist()}, normalize={self.normalize}, "
            f"simplify={self.simplify}, sample_num={self.sample_num}, sample_dist={self.sample_dist}, "
            f"permute={self.permute})"
        )
