"""Camera self-adaptation (PanoHead §3.4): a residual translation of the rendering camera, absorbing
alignment drift of back-of-head crops. Its magnitude is returned so the training loss can regularise it.

* ``panohead`` (reference): PanoHead's `t_mapping`, a MappingNetwork (z, c * c_scale) -> 3 with a
  linear last layer and lr multiplier 1; the output is added to the camera-to-world translation
  (label entries 3, 7, 11).
* ``mlp`` (this project's former variant): an MLP on (z, camera) whose output is scaled by 0.01 so the
  adapted camera starts next to the labelled one.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import FullyConnected
from .mapping import MappingNetwork


def add_translation(camera: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """camera label (B, 25+) with delta (B, 3) added to entries 3, 7, 11 (the cam2world translation)."""
    out = camera.clone()
    out[:, 3] += delta[:, 0]
    out[:, 7] += delta[:, 1]
    out[:, 11] += delta[:, 2]
    return out


class TranslationMapping(nn.Module):
    """PanoHead t_mapping."""

    def __init__(self, z_dim: int, c_dim: int, generator: torch.Generator, num_layers: int, embed_features: int = 0,
                 layer_features: int = 0):
        super().__init__()
        self.mapping = MappingNetwork(z_dim, c_dim, 3, 1, generator, num_layers=num_layers, lr_multiplier=1.0,
                                      last_activation="linear", embed_features=embed_features,
                                      layer_features=layer_features)

    def forward(self, z, c, camera, psi: float = 1.0, truncation_cutoff=None, update_w_avg: bool = False):
        delta = self.mapping(z, c, psi=psi, truncation_cutoff=truncation_cutoff, update_w_avg=update_w_avg)[:, 0]
        return add_translation(camera, delta), delta


class CameraAdapter(nn.Module):
    def __init__(self, z_dim: int, generator: torch.Generator, cam_dim: int = 25, hidden: int = 64,
                 num_layers: int = 2, output_scale: float = 0.01):
        super().__init__()
        layers, d = [], z_dim + cam_dim
        for _ in range(num_layers):
            layers.append(FullyConnected(d, hidden, generator, activation="lrelu"))
            d = hidden
        self.hidden = nn.ModuleList(layers)
        self.out = FullyConnected(d, 3, generator)
        self.output_scale = output_scale

    def forward(self, z: torch.Tensor, c, camera: torch.Tensor, psi: float = 1.0, truncation_cutoff=None,
                update_w_avg: bool = False):
        """-> (adapted camera label (B, 25), translation delta (B, 3))."""
        x = torch.cat([z.to(torch.float32), camera[:, :25].to(torch.float32)], dim=1)
        for layer in self.hidden:
            x = layer(x)
        delta = self.out(x) * self.output_scale
        return add_translation(camera, delta), delta


def translation_magnitude(delta: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm of the residual translation (B,)."""
    return delta.norm(dim=1)
