"""Training and test loops that mmcv does not provide: runner, optimiser, parallel wrappers, inference."""
