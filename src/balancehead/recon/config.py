"""Configurations of the two reconstructors as named presets (plain frozen dataclasses).

`panolam()` and `perchead()` carry the papers' numbers (PanoLAM §4.1 "Implementation Details";
PercHead §3.1 and Appendix E); `panolam_tiny()` and `perchead_tiny()` are the same architectures shrunk
to run on a CPU in seconds, with a random-initialised ViT standing in for DINOv2 (labelled "offline":
its features mean nothing until trained). Where a paper leaves a number out, the preset says so.

Units: the papers' offsets/areas are in FLAME units (metres). With the default world template (a head
~0.45 units tall, EG3D world units) the tiny presets use values scaled to that head.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace


@dataclass(frozen=True)
class EncoderConfig:
    """The frozen image encoder whose hidden layers are fused into tokens (PanoLAM eq. 1; PercHead §3.1)."""

    kind: str = "tiny"                 # "tiny": our random ViT (offline stand-in); "dinov2": transformers, weights by path
    weights: str | None = None         # local directory of a DINOv2 checkpoint (config.json + model.safetensors)
    layers: tuple[int, ...] = (1, 2)   # 1-based transformer layers whose outputs are concatenated
    image_size: int = 32               # input resolution fed to the encoder (a multiple of patch_size)
    patch_size: int = 8                # tiny ViT only (DINOv2 reads its own)
    width: int = 32                    # tiny ViT only
    depth: int = 2                     # tiny ViT only
    heads: int = 2                     # tiny ViT only
    aux_width: int = 0                 # PercHead's trained small ViT beside DINOv2 (0: none)
    aux_depth: int = 0

    def __post_init__(self):
        if self.kind not in ("tiny", "dinov2"):
            raise ValueError(f"recon encoder kind must be 'tiny' or 'dinov2', got {self.kind!r}")
        if self.kind == "dinov2" and not self.weights:
            raise ValueError("recon encoder kind 'dinov2' needs a weights path (a local DINOv2 checkpoint directory)")
        if not self.layers or min(self.layers) < 1 or (self.kind == "tiny" and max(self.layers) > self.depth):
            raise ValueError(f"recon encoder layers {self.layers} must be within 1..depth")
        if self.image_size % self.patch_size:
            raise ValueError(f"recon encoder image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")


@dataclass(frozen=True)
class TransformerConfig:
    width: int = 64          # token channels C_t
    depth: int = 2           # cross-attention layers L_A
    heads: int = 4
    mlp_ratio: float = 4.0
    frequencies: int = 6     # L_frequency of the NeRF positional encoding of template points


@dataclass(frozen=True)
class TemplateConfig:
    path: str | None = None  # a FLAME-like .npz/.obj; None: the embedded world's head
    subdivisions: int = 3    # icosphere level of the world head (3: 642 vertices, 4: 2562)


@dataclass(frozen=True)
class PointsConfig:
    """PanoLAM §3.2: coarse points on the template vertices, barycentric densification, dense points."""

    offset_coarse: float = 0.15     # ε_OC
    offset_dense: float = 0.056     # ε_OD
    densify_area: float = 2e-6      # λ_area
    max_points: int = 10_000        # M_D
    scale_max: float = 0.05         # largest Gaussian standard deviation (world units)


@dataclass(frozen=True)
class TriplaneConfig:
    """PanoLAM §3.3: learnable spherical tri-plane queries (3 Cartesian + 3 spherical planes, H_T x W_T each)
    refined by cross-attention, read along rays of virtual cameras and aggregated by an MLP (eq. 6)."""

    resolution: int = 64     # H_T = W_T
    channels: int = 32       # SphereHead's plane channels
    depth: int = 8           # L_AT -- not stated in the paper; assumed equal to L_A
    cameras: int = 4         # front, left, back, right
    ray_samples: int = 32    # K_m
    ray_step: float = 1.05 / 96  # sample spacing -- "as SphereHead's fine stage": EG3D's (3.3 - 2.25) / 96, assumed
    box_warp: float = 1.0    # world cube the planes span
    camera_radius: float = 2.7
    out_channels: int = 64   # aggregated feature per point


@dataclass(frozen=True)
class PatchesConfig:
    """PercHead §3.1: template patches as decoder queries, PixelShuffle to per-patch Gaussians."""

    patches: int = 4096
    per_patch: int = 16
    latent: int = 64          # channels per Gaussian latent after the shuffle -- not stated, assumed
    max_offset: float = 0.1   # how far a Gaussian may move from its anchor -- not stated, assumed
    scale_max: float = 0.03


@dataclass(frozen=True)
class SharpenConfig:
    """PercHead's SHP-CNN: blurred image + high-pass detail -> learned residual subtracted from the render."""

    channels: int = 32
    layers: int = 4
    blur_sigma: float = 1.0


