"""3D feature representations generated as 2D StyleGAN images, behind one sampling interface.

Every representation knows (a) the channel count and resolution of the synthesis image it needs,
(b) how to cut that image into feature planes, and (c) how to turn 3D points into per-point
features of width C. The decoder MLP only sees those features, so the five variants are swappable:

* ``triplane``     EG3D: axis-aligned planes sampled at (x, y), (x, z), (z, x) (EG3D generate_planes);
                   point -> mean of three bilinear lookups.
* ``trigrid``      PanoHead: each plane gets D slices along its normal axis (D=3 in the paper);
                   lookup is trilinear with zero padding (PanoHead's 3-D grid_sample), which keeps
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
    """planes (B, P, C, H, W), uv (B, P, N, 2) in [-1, 1] -> features (B, P, N, C). Planes from
    ops.sampling_layout reach the compiled kernels without a copy.

    Never differentiated twice (R1 is D's alone), so without compiled ops ATen's grid_sample runs."""
    b, p, c, h, w = planes.shape
    n = uv.shape[2]
    out = ops.grid_sample(planes.reshape(b * p, c, h, w), uv.reshape(b * p, 1, n, 2), double_backward=False)
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
    """EG3D tri-plane. Plane i samples the point's coordinates through EG3D's `generate_planes` axes:
    (x, y), (x, z) and -- EG3D's quirk that every EG3D checkpoint depends on -- (z, x)."""
    num_planes = 3

    @property
    def synthesis_channels(self):
        return 3 * self.channels

    def planes(self, image):
        # stored as the compiled lookup reads them, once for the coarse and the fine pass (ops.sampling_layout)
        return ops.sampling_layout(image.reshape(image.shape[0], 3, self.channels, *image.shape[2:]))

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
