"""'It learns': Fréchet distance in the feature space of a fixed, seeded random conv net.

No pretrained weights may be downloaded, so Inception features are out. Random convolutional
features are a known stand-in (random-feature FID tracks real FID for coarse structure: colour
layout, silhouette, edges): four strided conv + ReLU layers initialised from a fixed seed, features
= per-channel means and standard deviations of every layer (a 2*(16+32+64+64) = 352-d vector). The
distance between real and generated image sets is the Fréchet distance of Gaussian fits, exactly as
FID, so a GAN that has not learned anything (kimg 0) scores far above one that has.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class RandomFeatures(nn.Module):
    def __init__(self, seed: int = 1234, widths=(16, 32, 64, 64)):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        layers, c = [], 3
        for w in widths:
            conv = nn.Conv2d(c, w, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / (c * 9)) ** 0.5)
                conv.bias.zero_()
            layers.append(conv)
            c = w
        self.layers = nn.ModuleList(layers)
        self.requires_grad_(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images in [-1, 1] (any size >= 16) -> (B, F) features, computed at 64 px."""
        x = nn.functional.interpolate(images.float(), size=(64, 64), mode="bilinear", align_corners=False)
        feats = []
        for conv in self.layers:
            x = torch.relu(conv(x))
            feats += [x.mean(dim=[2, 3]), x.std(dim=[2, 3])]
        return torch.cat(feats, dim=1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of two feature sets: the one implementation, with its non-finite fallback."""
    from ..evaluation.fid import fid_from_features

    return fid_from_features(a, b)
