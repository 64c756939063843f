"""Dataclass configs of the generator and discriminator, with `tiny()` and `paper()` presets.

The configs are the whole recipe: `Generator(cfg)` / `Discriminator(cfg)` build the same weights
for the same `seed`, and checkpoints store `asdict(cfg)` next to the tensors.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

REPRESENTATIONS = ("triplane", "trigrid", "sphere", "sphere_dual", "hyplane")


def _from_dict(cls, data: dict):
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    return cls(**data)


@dataclass(frozen=True)
class GeneratorConfig:
    z_dim: int = 512
    c_dim: int = 512                  # conditioning width: 0, 25 (camera), 512 (semantic), 537 (both), ...
    c_scale: float = 1.0              # EG3D rendering_kwargs c_scale: the mapping sees c * c_scale (0 = unconditional)
    w_dim: int = 512
    mapping_layers: int = 2           # EG3D --map_depth default
    mapping_embed_features: int = 0   # EG3D mapping_kwargs embed_features / layer_features (0 = w_dim)
    mapping_layer_features: int = 0
    representation: str = "hyplane"   # one of REPRESENTATIONS
    plane_channels: int = 32
    plane_resolution: int = 256
    trigrid_depth: int = 3
    unify_split: bool = True          # hy-plane only
    sphere_prob_a: float = 0.1        # sphere_dual, training: share of forwards using system A alone (SphereHead)
    sphere_prob_b: float = 0.1        # ... system B alone; the rest fuse A and B (evaluation always fuses)
    sphere_head_channels: int = 512   # sphere_dual: synthesis width cut by per-system 1x1 heads (SphereHead); 0 = none
    channel_base: int = 32768
    channel_max: int = 512
    feature_channels: int = 32        # decoder output / raw image channels (first 3 are RGB)
    decoder_hidden: int = 64
    decoder_lr_mul: float = 1.0       # EG3D --decoder_lr_mul
    neural_resolution: int = 64
    output_resolution: int = 512
    sr_channels: int = 128            # width of the generic SR blocks (output resolutions without an EG3D preset)
    sr_dc: bool = True                # 512 px: SuperresolutionHybrid8XDC (EG3D FFHQ-512) instead of 8X
    sr_antialias: bool = True
    sr_noise_mode: str = "none"       # EG3D superresolution_noise_mode: "none", or "follow" the call's noise_mode
    sr_conv_clamp: float | None = 256.0  # EG3D: 256 when sr_num_fp16_res > 0 (its default, 4), else None
    sr_num_fp16_res: int = 0          # EG3D sr_num_fp16_res: > 0 = every SR block in float16 (CUDA only); 0 = fp32
    n_coarse: int = 48
    n_importance: int = 48
    ray_start: float = 2.25
    ray_end: float = 3.3
    box_warp: float = 1.0
    density_order: str = "mean_then_activate"  # EG3D; "activate_then_mean" = this project's former order
    crop_margin: float = 0.0          # PanoHead triplane_crop (0.1 in PanoHead); 0 = off (EG3D)
    background: bool = True
    background_kind: str = "panohead"  # "panohead": bcg SynthesisNetwork on the main ws; "own_mapping": own z mapping
    bg_channel_base: int = 16384      # PanoHead: the main channel_base // 2 and the main channel_max
    bg_channel_max: int = 512
    bg_mapping_layers: int = 2
    camera_adapt: bool = True
    camera_adapt_kind: str = "panohead"  # "panohead": t_mapping (z, c) -> 3 translation; "mlp": (z, camera) MLP
    camera_adapt_hidden: int = 64
    num_fp16_res: int = 0             # EG3D num_fp16_res: the N highest-resolution synthesis blocks in float16 (CUDA only)
    conv_clamp: float | None = None   # EG3D: 256 only with fp16 synthesis blocks
    seed: int = 0                     # construction seed (weights and const noise)

    def __post_init__(self):
        if self.representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {self.representation!r}")
        for name in ("neural_resolution", "output_resolution", "plane_resolution"):
            v = getattr(self, name)
            if v < 4 or v & (v - 1):
                raise ValueError(f"{name} must be a power of two >= 4, got {v}")
        if self.output_resolution % self.neural_resolution:
            raise ValueError("output_resolution must be a power-of-two multiple of neural_resolution")
        if self.feature_channels < 3:
            raise ValueError("feature_channels must be >= 3 (RGB first)")
        for name in ("num_fp16_res", "sr_num_fp16_res"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        choices = {"density_order": ("mean_then_activate", "activate_then_mean"), "sr_noise_mode": ("none", "follow"),
                   "background_kind": ("panohead", "own_mapping"), "camera_adapt_kind": ("panohead", "mlp")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @classmethod
    def tiny(cls, **overrides) -> "GeneratorConfig":
        """CPU-trainable: 32 px output, 16 px neural, 32 channels, 12+12 samples."""
        base = dict(z_dim=32, c_dim=25, w_dim=32, mapping_layers=2, plane_channels=8, plane_resolution=16,
                    channel_base=1024, channel_max=32, feature_channels=8, decoder_hidden=16, neural_resolution=16,
                    output_resolution=32, sr_channels=16, n_coarse=12, n_importance=12, bg_channel_base=128,
                    bg_channel_max=16, bg_mapping_layers=1, camera_adapt_hidden=16)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def paper(cls, **overrides) -> "GeneratorConfig":
        """The shape of the paper's model: hy-plane, 512 output, 64 neural, 48+48 samples."""
        return cls(**overrides)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GeneratorConfig":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class DiscriminatorConfig:
    resolution: int = 512
    mode: str = "tri"                 # "dual" (EG3D: I+, I), "mask" (PanoHead MaskDualDiscriminator: separate
                                      # mask branch at seg_resolution), "tri" (I+, I, mask concatenated, PanoHead V2)
    c_dim: int = 512                  # label width D is conditioned on by projection (0 = none)
    cmap_dim: int = 512
    mapping_layers: int = 8           # EG3D D mapping defaults: 8 layers, lr multiplier 0.01
    mapping_lr_mul: float = 0.01
    seg_resolution: int = 128         # "mask" mode only (PanoHead default; capped at `resolution`)
    channel_base: int = 32768
    channel_max: int = 512
    mbstd_group: int = 4
    mbstd_channels: int = 1
    num_fp16_res: int = 0             # EG3D num_fp16_res (4 there): the N highest-resolution blocks in float16 (CUDA only)
    conv_clamp: float | None = 256.0  # EG3D: 256 when num_fp16_res > 0, else None
    seed: int = 1

    def __post_init__(self):
        if self.mode not in ("dual", "tri", "mask"):
            raise ValueError(f"mode must be 'dual', 'tri' or 'mask', got {self.mode!r}")
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise ValueError("discriminator resolution must be a power of two >= 8")
        if self.num_fp16_res < 0:
            raise ValueError(f"num_fp16_res must be >= 0, got {self.num_fp16_res}")

    @classmethod
    def tiny(cls, **overrides) -> "DiscriminatorConfig":
        base = dict(resolution=32, c_dim=25, cmap_dim=32, mapping_layers=1, channel_base=1024, channel_max=32,
                    seg_resolution=16)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def paper(cls, **overrides) -> "DiscriminatorConfig":
        return cls(**overrides)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DiscriminatorConfig":
        return _from_dict(cls, data)
