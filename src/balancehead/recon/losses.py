"""Reconstruction losses: L1, SSIM, PSNR, silhouette, and a hook for feature (perceptual) losses.

`reconstruction_loss` renders a model's Gaussians at the supervision cameras and weighs the terms of
`LossWeights`: PanoLAM eq. 7 (L1 + perceptual, on the coarse and the dense render, eq. 8's λ3 and λ5
silhouette term) and PercHead §3.3 (feature losses, with L1/SSIM as the baseline it compares against).
Perceptual networks (LPIPS, DINOv2-S layers 8/11, SAM 2.1's image encoder) are passed in as a
`FeatureExtractor` -- any callable image -> list of feature tensors -- so this module needs no weights;
`dinov2_features` builds one from a transformers Dinov2Model. The tri-plane terms λ4/λ6 need SphereHead's
frozen decoder and planes as teacher and are not computed here.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .config import LossWeights
from .rasterize import render_views

FeatureExtractor = Callable[[torch.Tensor], list]
Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]    # (N, 3, H, W) x2 in [0, 1] -> (N,)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB over all but the leading dimension."""
    mse = (a - b).square().flatten(1).mean(1)
    return 10 * torch.log10(peak ** 2 / mse.clamp_min(1e-12))


def _window(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004: Gaussian window 11 / sigma 1.5, K1 0.01, K2 0.03, range 1) of (N, C, H, W)
    images in [0, 1], 'valid' windows (the window shrinks to the image for images smaller than it)."""
    window = min(window, a.shape[-1], a.shape[-2])
    w = _window(window, sigma, a.shape[1], a)
    conv = lambda x: nn.functional.conv2d(x, w, groups=a.shape[1])  # noqa: E731
    mu_a, mu_b = conv(a), conv(b)
    var_a, var_b, cov = conv(a * a) - mu_a ** 2, conv(b * b) - mu_b ** 2, conv(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def feature_loss(extractor: FeatureExtractor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over layers of the L2 distance of unit-normalised features (PercHead §3.3 style); b is the target."""
    fa, fb = extractor(a), extractor(b)
    with torch.no_grad():
        fb = [f.detach() for f in fb]
    terms = [(nn.functional.normalize(x, dim=-1) - nn.functional.normalize(y, dim=-1)).square().sum(-1).mean()
             for x, y in zip(fa, fb)]
    return torch.stack(terms).mean()


def dinov2_features(model: nn.Module, layers: tuple[int, ...]) -> FeatureExtractor:
    """A frozen transformers Dinov2Model -> extractor of [class token; patch tokens] of `layers` (1-based),
    ImageNet-normalised input. (PercHead: DINOv2-S, layers 8 and 11.)"""
    model = model.requires_grad_(False).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def extract(images: torch.Tensor) -> list:
        x = (images - mean.to(images)) / std.to(images)
        states = model(pixel_values=x, output_hidden_states=True).hidden_states
        return [states[i] for i in layers]
    return extract


def image_terms(w: LossWeights, rgb, alpha, target, mask, perceptual: FeatureExtractor | None = None,
                distance: Distance | None = None) -> dict:
    """Weighted terms for one render: rgb/target (N, 3, H, W), alpha/mask (N, 1, H, W) in [0, 1].
    `distance` (weighted inside, e.g. evaluation.perceptual.PerceptualLoss on [0, 1] inputs) adds a term."""
    terms = {"l1": w.l1 * (rgb - target).abs().mean()}
    if distance is not None:
        terms["distance"] = distance(rgb, target).mean()
    if w.ssim:
        terms["ssim"] = w.ssim * (1 - ssim(rgb, target)).mean()
    if w.mask:
        terms["mask"] = w.mask * (alpha - mask).abs().mean()
    if w.perceptual or w.lpips:
        if perceptual is None:
            raise ValueError("recon loss weights ask for a perceptual term but no feature extractor was given")
        terms["perceptual"] = (w.perceptual + w.lpips) * feature_loss(perceptual, rgb, target)
    return terms


def reconstruction_loss(w: LossWeights, out, target, mask, cameras, size: int, background=(1.0, 1.0, 1.0),
                        perceptual: FeatureExtractor | None = None, sharpen: nn.Module | None = None,
                        backend: str = "auto", depth: torch.Tensor | None = None,
                        distance: Distance | None = None) -> tuple[torch.Tensor, dict]:
    """Render `out` (a model's ReconOutput) at cameras (B, V, 25) and compare with target (B, V, 3, S, S),
    mask (B, V, 1, S, S) and, when `w.depth` > 0, camera-z depth (B, V, 1, S, S) inside the mask.
    -> (total, {term: value, "render": dense rgb (B, V, 3, S, S) detached})."""
    flat = lambda x: x.flatten(0, 1)  # noqa: E731
    terms: dict = {}
    rgb, alpha, z = render_views(out.gaussians, cameras, size, background, backend)
    final = flat(rgb) if sharpen is None else sharpen(flat(rgb))
    for k, v in image_terms(w, final, flat(alpha), flat(target), flat(mask), perceptual, distance).items():
        terms[k] = w.gaussians * v
    if w.depth:
        if depth is None:
            raise ValueError("recon loss weight 'depth' is set but no target depth was given")
        inside = (mask > 0.5) & torch.isfinite(depth)
        diff = torch.where(inside, z - torch.nan_to_num(depth, posinf=0.0), torch.zeros_like(z))
        terms["depth"] = w.depth * diff.abs().sum() / inside.sum().clamp_min(1)
    if out.coarse is not None and w.coarse:
        c_rgb, c_alpha, _ = render_views(out.coarse, cameras, size, background, backend)
        for k, v in image_terms(w, flat(c_rgb), flat(c_alpha), flat(target), flat(mask), perceptual,
                                distance).items():
            terms[f"coarse_{k}"] = w.gaussians * w.coarse * v
    total = torch.stack(list(terms.values())).sum()
    terms["render"] = final.detach().reshape(rgb.shape)
    return total, terms
