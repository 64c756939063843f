"""3D feature representations generated as 2D StyleGAN images, behind one sampling interface.

Every representation knows (a) the channel count and resolution of the synthesis image it needs,
(b) how to cut that image into feature planes, and (c) how to turn 3D points into per-point
features of width C. The decoder MLP only sees those features, so the five variants are swappable:

* ``triplane``     EG3D: axis-aligned planes sampled at (x, y), (x, z), (z, x) (EG3D generate_planes);
                   point -> mean of three bilinear lookups.
* ``trigrid``      PanoHead: each plane gets D slices along its normal axis (D=3 in the paper);
                   lookup is trilinear with zero padding (PanoHead's 3-D grid_sample), which keeps
                   front and back of the head on different slices.
* ``sphere``       SphereHead (single): planes over (azimuth, polar), (azimuth, radius), (polar, radius).
* ``sphere_dual``  SphereHead (dual): a second spherical system whose seam is at the front; the two
                   are blended by (1 + cos azimuth)/2 so each one's seam carries zero weight.
* ``hyplane``      HyPlaneHead: planar XY and ZY planes plus one spherical plane mapped with the
                   Lambert cylindrical equal-area projection (u = azimuth/pi, v = y/r), so every plane
                   texel covers the same solid angle. With ``unify_split`` the synthesis network
                   generates ONE C-channel image of size 2R x 2R that is cut spatially into the
                   sub-planes (sphere: top R x 2R strip, XY and ZY: bottom squares), instead of
                   splitting channels, which avoids feature leakage between channel groups.

Coordinates: world points are divided by box_warp/2 so the generated volume spans [-1, 1]^3.
World is y-up, the face looks to +z; azimuth = atan2(x, z) is 0 at the face, the seam is at the back.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from balancehead import ops

KINDS = ("triplane", "trigrid", "sphere", "sphere_dual", "hyplane")


def sample_planes(planes: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """planes (B, P, C, H, W), uv (B, P, N, 2) in [-1, 1] -> features (B, P, N, C)."""
    b, p, c, h, w = planes.shape
    n = uv.shape[2]
    out = ops.grid_sample(planes.reshape(b * p, c, h, w), uv.reshape(b * p, 1, n, 2))
    return out.reshape(b, p, c, n).permute(0, 1, 3, 2)


def spherical(q: torch.Tensor):
    """q (..., 3) normalised coords -> (azimuth/pi, polar mapped to [-1,1], radius mapped to [-1,1], cos polar).

    Small epsilons keep atan2/acos differentiable at the origin and the poles."""
    x, y, z = q.unbind(-1)
    r = torch.sqrt(x.square() + y.square() + z.square() + 1e-8)
    z_safe = torch.where(x.abs() + z.abs() < 1e-6, z + 1e-6, z)
    azimuth = torch.atan2(x, z_safe) / math.pi
    cos_polar = (y / r).clamp(-1 + 1e-6, 1 - 1e-6)
    polar = torch.acos(cos_polar) * (2 / math.pi) - 1
    radius = r * (2 / math.sqrt(3)) - 1
    return azimuth, polar, radius, cos_polar


class Representation(nn.Module):
    """Base class: `synthesis_channels`, `synthesis_resolution`, `planes(image)`, `features(planes, points)`."""

    def __init__(self, channels: int, resolution: int, box_warp: float):
        super().__init__()
        self.channels, self.resolution, self.box_warp = channels, resolution, box_warp

    @property
    def synthesis_channels(self) -> int:
        raise NotImplementedError

    @property
    def synthesis_resolution(self) -> int:
        return self.resolution

    def planes(self, image: torch.Tensor):
        """Cut the synthesis output into this representation's planes."""
        raise NotImplementedError

    def features(self, planes, points: torch.Tensor) -> torch.Tensor:
        """points (B, N, 3) in world units -> (B, N, C)."""
        raise NotImplementedError

    def normalise(self, points: torch.Tensor) -> torch.Tensor:
        return points * (2.0 / self.box_warp)


class TriPlane(Representation):
    """EG3D tri-plane. Plane i samples the point's coordinates through EG3D's `generate_planes` axes:
    (x, y), (x, z) and -- EG3D's quirk that every EG3D checkpoint depends on -- (z, x)."""
    num_planes = 3

    @property
    def synthesis_channels(self):
        return 3 * self.channels

    def planes(self, image):
        return image.reshape(image.shape[0], 3, self.channels, *image.shape[2:])

    def features(self, planes, points):
        q = self.normalise(points)
        x, y, z = q.unbind(-1)
        uv = torch.stack([torch.stack([x, y], -1), torch.stack([x, z], -1), torch.stack([z, x], -1)], dim=1)
        return sample_planes(planes, uv).mean(dim=1)


