"""Dense multi-head attention on already-projected inputs: SDPA on cpu/cuda, ``npu_fusion_attention`` on NPU.

Replaces upstream's flash-attn call inside ``MultiheadFlashAttention`` (no masks, non-causal,
attention-probability dropout in training). Backends (``ops.set_backend('flash_attention', name)`` or
``SPARSEDRIVE_OPS_BACKEND_FLASH_ATTENTION=name``):

| name      | default for | computation                                                       |
|-----------|-------------|-------------------------------------------------------------------|
| sdpa      | cpu, cuda   | ``torch.nn.functional.scaled_dot_product_attention``, input dtype  |
| npu       | npu         | ``torch_npu.npu_fusion_attention``, layout BSND, fp16 inside        |
| reference | -           | softmax(scale * q k^T) v written out, input dtype                 |
"""
import importlib
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import dispatch

OP = "flash_attention"

# Token windows before/after the diagonal for npu_fusion_attention; far beyond any sequence here (dense).
NPU_TOKEN_WINDOW = 65536


def flash_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    num_heads: int,
    dropout_p: float = 0.0,
    training: bool = False,
    scale: Optional[float] = None,
) -> Tensor:
    """Scaled dot-product attention over ``num_heads`` heads, no mask.

    Args:
        query: projected queries, [B, Lq, C] with C = num_heads * D.
        key: projected keys, [B, Lk, C].
        value: projected values, [B, Lk, C].
        num_heads: number of heads; head h uses channels [h * D, (h + 1) * D).
        dropout_p: dropout probability on the attention weights, applied only when ``training``.
        training: whether dropout is active (pass the module's ``self.training``).
        scale: multiplier of q k^T; default D ** -0.5.
    Returns:
        Attention output with heads concatenated, [B, Lq, C], in the query's dtype (the NPU kernel
        computes in fp16, like upstream's flash attention).
    """
    batch, len_q, channels = query.shape
    if key.shape[0] != batch or key.shape[2] != channels or value.shape != key.shape:
        raise ValueError(
            f"flash_attention: query {tuple(query.shape)}, key {tuple(key.shape)} and value {tuple(value.shape)} "
            "must be [B, Lq, C], [B, Lk, C], [B, Lk, C]."
        )
    if channels % num_heads:
        raise ValueError(f"flash_attention: channels {channels} not divisible by num_heads {num_heads}.")
    if scale is None:
        scale = (channels // num_heads) ** -0.5
    impl = dispatch.select_backend(OP, query.device)
    return impl(query, key, value, num_heads, dropout_p if training else 0.0, scale)


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    """[B, L, C] -> [B, L, H, D]."""
    return x.reshape(x.shape[0], x.shape[1], num_heads, -1)


def _sdpa(query: Tensor, key: Tensor, value: Tensor, num_heads: int, dropout_p: float, scale: float) -> Tensor:
    q, k, v = (_split_heads(x, num_heads).transpose(1, 2) for x in (query, key, value))
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)
    return out.transpose(1, 2).flatten(2)


def _reference(query: Tensor, key: Tensor, value: Tensor, num_heads: int, dropout_p: float, scale: float) -> Tensor:
    q, k, v = (_split_heads(x, num_heads).transpose(1, 2) for x in (query, key, value))
    weights = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale, dim=-1)
    weights = F.dropout(weights, p=dropout_p, training=dropout_p > 0)
    return torch.matmul(weights, v).transpose(1, 2).flatten(2)


def _npu(query: Tensor, key: Tensor, value: Tensor, num_heads: int, dropout_p: float, scale: float) -> Tensor:
    half = torch.float16 if query.dtype == torch.float32 else query.dtype
    q, k, v = (_split_heads(x.to(half), num_heads).contiguous() for x in (query, key, value))
    out = _npu_fusion_attention()(
        q,
        k,
        v,
        num_heads,
        input_layout="BSND",
        atten_mask=None,
        scale=float(scale),
        keep_prob=1.0 - dropout_p,
        pre_tockens=NPU_TOKEN_WINDOW,
        next_tockens=NPU_TOKEN_WINDOW,
        inner_precise=0,
        sync=False,
    )[0]
    return out.flatten(2).to(query.dtype)


def _npu_fusion_attention():
    try:
        return importlib.import_module("torch_npu").npu_fusion_attention
    except (ImportError, AttributeError) as exc:
        raise RuntimeError(
            f"ops.flash_attention: no NPU kernel (torch_npu.npu_fusion_attention not importable: {exc}); install "
            "torch_npu or call ops.set_backend('flash_attention', 'sdpa')."
        ) from exc


def _load_npu():
    _npu_fusion_attention()
    return _npu


dispatch.register_op(
    OP,
    loaders={"sdpa": lambda: _sdpa, "reference": lambda: _reference, "npu": _load_npu},
    defaults={"cpu": "sdpa", "cuda": "sdpa", "npu": "npu"},
)

__all__ = ["flash_attention", "OP"]
