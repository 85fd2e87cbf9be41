# SparseDrive-S stage 2 at demo size: the real stage-2 changes (motion + planning, map temporal
# instances, lr) on top of the demo stage 1. The launch scripts pass stage 1's checkpoint with --load-from.
import os

_base_ = ["./sparsedrive_demo_stage1.py"]

total_batch_size = int(os.environ.get("SPARSEDRIVE_BATCH_SIZE", 1))  # one sample per step on a laptop
num_gpus = int(os.environ.get("SPARSEDRIVE_NUM_GPUS", 1))  # one process unless the scripts say otherwise
batch_size = total_batch_size // num_gpus
num_epochs = 1  # motion/planning fine-tuning for a short demo
checkpoint_epoch_interval = 1  # one checkpoint and one evaluation, at the end
train_load_interval = 3  # every 3rd training frame (1.5 s apart, within the 2 s temporal link): 43 iterations
version = "mini"
length = {"trainval": 28130, "mini": 323}
num_iters_per_epoch = int(length[version] // (num_gpus * batch_size))  # nominal; rescaled by tools/train.py
runner = dict(max_iters=num_iters_per_epoch * num_epochs)
checkpoint_config = dict(interval=num_iters_per_epoch * checkpoint_epoch_interval)

load_from = None  # set by test/train_stages.sh (--load-from stage 1's final checkpoint)

task_config = dict(with_det=True, with_map=True, with_motion_plan=True)
model = dict(
    head=dict(
        task_config=task_config,
        # upstream's 33 of 100 map anchors, scaled to the demo's 50
        map_head=dict(instance_bank=dict(num_temp_instances=16)),
    )
)

data = dict(samples_per_gpu=batch_size, train=dict(load_interval=train_load_interval))

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
evaluation = dict(interval=num_iters_per_epoch * checkpoint_epoch_interval, eval_mode=eval_mode)
