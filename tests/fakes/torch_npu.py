"""Fake ``torch_npu`` for CPU tests: the APIs SparseDrive uses, each argument checked against the docs.

Installed by ``tests.fakes.install`` as ``torch_npu``, ``torch_npu.optim``, ``torch_npu.contrib`` and
``torch_npu.contrib.transfer_to_npu``; ``npu`` below becomes ``torch.npu``. Tensors stay on the CPU and
stand for NPU tensors. Every call of ``npu_fusion_attention`` is recorded in ``CALLS``.
"""
import types
from typing import Iterable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

CALLS: List[Tuple[str, dict]] = []

LAYOUTS = ("BSH", "SBH", "BSND", "BNSD", "TND")


class _Config:
    allow_internal_format = True


class _StaticGradScaler:
    """torch < 2.3 has no CPU GradScaler (real torch_npu 2.1 brings its own): torch's arithmetic for the
    static scale the optimiser hook uses (it calls ``update(loss_scale)`` every step)."""

    def __init__(self, init_scale: float = 65536.0) -> None:
        self._scale = float(init_scale)
        self._found_inf = False

    def scale(self, loss: Tensor) -> Tensor:
        return loss * self._scale

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        inv_scale = torch.tensor(1.0 / self._scale, dtype=torch.float32)
        for grad in grads:
            grad.mul_(inv_scale.to(grad.dtype))
        self._found_inf = any(not bool(torch.isfinite(grad).all()) for grad in grads)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if not self._found_inf:  # an overflowing step is skipped, as torch's scaler does
            optimizer.step()

    def update(self, new_scale: Optional[float] = None) -> None:
        if new_scale is not None:
            self._scale = float(new_scale)

    def state_dict(self) -> dict:
        return {"scale": self._scale}

    def load_state_dict(self, state: dict) -> None:
        self._scale = float(state["scale"])


def _grad_scaler(**kwargs) -> object:
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3: the real scaler works on CPU tensors
        return torch.amp.GradScaler("cpu", **kwargs)
    return _StaticGradScaler(**kwargs)


class _NpuNamespace(types.SimpleNamespace):
    """Stands in for ``torch.npu``: one device, nothing to wait for, no memory statistics."""


npu = _NpuNamespace(
    is_available=lambda: True,
    device_count=lambda: 1,
    current_device=lambda: 0,
    set_device=lambda device: None,
    synchronize=lambda device=None: None,
    max_memory_allocated=lambda device=None: 0,
    get_device_name=lambda device=None: "fake Ascend NPU",  # tools/device_check.sh names the device
    manual_seed=torch.manual_seed,
    manual_seed_all=torch.manual_seed,
    config=_Config(),
    amp=types.SimpleNamespace(GradScaler=_grad_scaler),
)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"fake torch_npu: {message}")


