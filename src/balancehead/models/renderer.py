"""Volume rendering exactly as EG3D's ImportanceRenderer + MipRayMarcher2 (EG3D §4, Supp. B).

Along each ray, `n_coarse` depths t_i = ray_start + i * delta + u_i * delta (i = 0..S-1,
delta = (ray_end - ray_start) / (S - 1), u_i uniform) -- note the last bin reaches past ray_end, as
in EG3D. Marching, for adjacent samples: delta_i = t_{i+1} - t_i, the *raw* densities and the
features are averaged over the interval and then the density is activated, sigma = softplus(mean - 1);
alpha_i = 1 - exp(-sigma_i delta_i), T_i = prod_{j<i} (1 - alpha_j + 1e-10), w_i = alpha_i T_i.
Outputs: features sum w_i f_i, opacity sum w_i, depth sum w_i t_mid / sum w_i with NaN -> +inf and a
clamp to [min t, max t] (an empty ray with all weights 0 gets the far end).
Importance sampling: the coarse weights are max-pooled (2, stride 1, pad 1), average-pooled (2),
+0.01, and `n_importance` depths are drawn by inverse-CDF sampling over the coarse midpoints.

`density_order="activate_then_mean"` keeps this project's former order (softplus per sample, then
the interval mean) as a named option; the default is EG3D's.

Randomness: the stratified jitter and the importance uniforms come from an explicit torch.Generator,
drawn in EG3D's order and shapes (B, R, S, 1) then (B*R, n_importance), so a generator seeded like
the global RNG reproduces the official renderer's draws. generator=None is deterministic
(u = 0.5 jitter, evenly spaced CDF quantiles).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .decoder import activate_density
from .rays import rays_from_labels

# field(points (B, N, 3), directions (B, N, 3)) -> raw density (B, N, 1), features (B, N, F)
Field = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
DENSITY_ORDERS = ("mean_then_activate", "activate_then_mean")


@dataclass
class RenderOutput:
    features: torch.Tensor  # (B, F, H, W), composited colour features in the decoder's [0, 1] range
    depth: torch.Tensor     # (B, 1, H, W)
    mask: torch.Tensor      # (B, 1, H, W) accumulated opacity (sum of weights)


def _uniform(shape, generator, device):
    if generator is None:
        return torch.full(shape, 0.5, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def stratified_depths(b, n_rays, n_samples, ray_start, ray_end, generator=None, device="cpu"):
    """EG3D sample_stratified -> (B, R, S, 1)."""
    depths = torch.linspace(ray_start, ray_end, n_samples, device=device).reshape(1, 1, n_samples, 1).repeat(b, n_rays, 1, 1)
    delta = (ray_end - ray_start) / (n_samples - 1)
    return depths + _uniform(depths.shape, generator, device) * delta


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, n_samples: int, generator=None, eps: float = 1e-5):
    """Inverse-CDF sampling (NeRF / EG3D): bins (N, K+1), weights (N, K) -> (N, n_samples)."""
    n_rays, k = weights.shape
    weights = weights + eps
    pdf = weights / torch.sum(weights, -1, keepdim=True)
    cdf = torch.cumsum(pdf, -1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], -1)
    if generator is None:
        u = torch.linspace(0, 1, n_samples, device=bins.device).expand(n_rays, n_samples)
    else:
        u = _uniform((n_rays, n_samples), generator, bins.device)
    u = u.contiguous()
    inds = torch.searchsorted(cdf, u, right=True)
    below = torch.clamp_min(inds - 1, 0)
    above = torch.clamp_max(inds, k)
    idx = torch.stack([below, above], -1).view(n_rays, 2 * n_samples)
    cdf_g = torch.gather(cdf, 1, idx).view(n_rays, n_samples, 2)
    bins_g = torch.gather(bins, 1, idx).view(n_rays, n_samples, 2)
    denom = cdf_g[..., 1] - cdf_g[..., 0]
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)
    return bins_g[..., 0] + (u - cdf_g[..., 0]) / denom * (bins_g[..., 1] - bins_g[..., 0])


class _CumprodPositive(torch.autograd.Function):
    """torch.cumprod for inputs known to be non-zero, with a backward that never reads the device.

    ATen's cumprod backward has asked whether the input holds a zero (`is_zero.any().item()`) before
    its zero-free formula: a host synchronisation in every generator backward wherever that code
    runs (the pinned torch 2.14 no longer asks; the GPU image's 2.11 failed the sync test inside the
    generator backward). Transmittance factors are 1 - alpha + 1e-10 > 0, so only the zero-free
    formula is needed: d x_k = (sum_{j >= k} y_j g_j) / x_k, computed in the pinned torch's order
    (flip, cumsum, flip, divide), so the gradient is the same numbers without the question.
    """

    @staticmethod
    def forward(ctx, x, dim):
        y = torch.cumprod(x, dim)
        ctx.save_for_backward(x, y)
        ctx.dim = dim
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        w = (y * grad).flip(ctx.dim).cumsum(ctx.dim).flip(ctx.dim)
        return (w / x).to(x.dtype), None


def cumprod_positive(x: torch.Tensor, dim: int) -> torch.Tensor:
    """cumprod(x, dim) for x without zeros (see _CumprodPositive); plain cumprod when no gradient is
    needed, or in half precision, where 1e-10 rounds to zero and the zero-aware formula is required."""
    if not (torch.is_grad_enabled() and x.requires_grad) or x.dtype not in (torch.float32, torch.float64):
        return torch.cumprod(x, dim)
    return _CumprodPositive.apply(x, dim)


def march_weights(depths, density, density_order: str = "mean_then_activate"):
    """depths (B, R, S, 1), raw density (B, R, S, 1) -> the interval weights w_i = alpha_i T_i (B, R, S-1, 1)."""
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    if density_order == "mean_then_activate":
        density_mid = activate_density((density[:, :, :-1] + density[:, :, 1:]) / 2)
    else:
        sigma = activate_density(density)
        density_mid = (sigma[:, :, :-1] + sigma[:, :, 1:]) / 2
    alpha = 1 - torch.exp(-density_mid * deltas)
    shifted = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], -2)
    return alpha * cumprod_positive(shifted, -2)[:, :, :-1]   # shifted >= 1e-10 > 0


def composite(depths, density, features, density_order: str = "mean_then_activate"):
    """depths (B, R, S, 1), raw density (B, R, S, 1), features (B, R, S, F) -> (features, depth, weights)."""
    weights = march_weights(depths, density, density_order)
    features_mid = (features[:, :, :-1] + features[:, :, 1:]) / 2
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    feats = torch.sum(weights * features_mid, -2)
    depth = torch.sum(weights * depths_mid, -2) / weights.sum(2)
    depth = torch.nan_to_num(depth, float("inf"))
    depth = torch.clamp(depth, torch.min(depths), torch.max(depths))
    return feats, depth, weights


def importance_depths(depths, weights, n_importance, generator=None):
    """EG3D sample_importance: coarse depths (B, R, S, 1), weights (B, R, S-1, 1) -> (B, R, n_importance, 1)."""
    with torch.no_grad():
        b, r, s, _ = depths.shape
        z = depths.reshape(b * r, s)
        w = weights.reshape(b * r, -1)
        w = torch.nn.functional.max_pool1d(w.unsqueeze(1).float(), 2, 1, padding=1)
        w = torch.nn.functional.avg_pool1d(w, 2, 1)[:, 0]
        w = w + 0.01
        z_mid = 0.5 * (z[:, :-1] + z[:, 1:])
        return sample_pdf(z_mid, w[:, 1:-1], n_importance, generator).detach().reshape(b, r, n_importance, 1)


def crop_outside_box(points: torch.Tensor, raw_density: torch.Tensor, margin: float, box_warp: float) -> torch.Tensor:
    """PanoHead's triplane_crop: raw density -1e3 where |x| or |z| exceeds box_warp/2 - margin."""
    inside = (points[..., [0, 2]].abs() <= (box_warp / 2 - margin)).all(dim=-1, keepdim=True)
    return torch.where(inside, raw_density, torch.full_like(raw_density, -1e3))


