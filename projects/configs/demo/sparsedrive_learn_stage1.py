# Learning check, stage 1 (`make learn-check`, tools/learn_check.py): the demo stage 1 made small enough to
# over-fit one short synthetic scene in minutes on a CPU, trained and evaluated on the same frames. Data,
# infos and anchors come from $SPARSEDRIVE_LEARN_ROOT (written by tools/learn_check.py). Each changed line
# says why; widths, losses, targets and the pipeline are the demo's (and so the real config's).
import os

_base_ = ["./sparsedrive_demo_stage1.py"]

learn_root = os.environ.get("SPARSEDRIVE_LEARN_ROOT", "work_dirs/learn_check/data")
data_root = learn_root + "/nuscenes/"
anno_root = learn_root + "/infos/mini/"
anchor_dir = learn_root + "/anchors/"
clip_ann_file = anno_root + "nuscenes_infos_val.pkl"  # the clip: the one mini_val scene, for training and eval

# 120 passes over the clip's 8 frames: 960 iterations (tools/train.py turns epochs into iterations). Detection mAP
# on the clip was 0.28 / 0.36 / 0.64 after 320 / 480 / 960 iterations (map mAP 0.36 / 0.60 / 0.59).
num_epochs = 120
num_iters_per_epoch = 1  # nominal; rescaled to the clip length
runner = dict(max_iters=num_iters_per_epoch * num_epochs)
checkpoint_config = dict(interval=num_iters_per_epoch * num_epochs, max_keep_ckpts=1)
evaluation = dict(interval=num_iters_per_epoch * num_epochs)
log_config = dict(interval=4)
lr_config = dict(warmup_iters=10)  # a short warm-up for a short run
# over-fitting a clip tolerates a larger step than upstream's 4e-4 (2e-3 diverged to a nan loss after about 180
# iterations); the backbone starts from random weights, so it learns at the full rate (upstream: 0.5 for an
# ImageNet-initialised one)
optimizer = dict(lr=1e-3, paramwise_cfg=dict(custom_keys={"img_backbone": dict(lr_mult=1.0)}))

num_decoder = 3  # 3 of the 6 decoder layers: half the head cost, still temporal (layers 2-3)
num_det_anchor = 100  # a 10 x 10 grid over +-40 m (anchor file written by tools/learn_check.py)
num_temp_det_instances = 60
num_map_anchor = 30
_single = ["gnn", "norm", "deformable", "ffn", "norm", "refine"]
_temporal = ["temp_gnn", "gnn", "norm", "deformable", "ffn", "norm", "refine"]
det_operation_order = (_single + _temporal * (num_decoder - 1))[2:]
map_operation_order = _single + _temporal * (num_decoder - 1)
del _single, _temporal

# no dropout: the check measures how fast the heads fit, not how well they generalise
_no_drop = dict(graph_model=dict(dropout=0.0), temp_graph_model=dict(dropout=0.0), ffn=dict(ffn_drop=0.0),
                deformable_model=dict(attn_drop=0.0))
model = dict(
    use_grid_mask=False,  # no input masking: the check measures fitting, not robustness
    # ResNet-18 instead of ResNet-50: the backbone dominated the demo's step time
    img_backbone=dict(depth=18, init_cfg=None),
    img_neck=dict(in_channels=[64, 128, 256, 512]),  # ResNet-18's stage widths
    head=dict(
        det_head=dict(
            **_no_drop,
            cls_threshold_to_reg=-1,  # regress every matched anchor from the first step (no score gate)
            instance_bank=dict(num_anchor=num_det_anchor, anchor=anchor_dir + "kmeans_det_900.npy",
                               num_temp_instances=num_temp_det_instances),
            operation_order=det_operation_order,
        ),
        map_head=dict(
            **_no_drop,
            cls_threshold_to_reg=-1,
            instance_bank=dict(num_anchor=num_map_anchor, anchor=anchor_dir + "kmeans_map_100.npy"),
            operation_order=map_operation_order,
        ),
    ),
)

data_aug_conf = {
    "resize_lim": (0.11, 0.11),  # the test-time resize (176 / 1600): no scale, crop, flip or rotation jitter
    "final_dim": (64, 176),
    "bot_pct_lim": (0.0, 0.0),
    "rot_lim": (0.0, 0.0),
    "H": 900,
    "W": 1600,
    "rand_flip": False,
    "rot3d_range": [0, 0],
}
_eval_config = dict(data_root=data_root, version="v1.0-mini", ann_file=clip_ann_file)
data = dict(
    train=dict(data_root=data_root, ann_file=clip_ann_file, load_interval=1, data_aug_conf=data_aug_conf),
    val=dict(data_root=data_root, ann_file=clip_ann_file, data_aug_conf=data_aug_conf, eval_config=_eval_config),
    test=dict(data_root=data_root, ann_file=clip_ann_file, data_aug_conf=data_aug_conf, eval_config=_eval_config),
)
del _eval_config, _no_drop
