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
    w_dim: int = 512
    mapping_layers: int = 8
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
    neural_resolution: int = 64
    output_resolution: int = 512
    sr_channels: int = 128
    n_coarse: int = 48
    n_importance: int = 48
    ray_start: float = 2.25
    ray_end: float = 3.3
    box_warp: float = 1.0
    background: bool = True
    bg_channel_base: int = 8192
    bg_channel_max: int = 128
    bg_mapping_layers: int = 2
    camera_adapt: bool = True
    camera_adapt_hidden: int = 64
    conv_clamp: float = 256.0
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
    mode: str = "tri"                 # "dual" (I+, I) or "tri" (I+, I, mask)
    c_dim: int = 512                  # label width D is conditioned on by projection (0 = none)
    cmap_dim: int = 512
    mapping_layers: int = 2
    channel_base: int = 32768
    channel_max: int = 512
    mbstd_group: int = 4
    mbstd_channels: int = 1
    conv_clamp: float = 256.0
    seed: int = 1

    def __post_init__(self):
        if self.mode not in ("dual", "tri"):
            raise ValueError(f"mode must be 'dual' or 'tri', got {self.mode!r}")
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise ValueError("discriminator resolution must be a power of two >= 8")

    @classmethod
    def tiny(cls, **overrides) -> "DiscriminatorConfig":
        base = dict(resolution=32, c_dim=25, cmap_dim=32, mapping_layers=1, channel_base=1024, channel_max=32)
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
