"""Image encoders shared by both reconstructors: fused multi-layer features of a frozen backbone
(PanoLAM eq. 1, after DPT/LAM), plus PercHead's small trained ViT beside it (PercHead §3.1).

The backbone is either DINOv2 through `transformers` (`Dinov2Model.from_pretrained(path,
local_files_only=True)` -- weights by path, never downloaded, no remote code) or, for tests and the
offline default, `TinyViT`: our own random-initialised ViT with the same output layout. Its features are
not DINOv2's; runs using it are labelled "offline encoder" by whoever reports them.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import EncoderConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TinyViT(nn.Module):
    """A plain pre-norm ViT: patch embedding + class token + learned positions + `depth` encoder layers.
    `hidden_states(x)` mirrors transformers' output: [embeddings, after layer 1, ..., after layer depth]."""

    def __init__(self, image_size: int, patch_size: int, width: int, depth: int, heads: int):
        super().__init__()
        self.patch = nn.Conv2d(3, width, patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, 1 + (image_size // patch_size) ** 2, width) * 0.02)
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True,
                                                               norm_first=True) for _ in range(depth))

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1) + self.pos
        out = [h]
        for layer in self.layers:
            h = layer(h)
            out.append(h)
        return out


def load_dinov2(path: str) -> nn.Module:
    """A local DINOv2 checkpoint directory -> transformers' Dinov2Model (frozen)."""
    from transformers import Dinov2Model

    return Dinov2Model.from_pretrained(path, local_files_only=True, trust_remote_code=False)


class ImageEncoder(nn.Module):
    """images (B, 3, H, W) in [0, 1] -> tokens (B, T, width): concatenated patch tokens of `cfg.layers`
    (plus the small ViT's last layer when `aux_depth` > 0) through a two-layer MLP."""

    def __init__(self, cfg: EncoderConfig, width: int, backbone: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        if backbone is None:
            backbone = (load_dinov2(cfg.weights) if cfg.kind == "dinov2"
                        else TinyViT(cfg.image_size, cfg.patch_size, cfg.width, cfg.depth, cfg.heads))
        self.backbone = backbone.requires_grad_(False).eval()
        hidden = backbone.config.hidden_size if cfg.kind == "dinov2" else cfg.width
        patch = backbone.config.patch_size if cfg.kind == "dinov2" else cfg.patch_size
        self.aux = (TinyViT(cfg.image_size, patch, cfg.aux_width, cfg.aux_depth, max(1, cfg.aux_width // 32))
                    if cfg.aux_depth > 0 else None)
        fused = hidden * len(cfg.layers) + (cfg.aux_width if self.aux is not None else 0)
        self.fuse = nn.Sequential(nn.Linear(fused, width), nn.GELU(), nn.Linear(width, width))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen in both papers
        return self

    def _backbone_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.cfg.kind == "dinov2":
            return list(self.backbone(pixel_values=x, output_hidden_states=True).hidden_states)
        return self.backbone.hidden_states(x)

    def foreground(self, mask: torch.Tensor) -> torch.Tensor:
        """Foreground mask (B, 1, H, W) in [0, 1] -> (B, T) bool: patches at least half foreground (PercHead §3.1
        "we only keep foreground patches"); an image without any keeps all its patches."""
        patch = self.backbone.config.patch_size if self.cfg.kind == "dinov2" else self.cfg.patch_size
        size = self.cfg.image_size
        m = nn.functional.interpolate(mask.float(), size=(size, size), mode="area")
        keep = (nn.functional.avg_pool2d(m, patch) >= 0.5).flatten(1)
        return keep | ~keep.any(1, keepdim=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = self.cfg.image_size
        x = nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.mean) / self.std
        with torch.no_grad():
            states = self._backbone_states(x)
        feats = [states[i][:, 1:] for i in self.cfg.layers]  # patch tokens, class token dropped
        if self.aux is not None:
            feats.append(self.aux.hidden_states(x)[-1][:, 1:])
        return self.fuse(torch.cat(feats, -1))
