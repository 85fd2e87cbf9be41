"""Colours and fixed sizes shared by the BEV and camera renders (RGB, uint8)."""
from typing import Sequence, Tuple

Color = Tuple[int, int, int]

# One saturated colour per nuScenes detection class; no two are alike and none is grey, so a class can be
# found in a render by its colour alone (the tests do).
CLASS_COLORS = {
    "car": (255, 158, 0),
    "truck": (255, 99, 71),
    "construction_vehicle": (233, 150, 70),
    "bus": (255, 69, 0),
    "trailer": (255, 140, 0),
    "barrier": (0, 150, 136),
    "motorcycle": (255, 61, 99),
    "bicycle": (220, 20, 60),
    "pedestrian": (0, 0, 230),
    "traffic_cone": (47, 79, 79),
}
UNKNOWN_CLASS_COLOR = (128, 0, 128)
# upstream's map colours (matplotlib cornflowerblue, royalblue, slategrey) for ped_crossing, divider, boundary
MAP_COLORS = {
    "ped_crossing": (100, 149, 237),
    "divider": (65, 105, 225),
    "boundary": (112, 128, 145),
}
EGO_COLOR = (40, 40, 40)
PLAN_COLOR = (220, 0, 0)
BACKGROUND = (255, 255, 255)
GRID_COLOR = (225, 225, 225)
TEXT_COLOR = (0, 0, 0)

# nuScenes ego box (m), the size the planning evaluation uses; the ego heads along +y of the LiDAR frame
EGO_LENGTH, EGO_WIDTH = 4.084, 1.85
# upstream's command order of gt_ego_fut_cmd
COMMANDS = ("turn right", "turn left", "go straight")
# upstream's BEV half-range (m) and score thresholds
BEV_RANGE = 40.0
SCORE_THRESHOLD = 0.3
MAP_SCORE_THRESHOLD = 0.3
# LiDAR-frame height of the road (m): map lines are drawn there in the cameras (the map head's ground_height)
GROUND_HEIGHT = -1.84023
# camera layout of the render: nuScenes' front row then back row, as the devkit shows them
CAMERA_LAYOUT = (
    ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"),
    ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"),
)


def class_color(names: Sequence[str], label: int) -> Color:
    """Colour of detection label ``label`` (index into ``names``); unknown labels get one fixed colour."""
    if 0 <= label < len(names):
        return CLASS_COLORS.get(names[label], UNKNOWN_CLASS_COLOR)
    return UNKNOWN_CLASS_COLOR


def map_color(names: Sequence[str], label: int) -> Color:
    """Colour of map label ``label`` (index into ``names``)."""
    if 0 <= label < len(names):
        return MAP_COLORS.get(names[label], UNKNOWN_CLASS_COLOR)
    return UNKNOWN_CLASS_COLOR


def tint(color: Color, amount: float) -> Color:
    """``color`` blended towards white by ``amount`` in [0, 1]: ground truth and faint modes use it."""
    return tuple(int(round(c + (255 - c) * amount)) for c in color)
