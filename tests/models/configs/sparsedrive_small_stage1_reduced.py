# Stage-1 model at test sizes: the real config with only sizes overridden (64x176 images, 50 det
# anchors / 30 temporal, 20 map anchors, 2 decoders, anchors inline instead of k-means files, no
# ImageNet checkpoint). Everything else (modules, widths, losses) is inherited unchanged.
_base_ = ["../../../projects/configs/sparsedrive_small_stage1.py"]

input_shape = (176, 64)  # (W, H)
num_det_anchor = 50
num_temp_det_instances = 30
num_map_anchor = 20
num_decoder = 2
num_sample = 20

_side = 8
det_anchor = [
    [-40 + 80 * (i // _side) / (_side - 1), -40 + 80 * (i % _side) / (_side - 1), -0.5, 1, 1, 1, 1, 0, 0, 0, 0]
    for i in range(num_det_anchor)
]
map_anchor = [
    [[-12 + 24 * (i // 5) / 3, -25 + 50 * (i % 5) / 4 + (-4 + 8 * k / (num_sample - 1))] for k in range(num_sample)]
    for i in range(num_map_anchor)
]
del _side

_single = ["gnn", "norm", "deformable", "ffn", "norm", "refine"]
_temporal = ["temp_gnn", "gnn", "norm", "deformable", "ffn", "norm", "refine"]
det_operation_order = (_single + _temporal * (num_decoder - 1))[2:]
map_operation_order = _single + _temporal * (num_decoder - 1)
del _single, _temporal

model = dict(
    img_backbone=dict(pretrained=None),
    head=dict(
        det_head=dict(
            instance_bank=dict(
                num_anchor=num_det_anchor,
                anchor=det_anchor,
                num_temp_instances=num_temp_det_instances,
            ),
            operation_order=det_operation_order,
            decoder=dict(num_output=20),
        ),
        map_head=dict(
            instance_bank=dict(num_anchor=num_map_anchor, anchor=map_anchor),
            operation_order=map_operation_order,
        ),
    ),
)
