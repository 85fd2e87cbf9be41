"""Triton kernels of deformable aggregation (imported only by ``triton.py``, which handles a missing triton).

Layouts (all contiguous): features fp32 [B, F, C]; spatial_shape int32 [N, L, 2] as (h, w);
scale_start_index int32 [N, L]; locations fp32 [B, A, P, N, 2]; weights fp32 [B, A, P, N, L, G];
output / grad_output fp32 [B, A, C]. A channel tile is [BLOCK_G, BLOCK_CG] = (group, channel in group).
Accumulation is fp32. Semantics as ``reference.py``: samples outside the open unit square are skipped,
pixel position is ``loc * size - 0.5``, neighbours outside the map read as zero.
"""
import triton
import triton.language as tl


@triton.jit
def _corner(feat_base, start, xi, yi, width, height, channel, channel_mask, NUM_CHANNELS: tl.constexpr):
    """One bilinear neighbour: its [BLOCK_G, BLOCK_CG] values (0 outside the map) and whether it is inside."""
    inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
    row = (start + yi * width + xi).to(tl.int64)
    values = tl.load(feat_base + row * NUM_CHANNELS + channel, mask=channel_mask & inside, other=0.0)
    return values, inside, row


@triton.jit
def _pixel_position(shape_ptr, start_ptr, cam, level, num_levels, u, v):
    """Level ``level`` of camera ``cam``: top-left neighbour (x0, y0), fractions (fx, fy), size and start row."""
    height = tl.load(shape_ptr + (cam * num_levels + level) * 2)
    width = tl.load(shape_ptr + (cam * num_levels + level) * 2 + 1)
    start = tl.load(start_ptr + cam * num_levels + level)
    x = u * width - 0.5
    y = v * height - 0.5
    x0f = tl.floor(x)
    y0f = tl.floor(y)
    return x0f.to(tl.int32), y0f.to(tl.int32), x - x0f, y - y0f, width, height, start


@triton.jit
def _bilinear(fx, fy, v00, v01, v10, v11):
    """Interpolate the four neighbours (v_dy_dx) at fractional offsets (fx, fy)."""
    return (1 - fy) * ((1 - fx) * v00 + fx * v01) + fy * ((1 - fx) * v10 + fx * v11)


@triton.jit
def forward_kernel(
    feat_ptr,
    shape_ptr,
    start_ptr,
    loc_ptr,
    weight_ptr,
    out_ptr,
    num_feat,
    num_anchor,
    num_pts,
    num_cams,
    num_levels,
    NUM_CHANNELS: tl.constexpr,
    NUM_GROUPS: tl.constexpr,
    GROUP_DIM: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_CG: tl.constexpr,
):
    """One program per (b, a): loops over points, cameras and levels, writes out[b, a, :]."""
    anchor = tl.program_id(0)
    batch = anchor // num_anchor
    group = tl.arange(0, BLOCK_G)[:, None]
    channel = group * GROUP_DIM + tl.arange(0, BLOCK_CG)[None, :]
    channel_mask = (group < NUM_GROUPS) & (tl.arange(0, BLOCK_CG)[None, :] < GROUP_DIM)
    feat_base = feat_ptr + batch.to(tl.int64) * num_feat * NUM_CHANNELS
    acc = tl.zeros((BLOCK_G, BLOCK_CG), dtype=tl.float32)
    for pt in range(num_pts):
        for cam in range(num_cams):
            sample = (anchor * num_pts + pt) * num_cams + cam
            u = tl.load(loc_ptr + sample * 2)
            v = tl.load(loc_ptr + sample * 2 + 1)
            if (u > 0) & (u < 1) & (v > 0) & (v < 1):
                for level in range(num_levels):
                    x0, y0, fx, fy, width, height, start = _pixel_position(
                        shape_ptr, start_ptr, cam, level, num_levels, u, v
                    )
                    v00, _, _ = _corner(feat_base, start, x0, y0, width, height, channel, channel_mask, NUM_CHANNELS)
                    v01, _, _ = _corner(feat_base, start, x0 + 1, y0, width, height, channel, channel_mask, NUM_CHANNELS)
                    v10, _, _ = _corner(feat_base, start, x0, y0 + 1, width, height, channel, channel_mask, NUM_CHANNELS)
                    v11, _, _ = _corner(
                        feat_base, start, x0 + 1, y0 + 1, width, height, channel, channel_mask, NUM_CHANNELS
                    )
                    sampled = _bilinear(fx, fy, v00, v01, v10, v11)
                    weight = tl.load(
                        weight_ptr + (sample * num_levels + level) * NUM_GROUPS + group,
                        mask=group < NUM_GROUPS,
                        other=0.0,
                    )
                    acc += weight * sampled
    tl.store(out_ptr + anchor.to(tl.int64) * NUM_CHANNELS + channel, acc, mask=channel_mask)


