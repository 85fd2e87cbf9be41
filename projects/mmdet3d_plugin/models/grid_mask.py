"""GridMask augmentation applied to the normalised images inside the detector (training only)."""
from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["GridMask"]


class GridMask(nn.Module):
    """Zero a regular grid of stripes (or everything but the stripes) in every image of the batch.

    One mask is drawn per call and shared by every image and channel. The mask is drawn on a canvas
    1.5 times the image size with period ``d`` in [2, h), stripe length ``round(d * ratio)`` clamped to
    [1, d - 1] and random start offsets in [0, d), then centre-cropped to the image size.

    Upstream draws with NumPy's global RNG and builds the mask on the CPU before ``.cuda()``; here the
    scalars come from a ``torch.Generator`` (seeded with ``seed``, or torch's global RNG when ``seed`` is
    None, so ``torch.manual_seed`` makes runs repeatable) and the mask is built on the input's device.

    Args:
        use_h: draw horizontal stripes (rows).
        use_w: draw vertical stripes (columns).
        rotate: rotation angle is drawn from ``range(rotate)`` degrees. Upstream's configs use 1, i.e. no
            rotation; only ``rotate=1`` is supported (a PIL rotation of the canvas is not reproduced).
        offset: fill masked pixels with uniform noise in [-1, 1) instead of zero.
        ratio: stripe length relative to the period.
        mode: 0 zeroes the stripes; 1 keeps the stripes and zeroes everything else.
        prob: probability of applying the mask to a batch.
        seed: seed of the private generator; None uses torch's global RNG.
    """

    def __init__(
        self,
        use_h: bool,
        use_w: bool,
        rotate: int = 1,
        offset: bool = False,
        ratio: float = 0.5,
        mode: int = 0,
        prob: float = 1.0,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__()
        if rotate != 1:
            raise ValueError(f"GridMask: rotate={rotate} is not supported; upstream's configs use rotate=1 (no rotation).")
        if mode not in (0, 1):
            raise ValueError(f"GridMask: mode must be 0 or 1, got {mode}.")
        self.use_h = use_h
        self.use_w = use_w
        self.rotate = rotate
        self.offset = offset
        self.ratio = ratio
        self.mode = mode
        self.st_prob = prob
        self.prob = prob
        self.generator = None
        if seed is not None:
            self.generator = torch.Generator()
            self.generator.manual_seed(seed)

    def set_prob(self, epoch: int, max_epoch: int) -> None:
        """Linear ramp of the probability over training (unused by the SparseDrive configs)."""
        self.prob = self.st_prob * epoch / max_epoch

    def _randint(self, low: int, high: int) -> int:
        return int(torch.randint(low, high, (1,), generator=self.generator).item())

    def _stripes(self, size: int, canvas: int, d: int, length: int, start: int, device: torch.device) -> Tensor:
        """Whether each of the ``size`` centre-cropped positions of a ``canvas``-long axis lies on a stripe, [size]."""
        pos = torch.arange(size, device=device) + (canvas - size) // 2 - start
        period_index = torch.div(pos, d, rounding_mode="floor")
        return (pos >= 0) & (period_index < canvas // d) & (pos - period_index * d < length)

    def make_mask(self, h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Draw one mask, [h, w], 1 where the image is kept."""
        hh, ww = int(1.5 * h), int(1.5 * w)
        d = self._randint(2, h)
        length = min(max(int(d * self.ratio + 0.5), 1), d - 1)
        st_h = self._randint(0, d)
        st_w = self._randint(0, d)
        on_stripe = torch.zeros(h, w, dtype=torch.bool, device=device)
        if self.use_h:
            on_stripe |= self._stripes(h, hh, d, length, st_h, device)[:, None]
        if self.use_w:
            on_stripe |= self._stripes(w, ww, d, length, st_w, device)[None, :]
        keep = on_stripe if self.mode == 1 else ~on_stripe
        return keep.to(dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Mask a batch of images.

        Args:
            x: images, [B*N, 3, H, W].
        Returns:
            Masked images, same shape and dtype.
        """
        if not self.training:
            return x
        if float(torch.rand(1, generator=self.generator)) > self.prob:
            return x
        h, w = x.shape[-2:]
        mask = self.make_mask(h, w, x.device, x.dtype)
        if self.offset:
            noise = torch.rand(h, w, generator=self.generator).to(device=x.device, dtype=x.dtype) * 2 - 1
            return x * mask + noise * (1 - mask)
        return x * mask
