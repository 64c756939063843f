"""Background generator (PanoHead §3.2): a 2D StyleGAN2 synthesis network that paints the backdrop at
the super-resolution input resolution, so the 3D volume does not have to model a wall behind the head.

* ``panohead`` (reference): PanoHead's `bcg_synthesis`, a SynthesisNetwork with half the main channel
  base, driven by the first `num_ws` of the *main* ws (the last one repeated if there are fewer);
  its raw output (the feature range [-1, 1]) is resized to the neural resolution.
* ``own_mapping`` (this project's former variant): its own small mapping network from z, and a
  sigmoid to the decoder's colour range.

Composition with the rendered feature image (already weighted by opacity):
    I_gen = I_r + (1 - I_m) * I_bg
"""
from __future__ import annotations

import torch
from torch import nn

from .mapping import MappingNetwork
from .synthesis import SynthesisNetwork


class BackgroundGenerator(nn.Module):
    def __init__(self, z_dim: int, w_dim: int, resolution: int, feature_channels: int, generator: torch.Generator,
                 channel_base: int, channel_max: int, mapping_layers: int = 2, own_mapping: bool = False,
                 antialias: bool = True, conv_clamp: float | None = None, num_fp16_res: int = 0):
        super().__init__()
        self.own_mapping, self.antialias = own_mapping, antialias
        # PanoHead builds bcg_synthesis with the backbone's synthesis kwargs (num_fp16_res, conv_clamp included)
        self.synthesis = SynthesisNetwork(w_dim, resolution, feature_channels, generator, channel_base, channel_max,
                                          conv_clamp, num_fp16_res)
        self.mapping = (MappingNetwork(z_dim, 0, w_dim, self.synthesis.num_ws, generator, num_layers=mapping_layers)
                        if own_mapping else None)

    def forward(self, z, ws, resolution: int, psi: float = 1.0, noise_mode="const", generator=None, update_w_avg=False):
        n = self.synthesis.num_ws
        if self.mapping is not None:
            ws = self.mapping(z, None, psi=psi, update_w_avg=update_w_avg)
        else:
            ws = ws[:, :n]
            if ws.shape[1] < n:
                ws = torch.cat([ws, ws[:, -1:].repeat(1, n - ws.shape[1], 1)], 1)
        x = self.synthesis(ws, noise_mode, generator)
        if x.shape[-1] != resolution or self.mapping is None:
            x = nn.functional.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                                          antialias=self.antialias)
        if self.mapping is not None:
            return torch.sigmoid(x) * (1 + 2e-3) - 1e-3  # the decoder's colour range
        return x


def compose(foreground: torch.Tensor, mask: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """I_gen = I_r + (1 - I_m) * I_bg."""
    return foreground + (1 - mask) * background
