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


def _torch2_compatible(ddp: torch.nn.Module) -> torch.nn.Module:
    """mmcv 1.7's ``_run_ddp_forward`` (used by ``forward``, i.e. evaluation) reads an attribute torch>=2 dropped."""
    if not hasattr(ddp, "_use_replicated_tensor_module"):
        ddp._use_replicated_tensor_module = False
    return ddp


def wrap_model(model: torch.nn.Module, distributed: bool, find_unused_parameters: bool = False) -> torch.nn.Module:
    """Move ``model`` to this process's device and wrap it as mmcv's runners expect."""
    backend = device.get_backend()
    dev = device.get_device()
    model = model.to(dev)
    if backend == "npu":
        from mmcv.device.npu import NPUDataParallel, NPUDistributedDataParallel

        if distributed:
            return _torch2_compatible(NPUDistributedDataParallel(
                model, device_ids=[dev.index], broadcast_buffers=False, find_unused_parameters=find_unused_parameters
            ))
        return NPUDataParallel(model, device_ids=[dev.index])
    if backend == "cuda":
        if distributed:
            return _torch2_compatible(MMDistributedDataParallel(
                model, device_ids=[dev.index], broadcast_buffers=False, find_unused_parameters=find_unused_parameters
            ))
        return MMDataParallel(model, device_ids=[dev.index])
    if distributed:
        return _torch2_compatible(CPUDistributedDataParallel(
            model, broadcast_buffers=False, find_unused_parameters=find_unused_parameters
        ))
    return MMDataParallel(model)
