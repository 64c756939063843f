"""A set of 3D Gaussians as 3D Gaussian Splatting (Kerbl et al. 2023) stores them, after activations.

Conventions (the same as gsplat's `rasterization`, so both rasteriser paths take the same tensors):
means (..., N, 3) world units; quats (..., N, 4) as (w, x, y, z), normalised here; scales (..., N, 3)
standard deviations along the rotated axes (not log); opacities (..., N) in [0, 1]; colors (..., N, 3)
RGB in [0, 1]. Covariance = R S S^T R^T.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Gaussians:
    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor

    def __post_init__(self):
        n = self.means.shape[:-1]
        for name, t, tail in (("quats", self.quats, (4,)), ("scales", self.scales, (3,)),
                              ("opacities", self.opacities, ()), ("colors", self.colors, (3,))):
            if tuple(t.shape) != (*n, *tail):
                raise ValueError(f"Gaussians.{name} has shape {tuple(t.shape)}, expected {(*n, *tail)}")

    def __len__(self) -> int:
        return self.means.shape[-2]

    def select(self, index) -> "Gaussians":
        """Index the leading (batch) dimension: `g.select(0)` is the first head of a batch."""
        return Gaussians(self.means[index], self.quats[index], self.scales[index], self.opacities[index],
                         self.colors[index])

    def detach(self) -> "Gaussians":
        return Gaussians(*(t.detach() for t in (self.means, self.quats, self.scales, self.opacities, self.colors)))


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """(..., 4) (w, x, y, z), any norm -> (..., 3, 3) rotation matrices."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, -1).reshape(*quats.shape[:-1], 3, 3)


def covariance(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(..., 4), (..., 3) -> (..., 3, 3) world-space covariance R diag(s^2) R^T."""
    rs = quat_to_rotmat(quats) * scales[..., None, :]
    return rs @ rs.transpose(-1, -2)
