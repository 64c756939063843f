"""Background generator (PanoHead §3.2): a small 2D StyleGAN2 that paints the backdrop at the
neural rendering resolution, so the 3D volume does not have to model a wall behind the head.

Composition with the rendered foreground (features already weighted by opacity):
    I_gen = (1 - I_m) * I_bg + I_r
"""
from __future__ import annotations

import torch
from torch import nn

from .mapping import MappingNetwork
from .synthesis import SynthesisNetwork


class BackgroundGenerator(nn.Module):
    def __init__(self, z_dim: int, w_dim: int, resolution: int, feature_channels: int, generator: torch.Generator,
                 channel_base: int, channel_max: int, mapping_layers: int = 2):
        super().__init__()
        self.synthesis = SynthesisNetwork(w_dim, resolution, feature_channels, generator, channel_base, channel_max)
        self.mapping = MappingNetwork(z_dim, 0, w_dim, self.synthesis.num_ws, generator, num_layers=mapping_layers)

    def forward(self, z, resolution: int, psi: float = 1.0, noise_mode="const", generator=None, update_w_avg=False):
        ws = self.mapping(z, None, psi=psi, update_w_avg=update_w_avg)
        x = self.synthesis(ws, noise_mode, generator)
        if x.shape[-1] != resolution:
            x = nn.functional.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                                          antialias=x.shape[-1] > resolution)
        return torch.sigmoid(x) * (1 + 2e-3) - 1e-3  # same range as the decoder's colour features


def compose(foreground: torch.Tensor, mask: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """I_gen = (1 - I_m) * I_bg + I_r."""
    return (1 - mask) * background + foreground
