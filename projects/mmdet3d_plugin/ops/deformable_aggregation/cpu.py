"""Fast CPU deformable aggregation: same contract and numbers as ``reference``, hand-written backward.

Why it is fast: a keypoint usually projects into one or two of the six cameras, so the op first keeps
only the (anchor, point, camera) samples strictly inside their image ("compaction"), then works on
those K samples only. For every sample it fuses the 4 bilinear coefficients of each level with the
attention weights of each group into one [K, L*4, G] table, gathers the L*4 feature rows it touches in
chunks (never an [A, P, N, L, C] temporary), and adds the result to its anchor with ``index_add_``.
The backward re-gathers the same rows chunk by chunk.
"""
from typing import NamedTuple, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .reference import compute_dtype

# Samples per chunk: each chunk gathers CHUNK * L * 4 feature rows (about 4 MiB at C = 256, L = 4).
CHUNK = 256

# (dy, dx) of the four bilinear neighbours, in the order used by every table below.
_CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))


class _Plan(NamedTuple):
    """Where the K valid samples read from and with which coefficients."""

    sample: Tensor  # flat (b, a, p, n) index of each valid sample, [K]
    anchor: Tensor  # flat (b, a) index of each valid sample, [K]
    rows: Tensor  # feature rows in the [B*F, C] view, [K, L*4]
    coefficient: Tensor  # bilinear coefficient of each row (0 outside the map), [K, L, 4]
    fraction: Tensor  # (fx, fy) fractional pixel position per level, [K, L, 2]
    valid: Tensor  # neighbour inside the map, bool [K, L, 4]
    size: Tensor  # (w, h) per level, [K, L, 2]


def deformable_aggregation(
    mc_ms_feat: Tensor,
    spatial_shape: Tensor,
    scale_start_index: Tensor,
    sampling_location: Tensor,
    weights: Tensor,
) -> Tensor:
    """Same arguments, result and gradients as ``reference.deformable_aggregation`` ([B, A, C])."""
    return _CompactAggregation.apply(mc_ms_feat, spatial_shape, scale_start_index, sampling_location, weights)


class _CompactAggregation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats, spatial_shape, scale_start_index, location, weights):
        dtype = compute_dtype(feats, location, weights)
        ctx.input_dtypes = (feats.dtype, location.dtype, weights.dtype)
        feats = feats.to(dtype).contiguous()
        location = location.to(dtype)
        batch, num_feat, channels = feats.shape
        num_anchor, num_pts, num_cams = location.shape[1:4]
        num_levels, num_groups = weights.shape[-2:]
        plan = _make_plan(feats, spatial_shape, scale_start_index, location)
        weights = weights.to(dtype)
        # [K, L, G], read in place whatever the layout of weights
        sample_weights = weights[_unravel(plan.sample, weights.shape[:4])]
        mixed = _mix(plan.coefficient, sample_weights)  # [K, L*4, G]

        rows_2d = feats.view(batch * num_feat, channels)
        output = feats.new_zeros(batch * num_anchor, channels)
        for lo in range(0, plan.sample.numel(), CHUNK):
            hi = lo + CHUNK
            values = _gather(rows_2d, plan.rows[lo:hi], num_groups)  # [k, L*4, G, C/G]
            sampled = (values * mixed[lo:hi, :, :, None]).sum(dim=1)
            output.index_add_(0, plan.anchor[lo:hi], sampled.flatten(1))

        ctx.save_for_backward(feats, sample_weights, *plan)
        ctx.shapes = (batch, num_anchor, num_pts, num_cams, num_levels, num_groups)
        ctx.weights_like = torch.empty_like(weights, device="meta")  # its layout, for the gradient
        return output.view(batch, num_anchor, channels)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        feats, sample_weights, *plan_tensors = ctx.saved_tensors
        plan = _Plan(*plan_tensors)
        batch, num_anchor, num_pts, num_cams, num_levels, num_groups = ctx.shapes
        num_feat, channels = feats.shape[1:]
        need_feat, need_location, need_weights = (ctx.needs_input_grad[i] for i in (0, 3, 4))

        grad_out = grad_output.to(feats.dtype).reshape(batch * num_anchor, channels)
        rows_2d = feats.view(batch * num_feat, channels)
        mixed = _mix(plan.coefficient, sample_weights)
        grad_feats = torch.zeros_like(rows_2d) if need_feat else None
        grad_mixed = mixed.new_empty(mixed.shape) if (need_location or need_weights) else None
        for lo in range(0, plan.sample.numel(), CHUNK):
            hi = lo + CHUNK
            anchor_grad = _gather(grad_out, plan.anchor[lo:hi, None], num_groups)  # [k, 1, G, C/G]
            if grad_mixed is not None:
                values = _gather(rows_2d, plan.rows[lo:hi], num_groups)
                grad_mixed[lo:hi] = (values * anchor_grad).sum(dim=-1)
            if grad_feats is not None:
                contribution = mixed[lo:hi, :, :, None] * anchor_grad  # [k, L*4, G, C/G]
                grad_feats.index_add_(0, plan.rows[lo:hi].flatten(), contribution.flatten(0, 1).flatten(1))

        grad_location = grad_weights = None
        if grad_mixed is not None:
            grad_mixed = grad_mixed.view(-1, num_levels, len(_CORNERS), num_groups)
            total = batch * num_anchor * num_pts * num_cams
            if need_weights:
                grad_sample_weights = torch.einsum("klqg,klq->klg", grad_mixed, plan.coefficient)
                # in the layout of weights, so that the softmax before it needs no copy of its gradient
                grad_weights = torch.zeros_like(ctx.weights_like, device=grad_sample_weights.device)
                grad_weights[_unravel(plan.sample, grad_weights.shape[:4])] = grad_sample_weights
                grad_weights = grad_weights.to(ctx.input_dtypes[2])
            if need_location:
                grad_coefficient = torch.einsum("klqg,klg->klq", grad_mixed, sample_weights)
                grad_sample_location = _coefficient_backward(grad_coefficient, plan)
                grad_location = grad_sample_location.new_zeros(total, 2)
                grad_location[plan.sample] = grad_sample_location
                grad_location = grad_location.view(batch, num_anchor, num_pts, num_cams, 2)
                grad_location = grad_location.to(ctx.input_dtypes[1])
        if grad_feats is not None:
            grad_feats = grad_feats.view(batch, num_feat, channels).to(ctx.input_dtypes[0])
        return grad_feats, None, None, grad_location, grad_weights


