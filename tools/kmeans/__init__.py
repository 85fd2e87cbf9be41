"""k-means anchor scripts (det, map, motion, plan) and their shared helpers."""
