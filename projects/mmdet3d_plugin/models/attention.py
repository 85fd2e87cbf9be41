"""Multi-head attention layers of the sparse heads, running through ``ops.flash_attention``.

Upstream's ``MultiheadFlashAttention`` imports the CUDA-only ``flash_attn`` package and casts q/k/v to
fp16; here the attention itself is ``ops.flash_attention`` (SDPA on CPU/CUDA, the fused kernel on NPU) in
the input dtype, so the layers run everywhere. Parameter names and packing (``attn.in_proj_weight``
[3E, E], ``attn.in_proj_bias`` [3E], ``attn.out_proj``) equal upstream's and ``torch.nn.MultiheadAttention``'s,
so checkpoints load unchanged.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import build_dropout
from mmcv.cnn.bricks.registry import ATTENTION
from mmcv.runner.base_module import BaseModule
from torch import Tensor, nn

from .. import ops

__all__ = ["FlashMHA", "MultiheadFlashAttention", "gen_sineembed_for_position"]


class FlashMHA(nn.Module):
    """Packed in-projection, dense multi-head attention, output projection (batch first).

    Args:
        embed_dim: model width E; head dim E / num_heads.
        num_heads: number of heads.
        bias: projections carry biases.
        attention_dropout: dropout on the attention probabilities (training only).
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True, attention_dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"FlashMHA: embed_dim {embed_dim} is not divisible by num_heads {num_heads}.")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.dropout_p = attention_dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """Attend q over k/v.

        Args:
            q: queries, [B, Lq, E].
            k: keys, [B, Lk, E].
            v: values, [B, Lk, E].
            key_padding_mask: optional [B, Lk] bool, True = valid key (flash-attn's convention, the
                opposite of torch's ``key_padding_mask``).
        Returns:
            [B, Lq, E].
        """
        if q is k and k is v:  # self-attention on one tensor: one packed projection
            q, k, v = F.linear(q, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            weights = self.in_proj_weight.chunk(3)
            biases = (None,) * 3 if self.in_proj_bias is None else self.in_proj_bias.chunk(3)
            q, k, v = (F.linear(x, w, b) for x, w, b in zip((q, k, v), weights, biases))
        dropout_p = self.dropout_p if self.training else 0.0
        if key_padding_mask is None:
            out = ops.flash_attention(q, k, v, num_heads=self.num_heads, dropout_p=dropout_p, training=self.training)
        else:
            out = self._masked_attention(q, k, v, key_padding_mask, dropout_p)
        return self.out_proj(out)

    def _masked_attention(self, q: Tensor, k: Tensor, v: Tensor, valid: Tensor, dropout_p: float) -> Tensor:
        """Dense attention with invalid keys excluded; no SparseDrive layer uses it, kept for upstream's API."""
        batch, len_q, _ = q.shape
        heads = self.num_heads

        def split(x: Tensor) -> Tensor:
            return x.reshape(batch, x.shape[1], heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(q), split(k), split(v), attn_mask=valid[:, None, None, :].bool(), dropout_p=dropout_p
        )
        return out.transpose(1, 2).reshape(batch, len_q, -1)


@ATTENTION.register_module()
class MultiheadFlashAttention(BaseModule):
    """Multi-head attention with identity connection and positional encodings (mmcv-style wrapper).

    Key defaults to query, value to key, identity to query (before positional encodings are added);
    a missing ``key_pos`` takes ``query_pos`` when their shapes match. Output =
    identity + dropout_layer(proj_drop(attention)).

    Args:
        embed_dims: width E.
        num_heads: heads.
        attn_drop: dropout on attention probabilities.
        proj_drop: dropout after the output projection.
        dropout_layer: mmcv dropout config on the residual branch (None: Dropout with p=0; empty dict: identity).
        init_cfg: mmcv init config.
        batch_first: only True is supported (upstream forces it).
        dropout: deprecated shorthand setting both ``attn_drop`` and the ``dropout_layer`` probability
            (what upstream's configs pass); overrides them when given.
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        dropout_layer: Optional[dict] = None,
        init_cfg: Optional[dict] = None,
        batch_first: bool = True,
        dropout: Optional[float] = None,
    ) -> None:
        super().__init__(init_cfg)
        if not batch_first:
            raise ValueError("MultiheadFlashAttention: batch_first=False is not supported; pass batch_first=True.")
        # Upstream's default dropout_layer is a shared mutable dict that `dropout` mutates in place;
        # a fresh dict per instance gives the same values without the shared state.
        dropout_layer = dict(type="Dropout", drop_prob=0.0) if dropout_layer is None else dict(dropout_layer)
        if dropout is not None:
            attn_drop = dropout
            dropout_layer["drop_prob"] = dropout
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.batch_first = True
        self.attn = FlashMHA(embed_dims, num_heads, attention_dropout=attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)
        self.dropout_layer = build_dropout(dropout_layer) if dropout_layer else nn.Identity()

    def forward(
        self,
        query: Tensor,
        key: Optional[Tensor] = None,
        value: Optional[Tensor] = None,
        identity: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
        key_pos: Optional[Tensor] = None,
        attn_mask: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """Attention block with residual.

        Args:
            query: [B, Lq, E]; key: [B, Lk, E] or None; value: [B, Lk, E] or None.
            identity: residual, [B, Lq, E] (default: query).
            query_pos / key_pos: positional encodings added to query / key.
            attn_mask: must be None (upstream does not support it either).
            key_padding_mask: [B, Lk] bool, True = valid key (flash-attn convention).
        Returns:
            [B, Lq, E].
        """
        if attn_mask is not None:
            raise ValueError("MultiheadFlashAttention: attn_mask is not supported (upstream asserts it is None).")
        if key is None:
            key = query
        if value is None:
            value = key
        if identity is None:
            identity = query
        if key_pos is None and query_pos is not None and query_pos.shape == key.shape:
            key_pos = query_pos
        if query_pos is not None:
            query = query + query_pos
        if key_pos is not None:
            key = key + key_pos
        out = self.attn(query, key, value, key_padding_mask=key_padding_mask)
        return identity + self.dropout_layer(self.proj_drop(out))


def gen_sineembed_for_position(pos_tensor: Tensor, hidden_dim: int = 256) -> Tensor:
    """DAB-DETR sine embedding of 2-D points.

    Args:
        pos_tensor: points (x, y), metres, [..., 2].
        hidden_dim: output width; each coordinate gets hidden_dim / 2 channels.
    Returns:
        concat(embed(y), embed(x)), [..., hidden_dim]; channel k of a coordinate is sin (k even) or
        cos (k odd) of 2*pi*coord / 10000^(2*floor(k/2)/(hidden_dim/2)).
    """
    half = hidden_dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=pos_tensor.device)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)

    def embed(coord: Tensor) -> Tensor:
        angle = coord[..., None] * (2 * math.pi) / dim_t
        return torch.stack((angle[..., 0::2].sin(), angle[..., 1::2].cos()), dim=-1).flatten(-2)

    return torch.cat((embed(pos_tensor[..., 1]), embed(pos_tensor[..., 0])), dim=-1)
