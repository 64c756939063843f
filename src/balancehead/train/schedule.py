"""Schedules that change with training progress (EG3D): neural rendering resolution and blur.

The neural rendering resolution grows linearly in log2 from `initial` to `final` over `fade_kimg`;
real images are downsampled to the same size for D's I input. Blur on D's inputs (real and fake)
starts at `blur_init_sigma` and fades linearly to zero, which keeps early D gradients smooth.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def neural_resolution(kimg: float, initial: int, final: int, fade_kimg: float) -> int:
    if fade_kimg <= 0 or initial >= final:
        return final
    t = min(kimg / fade_kimg, 1.0)
    log_r = math.log2(initial) + t * (math.log2(final) - math.log2(initial))
    return int(2 ** math.floor(log_r + 1e-9))


def blur_sigma(kimg: float, init_sigma: float, fade_kimg: float) -> float:
    if init_sigma <= 0:
        return 0.0
    if fade_kimg <= 0:
        return 0.0
    return max(1.0 - kimg / fade_kimg, 0.0) * init_sigma


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
