"""ops.feature_maps_format: flat layout, offsets and the inverse."""
import torch

from projects.mmdet3d_plugin.ops import feature_maps_format

SMALL_CONFIG_LEVELS = ((64, 176), (32, 88), (16, 44), (8, 22))  # strides 4..32 of a 256 x 704 image


def test_offsets_match_upstream_for_256x704_images():
    maps = [torch.zeros(1, 6, 1, h, w) for h, w in SMALL_CONFIG_LEVELS]
    col_feats, spatial_shape, scale_start_index = feature_maps_format(maps)
    expected = torch.tensor([[14960 * n + s for s in (0, 11264, 14080, 14784)] for n in range(6)])
    assert col_feats.shape == (1, 6 * 14960, 1), f"col_feats shape {tuple(col_feats.shape)}"
    assert spatial_shape.dtype == scale_start_index.dtype == torch.int64, "index tensors must be int64"
    assert torch.equal(spatial_shape, torch.tensor([SMALL_CONFIG_LEVELS] * 6)), "spatial_shape is not (h, w)"
    assert torch.equal(scale_start_index, expected), f"offsets {scale_start_index.tolist()}"


def test_layout_is_camera_major_then_level_then_row_major_pixel_channel_last():
    maps = [torch.randn(2, 3, 5, 4, 6), torch.randn(2, 3, 5, 2, 3)]
    col_feats, _, scale_start_index = feature_maps_format(maps)
    cam, level, y, x = 2, 1, 1, 2
    row = scale_start_index[cam, level] + y * 3 + x
    assert torch.equal(col_feats[:, row], maps[level][:, cam, :, y, x]), "pixel (y, x) is not at start + y * w + x"


def test_inverse_restores_the_maps():
    maps = [torch.randn(2, 3, 5, 4, 6), torch.randn(2, 3, 5, 2, 3)]
    restored = feature_maps_format(feature_maps_format(maps), inverse=True)
    assert len(restored) == 1, "cameras of one shape must form one group"
    for level, (orig, back) in enumerate(zip(maps, restored[0])):
        assert torch.equal(orig, back), f"level {level} differs after the round trip"


def test_camera_groups_of_different_sizes_get_shifted_offsets_and_invert():
    group_a = [torch.randn(1, 2, 4, 4, 6), torch.randn(1, 2, 4, 2, 3)]
    group_b = [torch.randn(1, 1, 4, 2, 2), torch.randn(1, 1, 4, 1, 1)]
    col_feats, spatial_shape, scale_start_index = feature_maps_format([group_a, group_b])
    assert spatial_shape.shape == (3, 2, 2) and col_feats.shape == (1, 2 * 30 + 5, 4), "wrong packed shapes"
    assert scale_start_index[2].tolist() == [60, 64], f"third camera offsets {scale_start_index[2].tolist()}"
    restored = feature_maps_format([col_feats, spatial_shape, scale_start_index], inverse=True)
    assert len(restored) == 2, "two camera shapes must give two groups"
    assert all(torch.equal(a, b) for a, b in zip(group_b, restored[1])), "second group differs after the round trip"
