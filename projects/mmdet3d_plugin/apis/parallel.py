"""Wrap the model for (distributed) data parallel on the selected backend, DataContainer-aware."""
import torch
from mmcv.parallel import MMDataParallel, MMDistributedDataParallel, scatter_kwargs

from .. import device


class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmcv's DDP skips unwrapping DataContainers when there are no device ids (the CPU case); do it here."""

    def train_step(self, *inputs, **kwargs):
        inputs, kwargs = scatter_kwargs(inputs, kwargs, [-1], dim=self.dim)
        return super().train_step(*inputs[0], **kwargs[0])

    def val_step(self, *inputs, **kwargs):
        inputs, kwargs = scatter_kwargs(inputs, kwargs, [-1], dim=self.dim)
        return super().val_step(*inputs[0], **kwargs[0])

    def forward(self, *inputs, **kwargs):
        inputs, kwargs = scatter_kwargs(inputs, kwargs, [-1], dim=self.dim)
        return super().forward(*inputs[0], **kwargs[0])


def _wrapper_classes(backend: str):
    """(data-parallel, distributed-data-parallel) wrapper classes of ``backend``."""
    if backend == "npu":
        from mmcv.device.npu import NPUDataParallel, NPUDistributedDataParallel

        return NPUDataParallel, NPUDistributedDataParallel
    if backend == "cuda":
        return MMDataParallel, MMDistributedDataParallel
    return MMDataParallel, CPUDistributedDataParallel


def wrap_model(model: torch.nn.Module, distributed: bool, find_unused_parameters: bool = False) -> torch.nn.Module:
    """Move ``model`` to this process's device and wrap it as mmcv's runners expect."""
    backend = device.get_backend()
    dev = device.get_device()
    model = model.to(dev)
    data_parallel, distributed_data_parallel = _wrapper_classes(backend)
    device_ids = None if backend == "cpu" else [dev.index]
    if not distributed:
        return data_parallel(model, device_ids=device_ids)
    ddp = distributed_data_parallel(
        model, device_ids=device_ids, broadcast_buffers=False, find_unused_parameters=find_unused_parameters
    )
    # mmcv 1.7's _run_ddp_forward (used by forward, i.e. evaluation) reads an attribute torch>=2 dropped
    if not hasattr(ddp, "_use_replicated_tensor_module"):
        ddp._use_replicated_tensor_module = False
    return ddp
