"""HyPlaneHead's hybrid plane ("hy-plane"): three flat planes plus one spherical plane (HyPlaneHead §3).

The sampling reproduces the official HyPlaneHead code (aigc3d/HyPlaneHead, render mode
``TriPlane_SingSph_flatten`` with ``sph2cir_flag`` and ``cir2squ_flag``), checked against it to 1e-5 by
``tests/test_golden_sampling.py``:

* **Flat planes** XY, XZ and a third plane read exactly as EG3D's ``generate_planes`` axes do
  (grid (u, v) = (x, y), (x, z), (y, z) of the normalised point).
* **Spherical plane** (the fourth): the direction of the point, after a rotation of -90 degrees about x
  (q' = (x, z, -y)), has polar angle psi from -y (the neck) and azimuth phi = atan2(z, x). The
  Lambert **azimuthal** equal-area projection centred on the crown puts it on the unit disc at radius
  cos(psi / 2) (0 at the crown, 1 at the neck) and angle -phi; the elliptical-grid mapping then
  stretches the disc onto the square. The face (+z) lands at the top centre of the square, the back of
  the head at the bottom centre, the ears left and right. Nothing is cut along the back of the head:
  the only singular point is the neck, which the disc's rim covers.
* **Unify-split** (HyPlaneHead §3.3): the synthesis network generates ONE C-channel map of 2R x 2R whose
  quadrants are the planes -- top-left XY, top-right XZ, bottom-left the third flat plane, bottom-right
  the sphere -- instead of 4C channels, so no feature leaks between channel groups. Without it the
  four planes are channel groups of a 4C x R x R map (the official ``TriPlane_SingSph``).

The decoder sees the mean of the four bilinear look-ups (align_corners=False, zero padding), as
HyPlaneHead's OSGDecoder does. Points are divided by box_warp/2 first, so the volume spans [-1, 1]^3.
"""
from __future__ import annotations

import math

import torch

from balancehead import ops

from .representations import Representation, sample_planes

_EPS = 1e-8  # under the square roots of the elliptical-grid mapping, as in the official code


def crown_disc(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised points (..., 3) -> (u, v) on the unit disc: Lambert azimuthal equal-area projection of
    the direction, centred on the crown (+y). Radius cos(psi/2), psi = angle from the neck (-y)."""
    x, y, z = q.unbind(-1)
    psi = torch.atan2(torch.sqrt(x.square() + z.square()), -y)  # the rotated frame's polar angle, in [0, pi]
    phi = torch.atan2(z, x)                                    # the rotated frame's azimuth, in (-pi, pi]
    r = torch.cos(psi / 2)
    return r * torch.cos(-phi), r * torch.sin(-phi)


def disc_to_square(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Elliptical-grid mapping of the unit disc onto the square [-1, 1]^2 (its inverse maps the square's
    point (x, y) to (x sqrt(1 - y^2/2), y sqrt(1 - x^2/2)))."""
    d = u.square() - v.square()
    s2 = 2 * math.sqrt(2)
    x = 0.5 * torch.sqrt(2 + d + s2 * u + _EPS) - 0.5 * torch.sqrt(2 + d - s2 * u + _EPS)
    y = 0.5 * torch.sqrt(2 - d + s2 * v + _EPS) - 0.5 * torch.sqrt(2 - d - s2 * v + _EPS)
    return x, y


def hyplane_uv(q: torch.Tensor) -> torch.Tensor:
    """Normalised points (B, N, 3) -> grid coordinates (B, 4, N, 2) on XY, XZ, the third plane, the sphere."""
    x, y, z = q.unbind(-1)
    sphere = torch.stack(disc_to_square(*crown_disc(q)), -1)
    return torch.stack([torch.stack([x, y], -1), torch.stack([x, z], -1), torch.stack([y, z], -1), sphere], 1)


class HyPlane(Representation):
    """Three flat planes + one equal-area spherical plane, packed as 2x2 quadrants (unify_split) or as
    four channel groups."""

    num_planes = 4

    def __init__(self, channels: int, resolution: int, box_warp: float, unify_split: bool = True):
        super().__init__(channels, resolution, box_warp)
        self.unify_split = unify_split

    @property
    def synthesis_channels(self) -> int:
        return self.channels if self.unify_split else self.num_planes * self.channels

    @property
    def synthesis_resolution(self) -> int:
        return 2 * self.resolution if self.unify_split else self.resolution

    def planes(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, 2R, 2R) quadrants, or (B, 4C, R, R) channel groups -> (B, 4, C, R, R)."""
        b, r, c = image.shape[0], self.resolution, self.channels
        if not self.unify_split:
            return ops.sampling_layout(image.reshape(b, self.num_planes, c, r, r))
        # (B, C, 2, R, 2, R) -> (B, 2, 2, C, R, R): row-major quadrants TL, TR, BL, BR. With compiled ops the
        # quadrants are gathered straight into the lookup's layout (ops.sampling_layout): one copy, not two
        quads = image.reshape(b, c, 2, r, 2, r).permute(0, 2, 4, 1, 3, 5)
        return ops.sampling_layout(quads).reshape(b, self.num_planes, c, r, r)

    def features(self, planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return sample_planes(planes, hyplane_uv(self.normalise(points))).mean(dim=1)
