"""PanoLAM and PercHead: one photo -> a 3D Gaussian head, in one forward pass.

Shared parts: `ImageEncoder` (encoder.py), `CrossBlock` (pre-norm cross-attention + MLP, no
self-attention -- PercHead §3.1 says its decoder needs none; PanoLAM eq. 2 stacks cross-attention), the
NeRF positional encoding of template points, and `GaussianHead` (attribute MLP with bounded activations).

* `PanoLAM` (PanoLAM §3.2-3.3): template vertices embedded by MLP(γ(V)) query the image tokens through
  L_A blocks; a head regresses coarse Gaussians with offsets in [-ε_OC, ε_OC] (eq. 3); positions and
  features are densified with the template's barycentric plan; the spherical tri-plane branch (learnable
  H_T x W_T x 6 queries, L_AT blocks) is read by K_m samples along the rays of 4 virtual cameras through
  every dense point and aggregated by an MLP (eq. 6); a second head regresses the dense Gaussians from
  [point feature, tri-plane feature] with residual offsets in [-ε_OD, ε_OD] (eq. 4).
* `PercHead` (PercHead §3.1): template patches (16 neighbouring anchors each) embedded from their
  anchors' γ query the image tokens; a linear "PixelShuffle" turns each patch latent into 16 Gaussian
  latents; one linear layer per attribute; position = anchor + max_offset tanh(motion * x), where `motion`
  (a forward argument) lets training hold the Gaussians still early on; `SharpenCNN` refines renders.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from balancehead.camera import camera_origin
from balancehead.models.sphere import rotate_a, spherical_coords

from .config import ReconConfig, SharpenConfig, TriplaneConfig
from .encoder import ImageEncoder
from .gaussians import Gaussians
from .template import Template, densify, load_template, patch_anchors, world_head_template


def positional_encoding(x: torch.Tensor, frequencies: int) -> torch.Tensor:
    """NeRF's γ: (..., 3) -> (..., 3 + 6 L): x, sin(2^k π x), cos(2^k π x) for k < L."""
    scaled = x[..., None, :] * (2.0 ** torch.arange(frequencies, dtype=x.dtype, device=x.device) * math.pi)[:, None]
    return torch.cat([x, scaled.sin().flatten(-2), scaled.cos().flatten(-2)], -1)


def mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class CrossBlock(nn.Module):
    """x <- x + CrossAttn(LN(x), LN(context)); x <- x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_mlp = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = mlp([width, int(width * mlp_ratio), width])

    def forward(self, x: torch.Tensor, context: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """`keep` (B, T) bool: the context tokens to attend to (None: all)."""
        kv = self.norm_kv(context)
        ignore = None if keep is None else ~keep
        x = x + self.attn(self.norm_q(x), kv, kv, key_padding_mask=ignore, need_weights=False)[0]
        return x + self.mlp(self.norm_mlp(x))


def activate(raw: dict, scale_max: float) -> dict:
    """Raw attribute tensors -> Gaussian attributes: sigmoid colours/opacities, scales in (0, scale_max),
    quaternions normalised (their raw value is added to the identity so an untrained head is unrotated)."""
    quats = raw["rotation"] + torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=raw["rotation"].dtype, device=raw["rotation"].device)
    return {"quats": nn.functional.normalize(quats, dim=-1), "scales": scale_max * torch.sigmoid(raw["scale"]),
            "opacities": torch.sigmoid(raw["opacity"][..., 0]), "colors": torch.sigmoid(raw["color"])}


class GaussianHead(nn.Module):
    """Three-layer MLP (PanoLAM §4.1) -> offset (bounded by `offset` via tanh), colour, opacity, scale, rotation."""

    SPLIT = {"offset": 3, "color": 3, "opacity": 1, "scale": 3, "rotation": 4}

    def __init__(self, in_channels: int, hidden: int, offset: float, scale_max: float):
        super().__init__()
        self.offset, self.scale_max = offset, scale_max
        self.net = mlp([in_channels, hidden, hidden, sum(self.SPLIT.values())])
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, features: torch.Tensor, positions: torch.Tensor) -> Gaussians:
        raw = dict(zip(self.SPLIT, self.net(features).split(list(self.SPLIT.values()), -1)))
        return Gaussians(positions + self.offset * torch.tanh(raw["offset"]), **activate(raw, self.scale_max))


def resolve_template(cfg: ReconConfig) -> Template:
    return load_template(cfg.template.path) if cfg.template.path else world_head_template(cfg.template.subdivisions)


@dataclass
class ReconOutput:
    gaussians: Gaussians                 # the final head (B, N, ...)
    coarse: Gaussians | None = None      # PanoLAM's coarse Gaussians (also rendered and supervised)
    planes: torch.Tensor | None = None   # PanoLAM's spherical tri-plane (B, 6, C, H_T, W_T)


class SphericalTriplaneBranch(nn.Module):
    """PanoLAM §3.3: learnable tri-plane tokens refined against the image, read along virtual-camera rays."""

    def __init__(self, cfg: TriplaneConfig, width: int, heads: int, point_width: int):
        super().__init__()
        self.cfg = cfg
        self.queries = nn.Parameter(torch.randn(6 * cfg.resolution ** 2, width) * 0.02)
        self.blocks = nn.ModuleList(CrossBlock(width, heads) for _ in range(cfg.depth))
        self.to_planes = nn.Linear(width, cfg.channels)
        self.aggregate = mlp([cfg.ray_samples * cfg.channels, point_width, cfg.out_channels])
        yaws = np.arange(cfg.cameras) * 360.0 / cfg.cameras  # front, left, back, right for 4
        centres = np.stack([camera_origin(y, 0.0, cfg.camera_radius) for y in yaws])
        self.register_buffer("centres", torch.tensor(centres, dtype=torch.float32), persistent=False)

    def planes(self, tokens: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        x = self.queries.expand(tokens.shape[0], -1, -1)
        for block in self.blocks:
            x = block(x, tokens, keep)
        r, c = self.cfg.resolution, self.cfg.channels
        return self.to_planes(x).reshape(-1, 6, r, r, c).permute(0, 1, 4, 2, 3)

    def sample(self, planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """points (B, N, 3) world -> (B, N, C): mean of the 3 Cartesian planes (XY, XZ, ZY) plus the mean of
        the 3 spherical planes of SphereHead's system A ((θ, φ), (θ, r), (φ, r))."""
        q = points * (2.0 / self.cfg.box_warp)
        x, y, z = q.unbind(-1)
        theta, phi, radius = spherical_coords(rotate_a(q))
        uv = torch.stack([torch.stack(p, -1) for p in ((x, y), (x, z), (z, y), (theta, phi), (theta, radius),
                                                         (phi, radius))], 1)  # (B, 6, N, 2)
        b, n = points.shape[:2]
        feats = nn.functional.grid_sample(planes.flatten(0, 1), uv.flatten(0, 1)[:, :, None], mode="bilinear",
                                          padding_mode="zeros", align_corners=False)  # (B*6, C, N, 1)
        feats = feats[..., 0].reshape(b, 6, -1, n).permute(0, 1, 3, 2)
        return feats[:, :3].mean(1) + feats[:, 3:].mean(1)

    def ray_features(self, planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Eq. 6: K_m samples around each point on each virtual camera's ray, concatenated, MLP, mean over cameras."""
        k = self.cfg.ray_samples
        steps = (torch.arange(k, dtype=points.dtype, device=points.device) - (k - 1) / 2) * self.cfg.ray_step
        dirs = nn.functional.normalize(points[:, None] - self.centres[None, :, None].to(points.dtype), dim=-1)
        samples = points[:, None, :, None] + dirs[..., None, :] * steps[:, None]   # (B, cams, N, K, 3)
        b, cams, n = samples.shape[:3]
        feats = self.sample(planes, samples.reshape(b, -1, 3)).reshape(b, cams, n, k * self.cfg.channels)
        return self.aggregate(feats).mean(1)


class PanoLAM(nn.Module):
    def __init__(self, cfg: ReconConfig, template: Template | None = None, backbone: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        t, p = cfg.transformer, cfg.points
        self.template = template = template or resolve_template(cfg)   # kept: checkpoints store it
        self.register_buffer("vertices", torch.from_numpy(template.vertices).float(), persistent=False)
        self.plan = densify(template, p.densify_area, p.max_points)
        self.encoder = ImageEncoder(cfg.encoder, t.width, backbone)
        self.embed = mlp([3 + 6 * t.frequencies, t.width, t.width])
        self.blocks = nn.ModuleList(CrossBlock(t.width, t.heads, t.mlp_ratio) for _ in range(t.depth))
        self.coarse_head = GaussianHead(t.width, t.width, p.offset_coarse, p.scale_max)
        self.triplane = (SphericalTriplaneBranch(cfg.triplane, t.width, t.heads, t.width)
                         if cfg.triplane is not None else None)
        extra = cfg.triplane.out_channels if cfg.triplane is not None else 0
        self.dense_head = GaussianHead(t.width + extra, t.width, p.offset_dense, p.scale_max / 2)

    @property
    def num_gaussians(self) -> int:
        return len(self.vertices) + len(self.plan)

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> ReconOutput:
        """images (B, 3, H, W) in [0, 1]; `mask` (B, 1, H, W) restricts attention to foreground patches."""
        tokens = self.encoder(images)
        keep = None if mask is None else self.encoder.foreground(mask)
        b = images.shape[0]
        verts = self.vertices.to(images.dtype).expand(b, -1, -1)
        x = self.embed(positional_encoding(verts, self.cfg.transformer.frequencies))
        for block in self.blocks:
            x = block(x, tokens, keep)
        coarse = self.coarse_head(x, verts)
        points = self.plan.apply(coarse.means)
        feats = self.plan.apply(x)
        planes = None
        if self.triplane is not None:
            planes = self.triplane.planes(tokens, keep)
            feats = torch.cat([feats, self.triplane.ray_features(planes, points)], -1)
        return ReconOutput(self.dense_head(feats, points), coarse, planes)


class PercHead(nn.Module):
    def __init__(self, cfg: ReconConfig, template: Template | None = None, backbone: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        t, pc = cfg.transformer, cfg.patches
        self.template = template = template or resolve_template(cfg)   # kept: checkpoints store it
        anchors = patch_anchors(template, pc.patches, pc.per_patch)
        self.register_buffer("anchors", torch.from_numpy(anchors), persistent=False)  # (P, G, 3)
        self.encoder = ImageEncoder(cfg.encoder, t.width, backbone)
        self.embed = mlp([pc.per_patch * (3 + 6 * t.frequencies), t.width, t.width])
        self.blocks = nn.ModuleList(CrossBlock(t.width, t.heads, t.mlp_ratio) for _ in range(t.depth))
        self.shuffle = nn.Linear(t.width, pc.per_patch * pc.latent)
        self.heads = nn.ModuleDict({k: nn.Linear(pc.latent, n) for k, n in
                                    (("offset", 3), ("color", 3), ("opacity", 1), ("scale", 3), ("rotation", 4))})
        for k in ("offset", "rotation"):
            nn.init.zeros_(self.heads[k].weight), nn.init.zeros_(self.heads[k].bias)
        self.sharpen = SharpenCNN(cfg.sharpen) if cfg.sharpen is not None else None

    @property
    def num_gaussians(self) -> int:
        return self.anchors.shape[0] * self.anchors.shape[1]

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None, motion: float = 1.0) -> ReconOutput:
        """As PanoLAM.forward; `motion` scales the anchor offsets' pre-activation (small early in training)."""
        tokens = self.encoder(images)
        keep = None if mask is None else self.encoder.foreground(mask)
        b = images.shape[0]
        anchors = self.anchors.to(images.dtype)
        x = self.embed(positional_encoding(anchors, self.cfg.transformer.frequencies).flatten(1))
        x = x.expand(b, -1, -1)
        for block in self.blocks:
            x = block(x, tokens, keep)
        latents = self.shuffle(x).reshape(b, self.num_gaussians, self.cfg.patches.latent)
        raw = {k: head(latents) for k, head in self.heads.items()}
        means = anchors.reshape(1, -1, 3) + self.cfg.patches.max_offset * torch.tanh(motion * raw["offset"])
        return ReconOutput(Gaussians(means, **activate(raw, self.cfg.patches.scale_max)))


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), radius 3 sigma, reflected borders."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c = images.shape[1]
    out = nn.functional.pad(images, (radius, radius, radius, radius), mode="reflect")
    out = nn.functional.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return nn.functional.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class SharpenCNN(nn.Module):
    """PercHead's SHP-CNN: input [blur(I), I - blur(I)], convolutions with a skip connection, output
    I - residual. The last convolution starts at zero, so an untrained SHP-CNN is the identity."""

    def __init__(self, cfg: SharpenConfig):
        super().__init__()
        self.sigma = cfg.blur_sigma
        self.inp = nn.Conv2d(6, cfg.channels, 3, padding=1)
        self.body = nn.Sequential(*[m for _ in range(cfg.layers) for m in
                                    (nn.GELU(), nn.Conv2d(cfg.channels, cfg.channels, 3, padding=1))])
        self.out = nn.Conv2d(cfg.channels, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight), nn.init.zeros_(self.out.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        blurred = gaussian_blur(images, self.sigma)
        h = self.inp(torch.cat([blurred, images - blurred], 1))
        return images - self.out(nn.functional.gelu(h + self.body(h)))


def build_model(cfg: ReconConfig, template: Template | None = None, backbone: nn.Module | None = None) -> nn.Module:
    """PanoLAM when the config has `points`, PercHead when it has `patches`."""
    return (PanoLAM if cfg.points is not None else PercHead)(cfg, template, backbone)
