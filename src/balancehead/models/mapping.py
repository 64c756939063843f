"""Mapping network z (+ conditioning label c) -> w, with truncation around a tracked w_avg.

The layout is EG3D's / StyleGAN2's (embed of c at lr 1, `num_layers` lrelu layers at lr multiplier
0.01, w_avg tracked with beta 0.998 and truncation by lerp towards it). c can have any width: 0 (unconditional), 25 (camera), 512 (semantic CLIP), 537 (both) or an
identity feature; it is embedded by one linear layer and both parts are normalised to unit second
moment before concatenation, so neither dominates by scale.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import FullyConnected


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, generator: torch.Generator,
                 num_layers: int = 8, lr_multiplier: float = 0.01, w_avg_beta: float = 0.998,
                 last_activation: str = "lrelu", embed_features: int = 0, layer_features: int = 0):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        embed = (embed_features or w_dim) if c_dim > 0 else 0  # EG3D embed_features / layer_features (0 = w_dim)
        hidden = layer_features or w_dim
        self.embed = FullyConnected(c_dim, embed, generator) if c_dim > 0 else None
        sizes = [max(z_dim, 0) + embed] + [hidden] * (num_layers - 1) + [w_dim]
        layers = []
        for i in range(num_layers):
            act = last_activation if i == num_layers - 1 else "lrelu"  # PanoHead's t_mapping ends linear
            layers.append(FullyConnected(sizes[i], sizes[i + 1], generator, activation=act, lr_multiplier=lr_multiplier))
        self.layers = nn.ModuleList(layers)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, psi: float = 1.0, truncation_cutoff: int | None = None,
                update_w_avg: bool = False) -> torch.Tensor:
        """-> ws of shape (batch, num_ws, w_dim)."""
        parts = []
        if self.z_dim > 0:
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            if c is None or c.shape[1] != self.c_dim:
                raise ValueError(f"mapping expects a label of width {self.c_dim}, got {None if c is None else tuple(c.shape)}")
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1)
        for layer in self.layers:
            x = layer(x)
        if update_w_avg:  # running mean of w, the centre of truncation
            with torch.no_grad():
                self.w_avg.copy_(x.detach().to(self.w_avg.dtype).mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x[:, None, :].repeat(1, self.num_ws, 1)
        if psi != 1.0:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cutoff] = self.w_avg.to(ws.dtype).lerp(ws[:, :cutoff], psi)
        return ws
