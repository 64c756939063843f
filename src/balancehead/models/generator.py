"""The 3D-aware generator: mapping -> synthesis (plane features) -> representation + decoder ->
volume rendering -> background composition -> super-resolution.

    out = G(z, c, camera)            # any batch; camera is the 25-float rendering label
    out.image, out.image_raw, out.mask, out.depth, out.camera_delta_norm

`c` is the conditioning label of the mapping network (width cfg.c_dim; camera, semantic, both or
none); `camera` is where we render from. They differ on purpose (semantic conditioning renders
any view from a view-invariant label). Images are in [-1, 1], mask in [0, 1], depth in world units.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .background import BackgroundGenerator, compose
from .camera_adapt import CameraAdapter, TranslationMapping, translation_magnitude
from .config import GeneratorConfig
from .decoder import DecoderMLP
from .mapping import MappingNetwork
from .renderer import VolumeRenderer
from .representations import build_representation
from .superres import SuperResolution
from .synthesis import SynthesisNetwork


@dataclass
class GeneratorOutput:
    image: torch.Tensor        # I+ (B, 3, R, R)
    image_raw: torch.Tensor    # I  (B, 3, r, r)
    mask: torch.Tensor         # I^{m+} (B, 1, R, R)
    mask_raw: torch.Tensor     # I^m (B, 1, r, r)
    depth: torch.Tensor        # (B, 1, r, r)
    ws: torch.Tensor
    camera: torch.Tensor       # the (adapted) rendering camera
    camera_delta_norm: torch.Tensor  # (B,) L2 of the self-adaptation translation (zeros when off)

    def as_discriminator_input(self) -> dict:
        return {"image": self.image, "image_raw": self.image_raw, "mask": self.mask}


class Generator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)
        self.representation = build_representation(cfg.representation, cfg.plane_channels, cfg.plane_resolution,
                                                    cfg.box_warp, cfg.trigrid_depth, cfg.unify_split,
                                                    cfg.sphere_prob_a, cfg.sphere_prob_b, cfg.seed,
                                                    cfg.sphere_head_channels)
        rep = self.representation
        self.synthesis = SynthesisNetwork(cfg.w_dim, rep.synthesis_resolution, rep.synthesis_channels, g,
                                          cfg.channel_base, cfg.channel_max, cfg.conv_clamp, cfg.num_fp16_res)
        self.mapping = MappingNetwork(cfg.z_dim, cfg.c_dim, cfg.w_dim, self.synthesis.num_ws, g, cfg.mapping_layers,
                                      embed_features=cfg.mapping_embed_features,
                                      layer_features=cfg.mapping_layer_features)
        self.decoder = DecoderMLP(cfg.plane_channels, cfg.feature_channels, g, cfg.decoder_hidden, cfg.decoder_lr_mul)
        self.renderer = VolumeRenderer(cfg.ray_start, cfg.ray_end, cfg.n_coarse, cfg.n_importance, cfg.density_order,
                                       cfg.crop_margin, cfg.box_warp)
        self.superres = SuperResolution(cfg.feature_channels, cfg.w_dim, cfg.neural_resolution, cfg.output_resolution,
                                        cfg.sr_channels, g, conv_clamp=cfg.sr_conv_clamp, dc=cfg.sr_dc,
                                        antialias=cfg.sr_antialias, num_fp16_res=cfg.sr_num_fp16_res)
        own = cfg.background_kind == "own_mapping"
        self.background = (BackgroundGenerator(cfg.z_dim, cfg.w_dim,
                                               cfg.neural_resolution if own else self.superres.input_resolution,
                                               cfg.feature_channels, g, cfg.bg_channel_base, cfg.bg_channel_max,
                                               cfg.bg_mapping_layers, own_mapping=own, antialias=cfg.sr_antialias,
                                               conv_clamp=cfg.conv_clamp, num_fp16_res=cfg.num_fp16_res)
                           if cfg.background else None)
        if not cfg.camera_adapt:
            self.camera_adapter = None
        elif cfg.camera_adapt_kind == "panohead":
            self.camera_adapter = TranslationMapping(cfg.z_dim, cfg.c_dim, g, cfg.mapping_layers,
                                                     cfg.mapping_embed_features, cfg.mapping_layer_features)
        else:
            self.camera_adapter = CameraAdapter(cfg.z_dim, g, hidden=cfg.camera_adapt_hidden)

    def _scaled(self, c):
        return None if c is None else c * self.cfg.c_scale

    @classmethod
    def from_pretrained(cls, path, device: torch.device | str = "cpu", module: str = "G_ema") -> "Generator":
        """A trained generator, in eval mode, from a checkpoint directory (safetensors + JSON, never pickle):

            G = Generator.from_pretrained("data/train/G_ema")       # or the MLflow artifact `G_ema/`
            out = G(torch.randn(1, G.cfg.z_dim), c, torch.as_tensor(camera_label(30.0, 0.0))[None])

        `path` may also be a directory holding such checkpoints (e.g. `data/train`). The checkpoint's meta
        (conditioning mode, kimg, seed) is kept as `G.meta`.
        """
        from .checkpoint import load_checkpoint

        path = Path(path)
        if not (path / "model.json").exists() and (path / module / "model.json").exists():
            path = path / module
        modules, meta = load_checkpoint(path, map_location=device)
        if module not in modules or not isinstance(modules[module], cls):
            raise KeyError(f"{path}: no generator named {module!r} (found {sorted(modules)})")
        g = modules[module].eval().requires_grad_(False)
        g.meta = meta
        return g

    def compile_rendering(self, dynamic: bool = True) -> "Generator":
        """torch.compile the per-point work: the decoder MLP (in place, so parameter names and
        checkpoints are unchanged) and the final ray march. Opt-in (`train.distributed.compile:
        rendering`): the same functions with fused kernels, to float rounding; each new shape (the
        neural-resolution ramp, the density regulariser's points) compiles once more. On 2 CPU cores the
        decoder + march of a 64^2 x 48-sample batch of 2 ran 1.47x faster (766 -> 522 ms forward +
        backward) after a 14 s compile."""
        self.decoder.compile(dynamic=dynamic)
        self.renderer.compile_composite(dynamic=dynamic)
        return self

    # --- stages, usable on their own (inversion, mesh extraction) ---
    def map(self, z, c, psi: float = 1.0, truncation_cutoff=None, update_w_avg: bool = False):
        return self.mapping(z, self._scaled(c), psi=psi, truncation_cutoff=truncation_cutoff, update_w_avg=update_w_avg)

    def planes(self, ws, noise_mode="const", generator=None):
        return self.representation.planes(self.synthesis(ws, noise_mode, generator))

    def field(self, planes):
        """A renderer field for these planes: points -> (raw density, colour features)."""
        def _field(points, _dirs):
            return self.decoder(self.representation.features(planes, points))
        return _field

    def density(self, planes, points: torch.Tensor) -> torch.Tensor:
        """Raw (pre-activation) density at world points, as EG3D's `sample_mixed(...)['sigma']`."""
        return self.decoder(self.representation.features(planes, points))[0]

    # --- everything ---
    def forward(self, z, c, camera, psi: float = 1.0, truncation_cutoff=None, neural_resolution: int | None = None,
                output_resolution: int | None = None, noise_mode: str = "const", generator: torch.Generator | None = None,
                update_w_avg: bool = False, adapt_camera: bool = True, ws: torch.Tensor | None = None) -> GeneratorOutput:
        """EG3D / PanoHead TriPlaneGenerator.forward with the mapping label `c` and the rendering `camera`
        separate (pass the same 25-float label twice for the official behaviour)."""
        cfg = self.cfg
        if ws is None:
            ws = self.map(z, c, psi, truncation_cutoff, update_w_avg)
        delta_norm = ws.new_zeros(ws.shape[0])
        needs_c = isinstance(self.camera_adapter, TranslationMapping) and self.cfg.c_dim > 0
        if self.camera_adapter is not None and adapt_camera and z is not None and (c is not None or not needs_c):
            camera, delta = self.camera_adapter(z, self._scaled(c), camera, psi=psi, truncation_cutoff=truncation_cutoff,
                                                update_w_avg=update_w_avg)
            delta_norm = translation_magnitude(delta)
        r = neural_resolution or cfg.neural_resolution
        rendered = self.renderer(self.field(self.planes(ws, noise_mode, generator)), camera, r, generator)
        features = rendered.features
        own_bg = self.background is not None and self.background.own_mapping
        if own_bg and z is not None:  # former variant: composed in the decoder's [0, 1] colour range
            features = compose(features, rendered.mask, self.background(z, ws, r, psi, noise_mode, generator, update_w_avg))
        features = features * 2 - 1  # to (-1, 1), as EG3D's ray marcher does
        if self.background is not None and not own_bg:  # PanoHead: feature + (1 - mask) * bcg
            features = compose(features, rendered.mask, self.background(z, ws, r, psi, noise_mode, generator))
        rgb = features[:, :3]
        sr_noise = noise_mode if cfg.sr_noise_mode == "follow" else "none"
        image, mask_up = self.superres(features, rgb, rendered.mask, ws[:, -1], sr_noise, generator)
        if output_resolution is not None and output_resolution != image.shape[-1]:
            size = (output_resolution, output_resolution)
            image = nn.functional.interpolate(image, size=size, mode="bilinear", align_corners=False,
                                              antialias=output_resolution < image.shape[-1])
            mask_up = nn.functional.interpolate(mask_up, size=size, mode="bilinear", align_corners=False)
        return GeneratorOutput(image=image, image_raw=rgb, mask=mask_up, mask_raw=rendered.mask, depth=rendered.depth,
                               ws=ws, camera=camera, camera_delta_norm=delta_norm)
