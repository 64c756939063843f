"""Reconstruction metrics on images in [0, 1] (or [-1, 1] with `data_range=2`): PSNR and SSIM
(Wang et al. 2004: Gaussian window 11, σ = 1.5, K1 = 0.01, K2 = 0.03, valid filtering), and
multi-scale SSIM for the offline perceptual loss. All are differentiable torch functions on
(B, C, H, W) tensors and return one value per image."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    mse = (x.float() - y.float()).square().flatten(1).mean(1)
    return 10.0 * torch.log10(data_range ** 2 / mse.clamp_min(1e-20))


def _gauss(size: int, sigma: float, device, dtype) -> torch.Tensor:
    t = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-t.square() / (2 * sigma * sigma))
    return g / g.sum()


def _filter(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    k = win.numel()
    x = F.conv2d(x, win.view(1, 1, 1, k).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, win.view(1, 1, k, 1).repeat(c, 1, 1, 1), groups=c)


def _ssim_parts(x, y, data_range, win_size, sigma):
    size = min(win_size, x.shape[-1], x.shape[-2])
    size -= (size + 1) % 2  # odd
    win = _gauss(size, sigma, x.device, x.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _filter(x, win), _filter(y, win)
    sxx = _filter(x * x, win) - mx * mx
    syy = _filter(y * y, win) - my * my
    sxy = _filter(x * y, win) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return lum * cs, cs


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    s, _ = _ssim_parts(x.float(), y.float(), data_range, win_size, sigma)
    return s.flatten(1).mean(1)


MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, min_size: int = 8) -> torch.Tensor:
    """Multi-scale SSIM with as many of the 5 standard scales as the image allows (side >= min_size
    at the coarsest). Contrast terms are clamped at 0 so the product stays real under optimisation."""
    x, y = x.float(), y.float()
    levels = max(1, min(len(MS_WEIGHTS), int(math.log2(min(x.shape[-2:]) / min_size)) + 1))
    w = torch.tensor(MS_WEIGHTS[:levels], device=x.device)
    w = w / w.sum()
    out = torch.ones(x.shape[0], device=x.device)
    for i in range(levels):
        s, cs = _ssim_parts(x, y, data_range, 11, 1.5)
        term = (s if i == levels - 1 else cs).flatten(1).mean(1).clamp_min(1e-6)
        out = out * term ** w[i]
        if i < levels - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return out