class TriGrid(Representation):
    """PanoHead tri-grid (PanoHead §3.3): each of 3 planes carries D feature slices along its normal.

    Exactly PanoHead's sampling: the synthesis image is cut into (3, C, D, H, W) and each plane is read
    with a trilinear, zero-padded, align_corners=False lookup at (W, H, D) coordinates
    (x, y, z), (x, z, y) and (y, z, x). Trilinear = bilinear per slice * linear weights across slices
    (a slice coordinate past the outer slice centres blends with zero, as grid_sample's padding does).
    """

    def __init__(self, channels, resolution, box_warp, depth: int = 3):
        super().__init__(channels, resolution, box_warp)
        self.depth = depth

    @property
    def synthesis_channels(self):
        return 3 * self.depth * self.channels

    def planes(self, image):
        return image.reshape(image.shape[0], 3, self.channels * self.depth, *image.shape[2:])

    def features(self, planes, points):
        q = self.normalise(points)
        x, y, z = q.unbind(-1)
        b, n, d, c = q.shape[0], q.shape[1], self.depth, self.channels
        h, w = planes.shape[-2:]
        slices = planes.reshape(b, 3, c, d, h, w).permute(0, 1, 3, 2, 4, 5).reshape(b, 3 * d, c, h, w)
        groups = [(torch.stack([x, y], -1), z), (torch.stack([x, z], -1), y), (torch.stack([y, z], -1), x)]
        uv = torch.stack([g[0] for g in groups], 1)  # (B, 3, N, 2)
        uv = uv[:, :, None].expand(-1, -1, d, -1, -1).reshape(b, 3 * d, n, 2)
        feats = sample_planes(slices, uv).reshape(b, 3, d, n, c)
        axis = torch.stack([g[1] for g in groups], 1)  # (B, 3, N)
        pos = ((axis + 1) * d - 1) / 2  # slice index, align_corners=False convention
        centres = torch.arange(d, dtype=q.dtype, device=q.device).reshape(1, 1, d, 1)
        weights = torch.relu(1 - (pos[:, :, None] - centres).abs())  # (B, 3, D, N), zero beyond the ends
        return (feats * weights[..., None]).sum(dim=2).mean(dim=1)


class SphericalTriPlane(Representation):
    def __init__(self, channels, resolution, box_warp, dual: bool = False):
        super().__init__(channels, resolution, box_warp)
        self.dual = dual

    @property
    def synthesis_channels(self):
        return (6 if self.dual else 3) * self.channels

    def planes(self, image):
        return image.reshape(image.shape[0], -1, self.channels, *image.shape[2:])

    @staticmethod
    def _uv(azimuth, polar, radius):
        return torch.stack([torch.stack([azimuth, polar], -1), torch.stack([azimuth, radius], -1),
                            torch.stack([polar, radius], -1)], dim=1)

    def features(self, planes, points):
        q = self.normalise(points)
        azimuth, polar, radius, _ = spherical(q)
        if not self.dual:
            return sample_planes(planes, self._uv(azimuth, polar, radius)).mean(dim=1)
        # second system rotated 180 degrees about y: its seam sits at the face, where system A is smooth
        azimuth_b = torch.remainder(azimuth + 2.0, 2.0) - 1.0
        uv = torch.cat([self._uv(azimuth, polar, radius), self._uv(azimuth_b, polar, radius)], dim=1)
        feats = sample_planes(planes, uv)
        weight_a = ((1 + torch.cos(azimuth * math.pi)) / 2)[..., None]
        return weight_a * feats[:, :3].mean(1) + (1 - weight_a) * feats[:, 3:].mean(1)


class HyPlane(Representation):
    def __init__(self, channels, resolution, box_warp, unify_split: bool = True):
        super().__init__(channels, resolution, box_warp)
        self.unify_split = unify_split

    @property
    def synthesis_channels(self):
        return self.channels if self.unify_split else 3 * self.channels

    @property
    def synthesis_resolution(self):
        return 2 * self.resolution if self.unify_split else self.resolution

    def planes(self, image):
        b, r = image.shape[0], self.resolution
        if self.unify_split:
            sphere = image[:, None, :, :r, :]  # (B, 1, C, R, 2R): azimuth along the width
            planar = torch.stack([image[:, :, r:, :r], image[:, :, r:, r:]], dim=1)  # XY, ZY
        else:
            split = image.reshape(b, 3, self.channels, r, r)
            sphere, planar = split[:, :1], split[:, 1:]
        return planar, sphere

    def features(self, planes, points):
        planar, sphere = planes
        q = self.normalise(points)
        x, y, z = q.unbind(-1)
        azimuth, _, _, cos_polar = spherical(q)
        planar_uv = torch.stack([torch.stack([x, y], -1), torch.stack([z, y], -1)], dim=1)
        # equal-area (Lambert cylindrical): v = cos(polar) = y/r; image row 0 is the top (y up -> v flipped)
        sphere_uv = torch.stack([azimuth, -cos_polar], -1)[:, None]
        feats = torch.cat([sample_planes(planar, planar_uv), sample_planes(sphere, sphere_uv)], dim=1)
        return feats.mean(dim=1)


def build_representation(kind: str, channels: int, resolution: int, box_warp: float, trigrid_depth: int = 3,
                         unify_split: bool = True) -> Representation:
    if kind == "triplane":
        return TriPlane(channels, resolution, box_warp)
    if kind == "trigrid":
        return TriGrid(channels, resolution, box_warp, trigrid_depth)
    if kind == "sphere":
        return SphericalTriPlane(channels, resolution, box_warp, dual=False)
    if kind == "sphere_dual":
        return SphericalTriPlane(channels, resolution, box_warp, dual=True)
    if kind == "hyplane":
        return HyPlane(channels, resolution, box_warp, unify_split)
    raise ValueError(f"unknown representation {kind!r}; choose from {KINDS}")
