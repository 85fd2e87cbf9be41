# SparseDrive-S, stage 2: motion prediction + planning on top of the stage-1 perception weights.
# Only what upstream's sparsedrive_small_stage2.py changes; every value the base derived from a changed
# top-level name (batch, epochs) is recomputed and overridden here (mmcv does not re-evaluate the base).
import os

_base_ = ["./sparsedrive_small_stage1.py"]

version = "trainval"
length = {"trainval": 28130, "mini": 323}
total_batch_size = int(os.environ.get("SPARSEDRIVE_BATCH_SIZE", 48))
num_gpus = int(os.environ.get("SPARSEDRIVE_NUM_GPUS", 8))
batch_size = total_batch_size // num_gpus
num_iters_per_epoch = int(length[version] // (num_gpus * batch_size))
num_epochs = 10
checkpoint_epoch_interval = 10

checkpoint_config = dict(interval=num_iters_per_epoch * checkpoint_epoch_interval)
load_from = "ckpt/sparsedrive_stage1.pth"

task_config = dict(with_det=True, with_map=True, with_motion_plan=True)
model = dict(
    head=dict(
        task_config=task_config,
        map_head=dict(instance_bank=dict(num_temp_instances=33)),
    )
)

data = dict(samples_per_gpu=batch_size, workers_per_gpu=batch_size)

optimizer = dict(lr=3e-4, paramwise_cfg=dict(custom_keys={"img_backbone": dict(lr_mult=0.1)}))
runner = dict(max_iters=num_iters_per_epoch * num_epochs)

eval_mode = dict(
    with_det=True,
    with_tracking=True,
    with_map=True,
    with_motion=True,
    with_planning=True,
    tracking_threshold=0.2,
    motion_threshhold=0.2,
)
evaluation = dict(interval=num_iters_per_epoch * checkpoint_epoch_interval, eval_mode=eval_mode)
