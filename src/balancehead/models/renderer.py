"""Volume rendering: stratified + importance sampling along camera rays, alpha compositing.

For samples t_1 < ... < t_S along a ray, density and features are averaged over each interval
[t_i, t_{i+1}] (midpoint rule), alpha_i = 1 - exp(-sigma_i * delta_i), transmittance
T_i = prod_{j<i} (1 - alpha_j), weight w_i = alpha_i * T_i. Outputs:
feature image sum w_i f_i, opacity/mask sum w_i, depth sum w_i t_i / sum w_i (expected depth of
the visible surface, clamped into the ray range).

Randomness: jitter and importance samples come from an explicit torch.Generator; with
generator=None sampling is deterministic (interval midpoints, evenly spaced CDF quantiles).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .rays import rays_from_labels

# field(points (B, N, 3), directions (B, N, 3)) -> density (B, N, 1), features (B, N, F)
Field = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class RenderOutput:
    features: torch.Tensor  # (B, F, H, W)
    depth: torch.Tensor     # (B, 1, H, W)
    mask: torch.Tensor      # (B, 1, H, W) accumulated opacity


def _uniform(shape, generator, device):
    if generator is None:
        return torch.full(shape, 0.5, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def stratified_depths(b, n_rays, n_samples, ray_start, ray_end, generator=None, device="cpu"):
    """One sample in each of n_samples equal bins of [ray_start, ray_end] -> (B, R, S)."""
    edges = torch.linspace(0, 1, n_samples + 1, device=device)[:-1]
    jitter = _uniform((b, n_rays, n_samples), generator, device) / n_samples
    return ray_start + (ray_end - ray_start) * (edges + jitter)


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, n_samples: int, generator=None) -> torch.Tensor:
    """Inverse-CDF sampling of the piecewise-constant pdf `weights` (B, R, K) on `bins` (B, R, K+1)."""
    weights = weights + 1e-5  # keeps the CDF strictly increasing on empty rays
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, -1)], -1)
    shape = (*cdf.shape[:-1], n_samples)
    if generator is None:
        u = ((torch.arange(n_samples, device=cdf.device, dtype=cdf.dtype) + 0.5) / n_samples).expand(shape).contiguous()
    else:
        u = _uniform(shape, generator, cdf.device).to(cdf.dtype).contiguous()
    idx = torch.searchsorted(cdf.contiguous(), u, right=True)
    lo = (idx - 1).clamp(0, cdf.shape[-1] - 1)
    hi = idx.clamp(0, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, lo), cdf.gather(-1, hi)
    bin_lo, bin_hi = bins.gather(-1, lo), bins.gather(-1, hi)
    span = torch.where(cdf_hi - cdf_lo < 1e-5, torch.ones_like(cdf_lo), cdf_hi - cdf_lo)
    return bin_lo + (u - cdf_lo) / span * (bin_hi - bin_lo)


def composite(depths, density, features):
    """depths (B, R, S, 1), density (B, R, S, 1), features (B, R, S, F) -> (features, depth, opacity, weights)."""
    delta = depths[:, :, 1:] - depths[:, :, :-1]
    mid_density = (density[:, :, 1:] + density[:, :, :-1]) / 2
    mid_features = (features[:, :, 1:] + features[:, :, :-1]) / 2
    mid_depth = (depths[:, :, 1:] + depths[:, :, :-1]) / 2
    alpha = 1 - torch.exp(-mid_density * delta)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], dim=2), dim=2)[:, :, :-1]
    weights = alpha * transmittance
    opacity = weights.sum(dim=2)
    feats = (weights * mid_features).sum(dim=2)
    depth = (weights * mid_depth).sum(dim=2) / (opacity + 1e-8)
    depth = torch.nan_to_num(depth, float("inf"))
    depth = depth.clamp(depths.min(), depths.max())
    return feats, depth, opacity, weights


class VolumeRenderer(torch.nn.Module):
    """Renders a field from cameras. No parameters; configuration is plain numbers."""

    def __init__(self, ray_start: float, ray_end: float, n_coarse: int, n_importance: int):
        super().__init__()
        self.ray_start, self.ray_end = ray_start, ray_end
        self.n_coarse, self.n_importance = n_coarse, n_importance

    def _evaluate(self, field: Field, origins, dirs, depths):
        b, r, s, _ = depths.shape
        points = (origins[:, :, None] + dirs[:, :, None] * depths).reshape(b, r * s, 3)
        view = dirs[:, :, None].expand(b, r, s, 3).reshape(b, r * s, 3)
        density, features = field(points, view)
        return density.reshape(b, r, s, 1), features.reshape(b, r, s, -1)

    def render_rays(self, field: Field, origins, dirs, generator=None):
        b, r, _ = origins.shape
        depths = stratified_depths(b, r, self.n_coarse, self.ray_start, self.ray_end, generator, origins.device)[..., None]
        density, features = self._evaluate(field, origins, dirs, depths)
        if self.n_importance > 0:
            _, _, _, weights = composite(depths, density, features)
            mids = (depths[:, :, 1:, 0] + depths[:, :, :-1, 0]) / 2
            bins = torch.cat([depths[:, :, :1, 0], mids, depths[:, :, -1:, 0]], dim=-1)  # S+1 edges
            w = torch.cat([weights[..., 0], weights[:, :, -1:, 0]], dim=-1)  # one weight per bin
            fine = sample_pdf(bins.detach(), w.detach(), self.n_importance, generator)[..., None]
            d_fine, f_fine = self._evaluate(field, origins, dirs, fine)
            depths = torch.cat([depths, fine], dim=2)
            density = torch.cat([density, d_fine], dim=2)
            features = torch.cat([features, f_fine], dim=2)
            depths, order = torch.sort(depths, dim=2)
            density = density.gather(2, order)
            features = features.gather(2, order.expand(-1, -1, -1, features.shape[-1]))
        feats, depth, opacity, _ = composite(depths, density, features)
        return feats, depth, opacity

    def forward(self, field: Field, camera_label: torch.Tensor, resolution: int, generator=None) -> RenderOutput:
        origins, dirs = rays_from_labels(camera_label, resolution)
        feats, depth, opacity = self.render_rays(field, origins, dirs, generator)
        b = camera_label.shape[0]

        def image(t):
            return t.permute(0, 2, 1).reshape(b, t.shape[-1], resolution, resolution)

        return RenderOutput(features=image(feats), depth=image(depth), mask=image(opacity))
