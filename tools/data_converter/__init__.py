"""nuScenes info converter, map-GT extractor and the synthetic nuScenes generator."""
