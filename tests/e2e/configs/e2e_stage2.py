# Demo stage 2 on the e2e stage-1 sizes: motion + planning with the tests' anchor files and a small top-k.
import os

_base_ = ["./e2e_stage1.py"]

anchor_dir = os.environ.get("SPARSEDRIVE_E2E_ANCHOR_DIR", "data/kmeans") + "/"  # base names are not visible here

load_from = None
task_config = dict(with_det=True, with_map=True, with_motion_plan=True)
model = dict(
    head=dict(
        task_config=task_config,
        map_head=dict(instance_bank=dict(num_temp_instances=10)),
        motion_plan_head=dict(
            motion_anchor=anchor_dir + "kmeans_motion_6.npy",
            plan_anchor=anchor_dir + "kmeans_plan_6.npy",
            num_det=10,
            num_map=5,
            motion_decoder=dict(num_output=20),
        ),
    ),
)
optimizer = dict(lr=3e-4, paramwise_cfg=dict(custom_keys={"img_backbone": dict(lr_mult=0.1)}))
eval_mode = dict(
    with_det=True,
    with_tracking=True,
    with_map=True,
    with_motion=True,
    with_planning=True,
    tracking_threshold=0.2,
    motion_threshhold=0.2,
)
evaluation = dict(eval_mode=eval_mode)
