"""Vector-map ground truth from the nuScenes map expansion, in the local frame of a pose (upstream's
NuscMapExtractor + geom2anno): ped_crossing (0), divider (1) and boundary (2) polylines."""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from shapely import ops
from shapely.geometry import LinearRing, LineString, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.strtree import STRtree

MAP_CLASSES = ("ped_crossing", "divider", "boundary")
LOCATIONS = ("boston-seaport", "singapore-hollandvillage", "singapore-onenorth", "singapore-queenstown")


def split_collections(geom: BaseGeometry) -> List[BaseGeometry]:
    """Split a (multi-)geometry into its valid, non-empty single parts."""
    parts = list(geom.geoms) if hasattr(geom, "geoms") else [geom]
    return [g for g in parts if g.is_valid and not g.is_empty]


def _lines_of(geom: BaseGeometry) -> List[LineString]:
    """Line parts of an intersection result, merged where they touch (points dropped)."""
    lines = [g for g in split_collections(geom) if g.geom_type in ("LineString", "MultiLineString")]
    if not lines:
        return []
    merged = ops.linemerge(lines) if len(lines) > 1 or lines[0].geom_type == "MultiLineString" else lines[0]
    return [g for g in split_collections(merged) if g.geom_type == "LineString"]


def drivable_area_contour(areas: List[Polygon], roi_size: Tuple[float, float]) -> List[LineString]:
    """Boundaries: exterior rings clockwise (drivable area on the right), then interior rings counter-clockwise,
    each clipped to the ROI shrunk by 0.2 m."""
    max_x, max_y = roi_size[0] / 2, roi_size[1] / 2
    patch = box(-max_x + 0.2, -max_y + 0.2, max_x - 0.2, max_y - 0.2)
    exteriors = [p.exterior for p in areas]
    interiors = [ring for p in areas for ring in p.interiors]
    out = []
    for ring in exteriors:
        if ring.is_ccw:
            ring = LinearRing(list(ring.coords)[::-1])
        out += _lines_of(ring.intersection(patch))
    for ring in interiors:
        if not ring.is_ccw:
            ring = LinearRing(list(ring.coords)[::-1])
        out += _lines_of(ring.intersection(patch))
    return out


def ped_crossing_contour(polygon: Polygon, patch: Polygon) -> Optional[LineString]:
    """Counter-clockwise exterior of a crossing clipped to the patch, as one polyline (closed when inside)."""
    ring = polygon.exterior
    if not ring.is_ccw:
        ring = LinearRing(list(ring.coords)[::-1])
    lines = ring.intersection(patch)
    if lines.geom_type != "LineString":
        parts = [g for g in split_collections(lines) if g.geom_type != "Point"]
        if not parts:
            return None
        lines = ops.linemerge(parts)
        if lines.geom_type != "LineString":
            lines = LineString(np.concatenate([np.asarray(g.coords) for g in lines.geoms], axis=0))
    return None if lines.is_empty else lines


class NuscMapExtractor:
    """Per-location map layers around a pose, clipped to a (width, length) ROI in that pose's frame.

    Args:
        data_root: nuScenes dataroot (reads maps/expansion/<location>.json).
        roi_size: (x extent, y extent) in metres, upstream (30, 60).
        locations: maps to load; upstream loads all four.
    """

    def __init__(self, data_root: str, roi_size: Sequence[float],
                 locations: Sequence[str] = LOCATIONS) -> None:
        from nuscenes.map_expansion.map_api import NuScenesMap, NuScenesMapExplorer

        self.roi_size = tuple(roi_size)
        self.explorer = {}
        for loc in locations:
            self.explorer[loc] = NuScenesMapExplorer(NuScenesMap(dataroot=data_root, map_name=loc))
        self.local_patch = box(-roi_size[0] / 2, -roi_size[1] / 2, roi_size[0] / 2, roi_size[1] / 2)

    @staticmethod
    def _long_axis(geom: Polygon) -> Tuple[np.ndarray, float]:
        corners = np.asarray(geom.minimum_rotated_rectangle.exterior.coords)[:3]
        edges = corners[1:] - corners[:-1]
        lengths = np.linalg.norm(edges, axis=-1)
        i = int(lengths.argmax())
        return edges[i], float(lengths[i])

    def _union_ped(self, peds: List[Polygon]) -> List[Polygon]:
        """Merge crossings whose long axes are parallel (1 - |cos| < 0.01) and whose boxes overlap the seed's."""
        if not peds:
            return []
        tree = STRtree(peds)
        remaining = set(range(len(peds)))
        merged = []
        for i, seed in enumerate(peds):
            if i not in remaining:
                continue
            remaining.discard(i)
            v, n = self._long_axis(seed)
            union = seed
            # shapely 2 returns indices from query; 1.8 (Python 3.8's nuscenes-devkit) from query_items
            hits = tree.query_items(seed) if hasattr(tree, "query_items") else tree.query(seed)
            for j in sorted(int(k) for k in hits):
                if j not in remaining:
                    continue
                w, m = self._long_axis(peds[j])
                if 1 - abs(float(v @ w) / (n * m)) < 0.01:
                    union = union.union(peds[j])
                    remaining.discard(j)
            merged.append(union)
        return [p for g in merged for p in split_collections(g)]

    def get_map_geom(self, location: str, translation: Sequence[float],
                     rotation: Sequence[float]) -> Dict[str, List[BaseGeometry]]:
        """Geometries around a pose, in its frame.

        Args:
            location: map name.
            translation: pose-to-global translation [3].
            rotation: pose-to-global quaternion (w, x, y, z) [4].
        Returns:
            dict divider / ped_crossing / boundary (LineStrings) and drivable_area (Polygons), in that order.
        """
        from nuscenes.eval.common.utils import quaternion_yaw
        from pyquaternion import Quaternion

        explorer = self.explorer[location]
        patch_box = (translation[0], translation[1], self.roi_size[1], self.roi_size[0])
        yaw = quaternion_yaw(Quaternion(rotation)) / np.pi * 180
        dividers = []
        for layer in ("lane_divider", "road_divider"):
            for line in explorer._get_layer_line(patch_box, yaw, layer):
                dividers += [g for g in split_collections(line) if g.geom_type == "LineString"]
        peds = [p for g in explorer._get_layer_polygon(patch_box, yaw, "ped_crossing") for p in split_collections(g)]
        crossings = [ped_crossing_contour(p, self.local_patch) for p in self._union_ped(peds)]
        roads = ops.unary_union(explorer._get_layer_polygon(patch_box, yaw, "road_segment"))
        lanes = ops.unary_union(explorer._get_layer_polygon(patch_box, yaw, "lane"))
        areas = [g for g in split_collections(ops.unary_union([roads, lanes])) if g.geom_type == "Polygon"]
        return dict(divider=dividers, ped_crossing=[c for c in crossings if c is not None],
                    boundary=drivable_area_contour(areas, self.roi_size), drivable_area=areas)


def geom2anno(map_geoms: Dict[str, List[BaseGeometry]]) -> Dict[int, List[np.ndarray]]:
    """Map geometries -> {label: [vertices (Ni, 2) float64]}, keeping the extractor's class order (1, 0, 2)."""
    return {MAP_CLASSES.index(cls): [np.array(g.coords) for g in geoms]
            for cls, geoms in map_geoms.items() if cls in MAP_CLASSES}
