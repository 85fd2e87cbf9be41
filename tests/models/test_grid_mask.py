"""GridMask: upstream's stripe geometry, shared mask, seeding, eval no-op."""
import numpy as np
import pytest
import torch

from projects.mmdet3d_plugin.models.grid_mask import GridMask


def _upstream_mask(h: int, w: int, d: int, length: int, st_h: int, st_w: int, mode: int) -> np.ndarray:
    """Upstream's loop: stripes on a 1.5x canvas, centre crop, optional inversion."""
    hh, ww = int(1.5 * h), int(1.5 * w)
    mask = np.ones((hh, ww), np.float32)
    for i in range(hh // d):
        s = d * i + st_h
        mask[s:min(s + length, hh), :] = 0
    for i in range(ww // d):
        s = d * i + st_w
        mask[:, s:min(s + length, ww)] = 0
    mask = mask[(hh - h) // 2:(hh - h) // 2 + h, (ww - w) // 2:(ww - w) // 2 + w]
    return 1 - mask if mode == 1 else mask


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("seed", [0, 3, 11])
def test_mask_matches_upstream_loop_for_the_drawn_parameters(mode, seed):
    h, w = 20, 44
    grid = GridMask(True, True, rotate=1, ratio=0.5, mode=mode, prob=1.0, seed=seed)
    mask = grid.make_mask(h, w, torch.device("cpu"), torch.float32)
    replay = torch.Generator().manual_seed(seed)
    d = int(torch.randint(2, h, (1,), generator=replay))
    st_h = int(torch.randint(0, d, (1,), generator=replay))
    st_w = int(torch.randint(0, d, (1,), generator=replay))
    length = min(max(int(d * 0.5 + 0.5), 1), d - 1)
    expected = _upstream_mask(h, w, d, length, st_h, st_w, mode)
    assert mask.shape == (h, w), f"mask shape {tuple(mask.shape)} != {(h, w)}"
    assert np.array_equal(mask.numpy(), expected), f"mask differs from upstream's loop (d={d}, st=({st_h},{st_w}))"


def test_one_mask_shared_by_every_image_and_channel_and_values_binary():
    x = torch.ones(4, 3, 16, 24)
    out = GridMask(True, True, mode=1, prob=1.0, seed=1).train()(x)
    assert out.shape == x.shape and out.dtype == x.dtype, "shape/dtype must be preserved"
    assert torch.all((out == 0) | (out == 1)), "mask of ones must be binary"
    assert torch.equal(out, out[:1, :1].expand_as(out)), "all images and channels must share one mask"
    assert 0 < out.mean() < 1, "a drawn mask both keeps and zeroes pixels"


def test_eval_mode_and_zero_probability_leave_images_untouched():
    x = torch.randn(2, 3, 8, 12)
    grid = GridMask(True, True, mode=1, prob=1.0, seed=0)
    assert grid.eval()(x) is x, "eval mode must not mask"
    assert GridMask(True, True, prob=0.0, seed=0).train()(x) is x, "prob=0 must not mask"


def test_same_seed_same_masks_and_global_seed_repeatable():
    x = torch.randn(2, 3, 16, 24, dtype=torch.float64)
    a = GridMask(True, True, mode=1, prob=0.7, seed=5).train()
    b = GridMask(True, True, mode=1, prob=0.7, seed=5).train()
    for _ in range(4):
        assert torch.equal(a(x), b(x)), "same seed must give the same sequence of masks"
    c = GridMask(True, True, mode=1, prob=0.7).train()
    torch.manual_seed(7)
    first = [c(x) for _ in range(3)]
    torch.manual_seed(7)
    second = [c(x) for _ in range(3)]
    assert all(torch.equal(p, q) for p, q in zip(first, second)), "seed=None must follow torch.manual_seed"


def test_rotation_other_than_upstream_no_op_is_refused():
    with pytest.raises(ValueError, match="rotate"):
        GridMask(True, True, rotate=5)