@dataclass(frozen=True)
class LossWeights:
    """PanoLAM eqs. 7-8 (λ1..λ6) and PercHead §3.3 in one place; 0 switches a term off."""

    l1: float = 1.0              # λ1
    lpips: float = 0.0           # λ2 (PanoLAM: 1.0; needs a perceptual network)
    ssim: float = 0.0            # PercHead compares against L1/SSIM; not in PanoLAM
    perceptual: float = 0.0      # PercHead's DINOv2 (+ SAM 2.1) feature loss
    perceptual_layers: tuple[int, ...] = ()
    gaussians: float = 1.0       # λ3, on the coarse and dense renders
    coarse: float = 1.0          # weight of the coarse render inside λ3's term
    triplane_rgb: float = 0.1    # λ4 (needs SphereHead's frozen decoder)
    mask: float = 1.0            # λ5
    depth: float = 0.0           # L1 on expected depth inside the mask (GAN-prior samples carry depth; not in the papers)
    triplane_feature: float = 1e-4  # λ6 (needs SphereHead's planes as teacher)


@dataclass(frozen=True)
class ReconConfig:
    name: str
    encoder: EncoderConfig
    transformer: TransformerConfig
    template: TemplateConfig = field(default_factory=TemplateConfig)
    points: PointsConfig | None = None        # PanoLAM
    triplane: TriplaneConfig | None = None    # PanoLAM's second branch
    patches: PatchesConfig | None = None      # PercHead
    sharpen: SharpenConfig | None = None      # PercHead
    loss: LossWeights = field(default_factory=LossWeights)
    render_size: int = 32
    views: int = 2                             # N_v supervision views per sample (PanoLAM: 6)

    def __post_init__(self):
        if (self.points is None) == (self.patches is None):
            raise ValueError(f"recon config {self.name!r}: exactly one of points (PanoLAM) or patches (PercHead)")
        if self.triplane is not None and self.points is None:
            raise ValueError(f"recon config {self.name!r}: the spherical tri-plane branch belongs to PanoLAM (points)")
        if self.transformer.width % self.transformer.heads:
            raise ValueError(f"recon width {self.transformer.width} is not divisible by heads {self.transformer.heads}")
        for name, value in (("render_size", self.render_size), ("views", self.views)):
            if value < 1:
                raise ValueError(f"recon {name} must be >= 1, got {value}")
        weights = [v for v in vars(self.loss).values() if isinstance(v, float)]
        if any(not math.isfinite(v) or v < 0 for v in weights):
            raise ValueError(f"recon loss weights must be finite and >= 0, got {self.loss}")

    @property
    def arch(self) -> str:
        return "panolam" if self.points is not None else "perchead"


def panolam() -> ReconConfig:
    """PanoLAM §4.1: DINOv2 (ViT-L/14) layers {5, 12, 18, 24}, 8 cross-attention layers, 16 heads, C_t = 512,
    λ1 = λ2 = λ3 = 1, λ4 = 0.1, λ5 = 1, λ6 = 1e-4, ε_OC = 0.15, ε_OD = 0.056, M_D = 10k, K_m = 32,
    λ_area = 2e-6, H_T = W_T = 64, N_v = 6. Needs `encoder.weights` (and a FLAME template for the paper's
    5,023 points; the world head at subdivision 4 has 2,562)."""
    return ReconConfig(
        name="panolam",
        encoder=EncoderConfig(kind="dinov2", weights="models/dinov2-large", layers=(5, 12, 18, 24), image_size=518,
                              patch_size=14),
        transformer=TransformerConfig(width=512, depth=8, heads=16),
        template=TemplateConfig(subdivisions=4),
        points=PointsConfig(), triplane=TriplaneConfig(),
        loss=LossWeights(l1=1.0, lpips=1.0, gaussians=1.0, triplane_rgb=0.1, mask=1.0, triplane_feature=1e-4),
        render_size=512, views=6)