@triton.jit
def backward_kernel(
    feat_ptr,
    shape_ptr,
    start_ptr,
    loc_ptr,
    weight_ptr,
    grad_out_ptr,
    grad_feat_ptr,
    grad_loc_ptr,
    grad_weight_ptr,
    num_feat,
    num_anchor,
    num_pts,
    num_cams,
    num_levels,
    NUM_CHANNELS: tl.constexpr,
    NUM_GROUPS: tl.constexpr,
    GROUP_DIM: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_CG: tl.constexpr,
):
    """One program per sample (b, a, p, n): gradients of its weights and location, atomic adds to features.

    The three gradient buffers must be zero-initialised; skipped samples leave them untouched.
    """
    sample = tl.program_id(0)
    anchor = sample // (num_pts * num_cams)
    cam = sample % num_cams
    batch = anchor // num_anchor
    u = tl.load(loc_ptr + sample * 2)
    v = tl.load(loc_ptr + sample * 2 + 1)
    if (u > 0) & (u < 1) & (v > 0) & (v < 1):
        group_1d = tl.arange(0, BLOCK_G)
        group = group_1d[:, None]
        channel = group * GROUP_DIM + tl.arange(0, BLOCK_CG)[None, :]
        channel_mask = (group < NUM_GROUPS) & (tl.arange(0, BLOCK_CG)[None, :] < GROUP_DIM)
        feat_base = feat_ptr + batch.to(tl.int64) * num_feat * NUM_CHANNELS
        grad_feat_base = grad_feat_ptr + batch.to(tl.int64) * num_feat * NUM_CHANNELS
        grad_out = tl.load(
            grad_out_ptr + anchor.to(tl.int64) * NUM_CHANNELS + channel, mask=channel_mask, other=0.0
        )
        grad_u = 0.0
        grad_v = 0.0
        for level in range(num_levels):
            x0, y0, fx, fy, width, height, start = _pixel_position(shape_ptr, start_ptr, cam, level, num_levels, u, v)
            v00, in00, r00 = _corner(feat_base, start, x0, y0, width, height, channel, channel_mask, NUM_CHANNELS)
            v01, in01, r01 = _corner(feat_base, start, x0 + 1, y0, width, height, channel, channel_mask, NUM_CHANNELS)
            v10, in10, r10 = _corner(feat_base, start, x0, y0 + 1, width, height, channel, channel_mask, NUM_CHANNELS)
            v11, in11, r11 = _corner(
                feat_base, start, x0 + 1, y0 + 1, width, height, channel, channel_mask, NUM_CHANNELS
            )
            weight_offset = (sample * num_levels + level) * NUM_GROUPS
            weight = tl.load(weight_ptr + weight_offset + group, mask=group < NUM_GROUPS, other=0.0)
            sampled = _bilinear(fx, fy, v00, v01, v10, v11)
            tl.store(
                grad_weight_ptr + weight_offset + group_1d,
                tl.sum(grad_out * sampled, axis=1),
                mask=group_1d < NUM_GROUPS,
            )
            grad_sampled = grad_out * weight
            grad_fx = tl.sum(tl.sum(grad_sampled * ((1 - fy) * (v01 - v00) + fy * (v11 - v10)), axis=1), axis=0)
            grad_fy = tl.sum(tl.sum(grad_sampled * ((1 - fx) * (v10 - v00) + fx * (v11 - v01)), axis=1), axis=0)
            grad_u += grad_fx * width
            grad_v += grad_fy * height
            tl.atomic_add(
                grad_feat_base + r00 * NUM_CHANNELS + channel,
                grad_sampled * ((1 - fx) * (1 - fy)),
                mask=channel_mask & in00,
            )
            tl.atomic_add(
                grad_feat_base + r01 * NUM_CHANNELS + channel, grad_sampled * (fx * (1 - fy)), mask=channel_mask & in01
            )
            tl.atomic_add(
                grad_feat_base + r10 * NUM_CHANNELS + channel, grad_sampled * ((1 - fx) * fy), mask=channel_mask & in10
            )
            tl.atomic_add(grad_feat_base + r11 * NUM_CHANNELS + channel, grad_sampled * (fx * fy), mask=channel_mask & in11)
        tl.store(grad_loc_ptr + sample * 2, grad_u)
        tl.store(grad_loc_ptr + sample * 2 + 1, grad_v)
