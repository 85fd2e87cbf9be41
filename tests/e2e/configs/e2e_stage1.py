# Demo stage 1 shrunk for the end-to-end tests: 2 decoders, 50 det / 20 map anchors. Data, infos and anchor
# files come from $SPARSEDRIVE_E2E_DATA_ROOT / _INFO_ROOT / _ANCHOR_DIR (the tests' tmp set; tests/e2e/conftest.py).
# Anchors stay in files: inline arrays make mmcv's config pretty-printing take minutes.
import os

_base_ = ["../../../projects/configs/demo/sparsedrive_demo_stage1.py"]

data_root = os.environ.get("SPARSEDRIVE_E2E_DATA_ROOT", "data/synthetic_nuscenes") + "/"
anno_root = os.environ.get("SPARSEDRIVE_E2E_INFO_ROOT", "data/infos/mini") + "/"
anchor_dir = os.environ.get("SPARSEDRIVE_E2E_ANCHOR_DIR", "data/kmeans") + "/"
num_decoder = 2
num_det_anchor = 50
num_temp_det_instances = 30
num_map_anchor = 20
num_sample = 20

_single = ["gnn", "norm", "deformable", "ffn", "norm", "refine"]
_temporal = ["temp_gnn", "gnn", "norm", "deformable", "ffn", "norm", "refine"]
det_operation_order = (_single + _temporal * (num_decoder - 1))[2:]
map_operation_order = _single + _temporal * (num_decoder - 1)
del _single, _temporal

log_config = dict(interval=1)  # the tests read every iteration's losses
model = dict(
    head=dict(
        det_head=dict(
            instance_bank=dict(
                num_anchor=num_det_anchor,
                anchor=anchor_dir + "kmeans_det_900.npy",
                num_temp_instances=num_temp_det_instances,
            ),
            operation_order=det_operation_order,
            decoder=dict(num_output=20),
        ),
        map_head=dict(
            instance_bank=dict(num_anchor=num_map_anchor, anchor=anchor_dir + "kmeans_map_100.npy"),
            operation_order=map_operation_order,
        ),
    ),
)
_eval_config = dict(data_root=data_root, ann_file=anno_root + "nuscenes_infos_val.pkl")
data = dict(
    train=dict(data_root=data_root, ann_file=anno_root + "nuscenes_infos_train.pkl", load_interval=1),
    val=dict(data_root=data_root, ann_file=anno_root + "nuscenes_infos_val.pkl", eval_config=_eval_config),
    test=dict(data_root=data_root, ann_file=anno_root + "nuscenes_infos_val.pkl", eval_config=_eval_config),
)
del _eval_config