def _make_plan(feats: Tensor, spatial_shape: Tensor, scale_start_index: Tensor, location: Tensor) -> _Plan:
    """Compact to the samples inside their image and tabulate their neighbours on every level."""
    num_feat = feats.shape[1]
    num_anchor, num_pts, num_cams = location.shape[1:4]
    flat = location.reshape(-1, 2)
    inside = ((flat > 0) & (flat < 1)).all(dim=1)
    sample = inside.nonzero().squeeze(1)
    cam = sample % num_cams
    anchor = sample // (num_pts * num_cams)
    image = anchor // num_anchor

    uv = flat[sample]  # [K, 2]
    hw = spatial_shape.to(device=feats.device, dtype=torch.long)[cam]  # [K, L, 2] as (h, w)
    size = hw.flip(-1)  # (w, h)
    position = uv[:, None, :] * size.to(uv.dtype) - 0.5  # (x, y) per level, [K, L, 2]
    corner0 = torch.floor(position)
    fraction = position - corner0
    corner0 = corner0.long()
    start = scale_start_index.to(device=feats.device, dtype=torch.long)[cam] + (image * num_feat)[:, None]

    offsets = position.new_tensor(_CORNERS).flip(-1).long()  # (dx, dy) per corner, [4, 2]
    corner = corner0[:, :, None, :] + offsets  # [K, L, 4, 2]
    valid = ((corner >= 0) & (corner < size[:, :, None, :])).all(dim=-1)
    clamped = torch.minimum(corner.clamp(min=0), size[:, :, None, :] - 1)
    rows = start[:, :, None] + clamped[..., 1] * size[:, :, None, 0] + clamped[..., 0]

    weight_x = torch.stack([1 - fraction[..., 0], fraction[..., 0]], dim=-1)  # [K, L, 2]
    weight_y = torch.stack([1 - fraction[..., 1], fraction[..., 1]], dim=-1)
    coefficient = (weight_y[..., :, None] * weight_x[..., None, :]).flatten(-2) * valid
    return _Plan(sample, anchor, rows.flatten(1), coefficient, fraction, valid, size)


def _unravel(flat: Tensor, shape: Tuple[int, ...]) -> Tuple[Tensor, ...]:
    """Per-dimension indices of the row-major ``flat`` indices into ``shape`` (torch 2.1 lacks unravel_index)."""
    index = []
    for size in reversed(shape):
        index.append(flat % size)
        flat = flat // size
    return tuple(reversed(index))


def _gather(rows_2d: Tensor, index: Tensor, num_groups: int) -> Tensor:
    """Rows ``rows_2d[index]`` split into groups, [*index.shape, G, C/G] (index_select copies whole rows)."""
    values = torch.index_select(rows_2d, 0, index.flatten())
    return values.view(index.shape + (num_groups, -1))


def _mix(coefficient: Tensor, sample_weights: Tensor) -> Tensor:
    """Bilinear coefficient x attention weight per neighbour row and group, [K, L*4, G]."""
    return (coefficient[..., None] * sample_weights[:, :, None, :]).flatten(1, 2)


def _coefficient_backward(grad_coefficient: Tensor, plan: _Plan) -> Tensor:
    """Chain the gradient of the [K, L, 4] bilinear coefficients to the normalised (u, v), [K, 2]."""
    fx, fy = plan.fraction.unbind(-1)
    grad = grad_coefficient * plan.valid
    # coefficient order (dy, dx): (0,0)=(1-fy)(1-fx), (0,1)=(1-fy)fx, (1,0)=fy(1-fx), (1,1)=fy fx
    grad_fx = (1 - fy) * (grad[..., 1] - grad[..., 0]) + fy * (grad[..., 3] - grad[..., 2])
    grad_fy = (1 - fx) * (grad[..., 2] - grad[..., 0]) + fx * (grad[..., 3] - grad[..., 1])
    # x = u * w - 0.5, y = v * h - 0.5
    size = plan.size.to(grad.dtype)
    return torch.stack([(grad_fx * size[..., 0]).sum(1), (grad_fy * size[..., 1]).sum(1)], dim=-1)
