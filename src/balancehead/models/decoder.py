"""The shared decoder MLP: per-point plane features -> (density, colour features).

Density uses softplus(raw - 1) (non-negative, starts near zero so early volumes are transparent);
the first 3 feature channels are the raw RGB, the rest feed the super-resolution network.
Colour features go through a slightly widened sigmoid so 0 and 1 are reachable without saturation.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import FullyConnected


class DecoderMLP(nn.Module):
    def __init__(self, in_features: int, feature_channels: int, generator: torch.Generator, hidden: int = 64):
        super().__init__()
        self.hidden = FullyConnected(in_features, hidden, generator, activation="softplus")
        self.out = FullyConnected(hidden, 1 + feature_channels, generator)

    def forward(self, features: torch.Tensor):
        """features (B, N, C) -> density (B, N, 1), colour features (B, N, F)."""
        b, n, c = features.shape
        x = self.out(self.hidden(features.reshape(b * n, c))).reshape(b, n, -1)
        density = torch.nn.functional.softplus(x[..., :1] - 1)
        colour = torch.sigmoid(x[..., 1:]) * (1 + 2e-3) - 1e-3
        return density, colour