def perchead() -> ReconConfig:
    """PercHead Appendix E: frozen DINOv2 ViT-g/14 layers 9/19/29/39 (1536 channels) + a 2-layer width-128 ViT;
    a 10-layer width-1024 cross-attention decoder (16 heads) over 4096 patches x 16 Gaussians; SHP-CNN;
    perceptual loss on DINOv2-S layers 8 and 11 (+ SAM 2.1's image encoder), no pixel losses."""
    return ReconConfig(
        name="perchead",
        encoder=EncoderConfig(kind="dinov2", weights="models/dinov2-giant", layers=(9, 19, 29, 39), image_size=518,
                              patch_size=14, aux_width=128, aux_depth=2),
        transformer=TransformerConfig(width=1024, depth=10, heads=16),
        template=TemplateConfig(subdivisions=4),
        patches=PatchesConfig(), sharpen=SharpenConfig(),
        loss=LossWeights(l1=0.0, perceptual=1.0, perceptual_layers=(8, 11), gaussians=1.0, coarse=0.0,
                         triplane_rgb=0.0, mask=0.0, triplane_feature=0.0),
        render_size=512, views=4)


def panolam_tiny() -> ReconConfig:
    """PanoLAM's architecture at CPU-test size, offline random encoder; offsets/areas scaled to the world head."""
    return ReconConfig(
        name="panolam_tiny",
        encoder=EncoderConfig(kind="tiny", layers=(1, 2, 3, 4), image_size=32, patch_size=8, width=32, depth=4),
        transformer=TransformerConfig(width=64, depth=2, heads=4),
        points=PointsConfig(offset_coarse=0.06, offset_dense=0.02, densify_area=1e-4, max_points=1500, scale_max=0.04),
        triplane=TriplaneConfig(resolution=8, channels=8, depth=1, ray_samples=8, ray_step=0.02, out_channels=16),
        loss=LossWeights(l1=1.0, ssim=0.2, gaussians=1.0, coarse=0.5, mask=0.5, triplane_rgb=0.0, triplane_feature=0.0),
        render_size=32, views=2)


def perchead_tiny() -> ReconConfig:
    """PercHead's architecture at CPU-test size, offline random encoders; pixel losses stand in for the perceptual ones."""
    return ReconConfig(
        name="perchead_tiny",
        encoder=EncoderConfig(kind="tiny", layers=(1, 2, 3, 4), image_size=32, patch_size=8, width=32, depth=4,
                              aux_width=16, aux_depth=1),
        transformer=TransformerConfig(width=64, depth=2, heads=4),
        patches=PatchesConfig(patches=64, per_patch=16, latent=16, max_offset=0.06, scale_max=0.04),
        sharpen=SharpenConfig(channels=8, layers=2),
        loss=LossWeights(l1=1.0, ssim=0.2, gaussians=1.0, coarse=0.0, mask=0.5, triplane_rgb=0.0, triplane_feature=0.0),
        render_size=32, views=2)


PRESETS = {"panolam": panolam, "perchead": perchead, "panolam_tiny": panolam_tiny, "perchead_tiny": perchead_tiny}


def preset(name: str, **overrides) -> ReconConfig:
    """A named preset, with top-level fields replaced (e.g. `preset("panolam", render_size=256)`)."""
    if name not in PRESETS:
        raise ValueError(f"recon preset must be one of {sorted(PRESETS)}, got {name!r}")
    return replace(PRESETS[name](), **overrides)


SECTIONS = {"encoder": EncoderConfig, "transformer": TransformerConfig, "template": TemplateConfig,
            "points": PointsConfig, "triplane": TriplaneConfig, "patches": PatchesConfig, "sharpen": SharpenConfig,
            "loss": LossWeights}


def config_to_dict(cfg: ReconConfig) -> dict:
    """A ReconConfig as plain JSON-able data (tuples become lists); `config_from_dict` inverts it."""
    return asdict(cfg)


def config_from_dict(data: dict) -> ReconConfig:
    """Rebuild a ReconConfig from `config_to_dict`'s output; unknown keys are an error naming them."""
    names = {f.name for f in fields(ReconConfig)}
    if not isinstance(data, dict) or set(data) - names:
        raise ValueError(f"recon config has unknown keys {sorted(set(data) - names) if isinstance(data, dict) else data}")
    kw = {}
    for key, value in data.items():
        cls = SECTIONS.get(key)
        if cls is not None and value is not None:
            allowed = {f.name for f in fields(cls)}
            if set(value) - allowed:
                raise ValueError(f"recon config section {key!r} has unknown keys {sorted(set(value) - allowed)}")
            value = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
        kw[key] = value
    return ReconConfig(**kw)