class VolumeRenderer(torch.nn.Module):
    """Renders a field from cameras. No parameters; configuration is plain numbers."""

    def __init__(self, ray_start: float, ray_end: float, n_coarse: int, n_importance: int,
                 density_order: str = "mean_then_activate", crop_margin: float = 0.0, box_warp: float = 1.0):
        super().__init__()
        if density_order not in DENSITY_ORDERS:
            raise ValueError(f"density_order must be one of {DENSITY_ORDERS}, got {density_order!r}")
        self.ray_start, self.ray_end = ray_start, ray_end
        self.n_coarse, self.n_importance = n_coarse, n_importance
        self.density_order, self.crop_margin, self.box_warp = density_order, crop_margin, box_warp
        self.composite = composite   # the final march; `compile_composite` swaps in a compiled one

    def compile_composite(self, dynamic: bool = True) -> None:
        """torch.compile the final ray march (Generator.compile_rendering): same function, fused kernels."""
        self.composite = torch.compile(composite, dynamic=dynamic)

    def _evaluate(self, field: Field, origins, dirs, depths):
        b, r, s, _ = depths.shape
        points = (origins.unsqueeze(-2) + depths * dirs.unsqueeze(-2)).reshape(b, -1, 3)
        view = dirs.unsqueeze(-2).expand(-1, -1, s, -1).reshape(b, -1, 3)
        density, features = field(points, view)
        if self.crop_margin > 0:
            density = crop_outside_box(points, density, self.crop_margin, self.box_warp)
        return density.reshape(b, r, s, 1), features.reshape(b, r, s, features.shape[-1])

    def render_rays(self, field: Field, origins, dirs, generator=None):
        """-> features (B, R, F), depth (B, R, 1), opacity (B, R, 1)."""
        b, r, _ = origins.shape
        depths = stratified_depths(b, r, self.n_coarse, self.ray_start, self.ray_end, generator, origins.device)
        density, features = self._evaluate(field, origins, dirs, depths)
        if self.n_importance > 0:
            # Importance sampling reads the coarse weights only, detached (EG3D marches the coarse
            # features and depths too, under autograd, and drops them): the same depths, less work.
            with torch.no_grad():
                weights = march_weights(depths, density, self.density_order)
            fine = importance_depths(depths, weights, self.n_importance, generator)
            d_fine, f_fine = self._evaluate(field, origins, dirs, fine)
            depths = torch.cat([depths, fine], dim=-2)
            features = torch.cat([features, f_fine], dim=-2)
            density = torch.cat([density, d_fine], dim=-2)
            _, order = torch.sort(depths, dim=-2)
            depths = torch.gather(depths, -2, order)
            features = torch.gather(features, -2, order.expand(-1, -1, -1, features.shape[-1]))
            density = torch.gather(density, -2, order)
        feats, depth, weights = self.composite(depths, density, features, self.density_order)
        return feats, depth, weights.sum(2)

    def forward(self, field: Field, camera_label: torch.Tensor, resolution: int, generator=None) -> RenderOutput:
        origins, dirs = rays_from_labels(camera_label, resolution)
        feats, depth, opacity = self.render_rays(field, origins, dirs, generator)
        b = camera_label.shape[0]

        def image(t):
            return t.permute(0, 2, 1).reshape(b, t.shape[-1], resolution, resolution)

        return RenderOutput(features=image(feats), depth=image(depth), mask=image(opacity))
