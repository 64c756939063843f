"""Camera self-adaptation (PanoHead §3.4): a small MLP maps (z, c_cam) to a residual translation of
the rendering camera, absorbing alignment drift of back-of-head crops. Its magnitude is returned so
the training loss can regularise it with an L2 penalty. The last layer starts with a small gain so
the adapted camera starts next to the labelled one.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import FullyConnected


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

    def forward(self, z: torch.Tensor, camera: torch.Tensor):
        """-> (adapted camera label (B, 25), translation delta (B, 3))."""
        x = torch.cat([z.to(torch.float32), camera[:, :25].to(torch.float32)], dim=1)
        for layer in self.hidden:
            x = layer(x)
        delta = self.out(x) * self.output_scale
        cam2world = camera[:, :16].reshape(-1, 4, 4)
        translation = cam2world[:, :3, 3] + delta
        top = torch.cat([cam2world[:, :3, :3], translation[:, :, None]], dim=2)
        adapted = torch.cat([top, cam2world[:, 3:]], dim=1).reshape(-1, 16)
        return torch.cat([adapted, camera[:, 16:]], dim=1), delta


def translation_magnitude(delta: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm of the residual translation (B,)."""
    return delta.norm(dim=1)