def npu_fusion_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    head_num: int,
    input_layout: str,
    pse: Optional[Tensor] = None,
    padding_mask: Optional[Tensor] = None,
    atten_mask: Optional[Tensor] = None,
    scale: float = 1.0,
    keep_prob: float = 1.0,
    pre_tockens: int = 2147483647,
    next_tockens: int = 2147483647,
    inner_precise: int = 0,
    prefix=None,
    actual_seq_qlen=None,
    actual_seq_kvlen=None,
    sparse_mode: int = 0,
    gen_mask_parallel: bool = True,
    sync: bool = False,
):
    """Dropout(Softmax(scale * Q K^T)) V for layout BSND, after the documented argument checks.

    Returns the 7-tuple of the real op; only element 0 (``[B, S, N, D]``, the query's dtype) is meaningful.
    """
    CALLS.append(("npu_fusion_attention", dict(
        query=query, key=key, value=value, head_num=head_num, input_layout=input_layout, scale=scale,
        keep_prob=keep_prob, pre_tockens=pre_tockens, next_tockens=next_tockens, inner_precise=inner_precise,
        sync=sync, atten_mask=atten_mask,
    )))
    _require(input_layout in LAYOUTS, f"input_layout {input_layout!r} not in {LAYOUTS}")
    _require(input_layout == "BSND", f"this fake only implements input_layout 'BSND', got {input_layout!r}")
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        _require(tensor.dim() == 4, f"{name} must be [B, S, N, D] for BSND, got {tuple(tensor.shape)}")
        _require(tensor.dtype in (torch.float16, torch.bfloat16), f"{name} must be fp16/bf16, got {tensor.dtype}")
        _require(tensor.is_contiguous(), f"{name} must be contiguous (ND format)")
    _require(query.dtype == key.dtype == value.dtype, "query, key and value must share one dtype")
    _require(isinstance(head_num, int) and head_num == query.shape[2], f"head_num {head_num} != query heads")
    _require(key.shape == value.shape, f"key {tuple(key.shape)} and value {tuple(value.shape)} differ")
    _require(key.shape[0] == query.shape[0] and key.shape[2:] == query.shape[2:], "key must be [B, Skv, N, D]")
    _require(query.shape[3] <= 512, f"head dim {query.shape[3]} > 512")
    _require(isinstance(scale, float), f"scale must be a float, got {type(scale).__name__}")
    _require(isinstance(keep_prob, float) and 0.0 < keep_prob <= 1.0, f"keep_prob {keep_prob} not in (0, 1]")
    _require(isinstance(pre_tockens, int) and isinstance(next_tockens, int), "pre/next_tockens must be ints")
    _require(inner_precise in (0, 1), f"inner_precise {inner_precise} not in (0, 1)")
    _require(sparse_mode == 0 and pse is None and padding_mask is None and prefix is None, "unused options set")
    _require(actual_seq_qlen is None and actual_seq_kvlen is None, "actual_seq_*len only for layout TND")
    _require(atten_mask is None or atten_mask.dtype in (torch.bool, torch.uint8), "atten_mask must be bool/uint8")
    _require(isinstance(sync, bool), "sync must be a bool")

    q, k, v = (t.float().transpose(1, 2) for t in (query, key, value))
    logits = torch.matmul(q, k.transpose(-1, -2)) * scale
    if atten_mask is not None:
        logits = logits.masked_fill(atten_mask.bool(), float("-inf"))
    probs = F.dropout(torch.softmax(logits, dim=-1), p=1.0 - keep_prob, training=keep_prob < 1.0)
    out = torch.matmul(probs, v).transpose(1, 2).to(query.dtype)
    stats = logits.new_zeros(0)
    return out, stats, stats, stats, 0, 0, 0


class NpuFusedAdamW(torch.optim.AdamW):
    """AdamW with the fused optimizer's argument checks and ``clip_grad_norm_fused_``."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ):
        _require(lr >= 0, f"NpuFusedAdamW: invalid lr {lr}")
        _require(eps >= 0, f"NpuFusedAdamW: invalid eps {eps}")
        _require(weight_decay >= 0, f"NpuFusedAdamW: invalid weight_decay {weight_decay}")
        _require(all(0.0 <= b < 1.0 for b in betas), f"NpuFusedAdamW: invalid betas {betas}")
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        self._param_ids = [id(p) for group in self.param_groups for p in group["params"]]

    def _check_params_kept(self) -> None:
        current = [id(p) for group in self.param_groups for p in group["params"]]
        _require(current == self._param_ids, "NpuFusedAdamW: parameters were re-allocated after construction")

    def step(self, closure=None):
        self._check_params_kept()
        return super().step(closure)

    def clip_grad_norm_fused_(self, max_norm: float, norm_type: float = 2.0) -> Tensor:
        """Clip all gradients this optimizer owns; returns the total norm before clipping."""
        self._check_params_kept()
        CALLS.append(("clip_grad_norm_fused_", dict(max_norm=max_norm, norm_type=norm_type)))
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return torch.zeros(())
        return torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)


def submodules() -> dict:
    """``sys.modules`` entries for the fake's submodules."""
    optim = types.ModuleType("torch_npu.optim")
    optim.NpuFusedAdamW = NpuFusedAdamW
    contrib = types.ModuleType("torch_npu.contrib")
    transfer_to_npu = types.ModuleType("torch_npu.contrib.transfer_to_npu")
    contrib.transfer_to_npu = transfer_to_npu
    return {
        "torch_npu.optim": optim,
        "torch_npu.contrib": contrib,
        "torch_npu.contrib.transfer_to_npu": transfer_to_npu,
    }
