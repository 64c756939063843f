"""Schedules that change with training progress (EG3D / PanoHead `training/loss.py`): neural rendering
resolution, blur of D's inputs and the probability of swapping G's camera label.

* Neural rendering resolution, `linear` (EG3D/PanoHead): int(rint(initial * (1 - a) + final * a)) with
  a = min(kimg / fade_kimg, 1); `pow2` (our former choice): linear in log2, floored to a power of two.
  Real images are downsampled to the same size for D's I input.
* Blur sigma starts at `blur_init_sigma` and fades linearly to zero over `blur_fade_kimg`, which keeps
  early D gradients smooth; `blur_eg3d` is EG3D's kernel, `blur` a plain Gaussian.
* Swap probability fades from 1 (always swap, i.e. no pose conditioning) to `swap_prob` over
  `swap_fade_kimg` (PanoHead's gpc_reg_prob / gpc_reg_fade_kimg), and jumps back to 1 at
  `swap_to_one_kimg` when that is set (BalanceHead Fig. 2(b): view conditioning disabled mid-training).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F


def neural_resolution(kimg: float, initial: int, final: int, fade_kimg: float, mode: str = "linear") -> int:
    if fade_kimg <= 0 or initial >= final:
        return final
    t = min(kimg / fade_kimg, 1.0)
    if mode == "linear":
        return int(np.rint(initial * (1 - t) + final * t))
    log_r = math.log2(initial) + t * (math.log2(final) - math.log2(initial))
    return int(2 ** math.floor(log_r + 1e-9))


def blur_sigma(kimg: float, init_sigma: float, fade_kimg: float) -> float:
    if init_sigma <= 0:
        return 0.0
    if fade_kimg <= 0:
        return 0.0
    return max(1.0 - kimg / fade_kimg, 0.0) * init_sigma


def swap_probability(kimg: float, swap_prob: float, fade_kimg: float, to_one_kimg: float | None = None) -> float:
    """PanoHead: (1 - a) * 1 + a * swap_prob with a = min(kimg / fade_kimg, 1) (a = 1 when fade_kimg is 0).
    From `to_one_kimg` on (when set) the probability is 1: the camera label is always another row's, i.e.
    view conditioning is switched off mid-training (BalanceHead §3, Fig. 2(b))."""
    if to_one_kimg is not None and kimg >= to_one_kimg:
        return 1.0
    a = min(kimg / fade_kimg, 1.0) if fade_kimg > 0 else 1.0
    return (1 - a) + a * swap_prob


def eg3d_blur_filter(sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """EG3D/PanoHead's blur taps 2^-(x/sigma)^2 for |x| <= floor(3 sigma), normalised (empty below sigma 1/3)."""
    size = math.floor(sigma * 3)
    if size <= 0:
        return torch.ones(1, device=device, dtype=dtype)
    f = torch.arange(-size, size + 1, device=device, dtype=dtype).div(sigma).square().neg().exp2()
    return f / f.sum()


def blur_eg3d(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """EG3D's D-input blur: the separable filter of `eg3d_blur_filter` with zero padding (same size out)."""
    size = math.floor(sigma * 3)
    if size <= 0:
        return x
    f = eg3d_blur_filter(sigma, x.device, x.dtype)      # built on the device: no host copy
    c = x.shape[1]
    x = F.conv2d(x, f.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, size), groups=c)
    return F.conv2d(x, f.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(size, 0), groups=c)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (reflect padding); identity for sigma <= 0."""
    if sigma <= 0:
        return x
    radius = int(math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad = min(radius, x.shape[-1] - 1)
    if pad < radius:
        k = k[radius - pad: radius + pad + 1]
        k = k / k.sum()
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased bilinear resize (real I at the neural resolution)."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1])
