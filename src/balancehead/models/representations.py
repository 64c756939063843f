"""3D feature representations generated as 2D StyleGAN images, behind one sampling interface.

Every representation knows (a) the channel count and resolution of the synthesis image it needs,
(b) how to cut that image into feature planes, and (c) how to turn 3D points into per-point
features of width C. The decoder MLP only sees those features, so the five variants are swappable:

* ``triplane``     EG3D: axis-aligned planes XY, XZ, ZY; point -> mean of three bilinear lookups.
* ``trigrid``      PanoHead: each plane gets D slices along its normal axis (D=3 in the paper);
                   lookup is bilinear in-plane and linear across slices (= trilinear), which keeps
                   front and back of the head on different slices.
* ``sphere``       SphereHead (single): spherical tri-plane, system A (poles on +-x); models/sphere.py.
* ``sphere_dual``  SphereHead (dual): systems A and B fused by their pole/seam weights, trained with A, B
                   or both at random; models/sphere.py.
* ``hyplane``      HyPlaneHead: flat XY, XZ, ZY planes plus one spherical plane (Lambert azimuthal
                   equal-area projection centred on the crown + elliptical-grid disc-to-square), packed
                   as the quadrants of one 2R x 2R map (unify-split); models/hyplane.py.

Coordinates: world points are divided by box_warp/2 so the generated volume spans [-1, 1]^3.
World is y-up, the face looks to +z; azimuth = atan2(x, z) is 0 at the face, the seam is at the back.
"""
from __future__ import annotations


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
    num_planes = 3

    @property
    def synthesis_channels(self):
        return 3 * self.channels

    def planes(self, image):
        return image.reshape(image.shape[0], 3, self.channels, *image.shape[2:])

    def features(self, planes, points):
        q = self.normalise(points)
        x, y, z = q.unbind(-1)
        uv = torch.stack([torch.stack([x, y], -1), torch.stack([x, z], -1), torch.stack([z, y], -1)], dim=1)
        return sample_planes(planes, uv).mean(dim=1)


class TriGrid(Representation):
    def __init__(self, channels, resolution, box_warp, depth: int = 3):
        super().__init__(channels, resolution, box_warp)
        self.depth = depth

    @property
    def synthesis_channels(self):
        return 3 * self.depth * self.channels

    def planes(self, image):
        return image.reshape(image.shape[0], 3 * self.depth, self.channels, *image.shape[2:])

    def features(self, planes, points):
        q = self.normalise(points)
        x, y, z = q.unbind(-1)
        d = self.depth
        # (in-plane uv, coordinate along the slice axis) for XY (slices along z), XZ (along y), ZY (along x)
        groups = [(torch.stack([x, y], -1), z), (torch.stack([x, z], -1), y), (torch.stack([z, y], -1), x)]
        uv = torch.stack([g[0] for g in groups], 1)  # (B, 3, N, 2)
        uv = uv[:, :, None].expand(-1, -1, d, -1, -1).reshape(uv.shape[0], 3 * d, uv.shape[2], 2)
        feats = sample_planes(planes, uv).reshape(q.shape[0], 3, d, q.shape[1], self.channels)
        axis = torch.stack([g[1] for g in groups], 1)  # (B, 3, N)
        pos = (((axis + 1) * d - 1) / 2).clamp(0, d - 1)  # slice index, align_corners=False convention
        slots = torch.arange(d, dtype=q.dtype, device=q.device).reshape(1, 1, d, 1)
        weights = torch.relu(1 - (pos[:, :, None] - slots).abs())  # (B, 3, D, N) linear interpolation
        return (feats * weights[..., None]).sum(dim=2).mean(dim=1)


def build_representation(kind: str, channels: int, resolution: int, box_warp: float, trigrid_depth: int = 3,
                         unify_split: bool = True, sphere_prob_a: float = 0.1, sphere_prob_b: float = 0.1,
                         seed: int = 0, sphere_head_channels: int = 0) -> Representation:
    # hyplane.py and sphere.py build on this module's base class, so they are imported here, not at the top
    from .hyplane import HyPlane
    from .sphere import SphericalTriPlane
    if kind == "triplane":
        return TriPlane(channels, resolution, box_warp)
    if kind == "trigrid":
        return TriGrid(channels, resolution, box_warp, trigrid_depth)
    if kind in ("sphere", "sphere_dual"):
        return SphericalTriPlane(channels, resolution, box_warp, dual=kind == "sphere_dual",
                                 prob_a=sphere_prob_a, prob_b=sphere_prob_b, seed=seed,
                                 head_channels=sphere_head_channels)
    if kind == "hyplane":
        return HyPlane(channels, resolution, box_warp, unify_split)
    raise ValueError(f"unknown representation {kind!r}; choose from {KINDS}")
