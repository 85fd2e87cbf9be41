# Stage-2 model at test sizes: the reduced stage-1 model plus what upstream's stage 2 changes in the model
# (motion-planning head on, 33 -> 10 temporal map instances for 20 map anchors), with k-means anchors
# inline and the ego encoder sized for the 2 x 6 stride-32 map of 64 x 176 images.
import math

_base_ = ["./sparsedrive_small_stage1_reduced.py"]

num_temp_map_instances = 10
stride32_map_hw = (2, 6)
num_motion_det = 10
num_motion_map = 5

# straight-line anchors: mode m heads at angle m * 60 deg with speed (m + 1) m per step
motion_anchor = [
    [
        [
            [(t + 1) * (m + 1) * math.cos(math.radians(60 * m)), (t + 1) * (m + 1) * math.sin(math.radians(60 * m))]
            for t in range(12)
        ]
        for m in range(6)
    ]
    for c in range(10)
]
# per command (right, left, straight): 6 modes fanning around +Y (ego heading)
plan_anchor = [
    [
        [
            [(t + 1) * (m + 1) * 0.5 * math.cos(math.radians(90 + (cmd - 1) * 30 + 5 * (m - 2.5))),
             (t + 1) * (m + 1) * 0.5 * math.sin(math.radians(90 + (cmd - 1) * 30 + 5 * (m - 2.5)))]
            for t in range(6)
        ]
        for m in range(6)
    ]
    for cmd in range(3)
]

model = dict(
    head=dict(
        task_config=dict(with_motion_plan=True),
        map_head=dict(instance_bank=dict(num_temp_instances=num_temp_map_instances)),
        motion_plan_head=dict(
            motion_anchor=motion_anchor,
            plan_anchor=plan_anchor,
            instance_queue=dict(feature_map_scale=stride32_map_hw),
            num_det=num_motion_det,
            num_map=num_motion_map,
            motion_decoder=dict(num_output=20),  # the reduced det decoder's top-k
        ),
    ),
)
