"""Perceptual distances for PTI and for the inversion metrics. Every backend maps two image batches
in [-1, 1] (B, 3, H, W) to one distance per image and is differentiable in its first argument.

- `LPIPSVGG`: LPIPS (Zhang et al. 2018) on torchvision's VGG16 layers relu1_2 .. relu5_3: unit-normalised
  activations, squared differences weighted by the learned linear heads, spatially averaged, summed.
  VGG weights and LPIPS heads are read from local files.
- `DinoFeatures`: PercHead-style (PercHead §3.3): mean squared difference of DINOv2 hidden states
  (class + patch tokens) at mid-to-late layers; transformers Dinov2Model from a local directory.
- `SamFeatures`: SAM 2.1 image-encoder embeddings (transformers Sam2VisionModel, local directory).
- `OfflinePerceptual`: seeded random conv features + (1 - MS-SSIM). Needs no weights; a stand-in that
  makes PTI run offline, NOT LPIPS, and labelled as such wherever its numbers appear.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .image_metrics import ms_ssim
from .weights import load_state_dict

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _imagenet(x: torch.Tensor, size: int | None = None) -> torch.Tensor:
    x = (x + 1) / 2
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = x.new_tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(_IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class LPIPSVGG(nn.Module):
    name = "lpips-vgg"
    label = "LPIPS (VGG)"
    SLICES = (4, 9, 16, 23, 30)          # torchvision vgg16.features indices ending relu1_2 .. relu5_3
    CHANNELS = (64, 128, 256, 512, 512)
    # LPIPS scales inputs in [-1, 1] with these shift/scale constants before VGG.
    SHIFT = (-0.030, -0.088, -0.188)
    SCALE = (0.458, 0.448, 0.450)

    def __init__(self, vgg_path, lin_path):
        super().__init__()
        from torchvision.models import vgg16

        vgg = vgg16(weights=None)
        state = load_state_dict(vgg_path)
        feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        vgg.features.load_state_dict(feats, strict=True)
        self.features = vgg.features[: self.SLICES[-1]].eval().requires_grad_(False)
        lins = load_state_dict(lin_path)
        self.lins = nn.ParameterList()
        for i, c in enumerate(self.CHANNELS):
            w = next((lins[k] for k in (f"lin{i}.model.1.weight", f"lin{i}.weight", f"{i}.weight") if k in lins), None)
            if w is None or w.numel() != c:
                raise ValueError(f"{lin_path}: no LPIPS head for layer {i} with {c} channels")
            self.lins.append(nn.Parameter(w.reshape(1, c, 1, 1).float(), requires_grad=False))
        self.register_buffer("shift", torch.tensor(self.SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(self.SCALE).view(1, 3, 1, 1))

    def _acts(self, x):
        x = (x - self.shift) / self.scale
        out, start = [], 0
        for end in self.SLICES:
            x = self.features[start:end](x)
            out.append(x)
            start = end
        return out

    def forward(self, x, y):
        dist = 0.0
        for lin, a, b in zip(self.lins, self._acts(x), self._acts(y)):
            a = a / (a.square().sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.square().sum(1, keepdim=True).sqrt() + 1e-10)
            dist = dist + ((a - b).square() * lin).sum(1).mean((1, 2))
        return dist


class DinoFeatures(nn.Module):
    name = "dinov2"
    label = "DINOv2 feature distance"

    def __init__(self, path, layers=(4, 8, 11), size: int = 224):
        super().__init__()
        from transformers import Dinov2Model

        self.model = Dinov2Model.from_pretrained(str(path), local_files_only=True).eval().requires_grad_(False)
        n = self.model.config.num_hidden_layers
        self.layers = tuple(l for l in layers if 0 <= l <= n) or (n,)
        patch = self.model.config.patch_size
        self.size = max(patch, size // patch * patch)

    def forward(self, x, y):
        hx = self.model(pixel_values=_imagenet(x, self.size), output_hidden_states=True).hidden_states
        hy = self.model(pixel_values=_imagenet(y, self.size), output_hidden_states=True).hidden_states
        return sum((hx[l] - hy[l]).square().mean((1, 2)) for l in self.layers) / len(self.layers)


class SamFeatures(nn.Module):
    name = "sam2.1"
    label = "SAM 2.1 encoder distance"

    def __init__(self, path, size: int = 1024):
        super().__init__()
        from transformers import Sam2VisionModel

        self.model = Sam2VisionModel.from_pretrained(str(path), local_files_only=True).eval().requires_grad_(False)
        self.size = int(getattr(self.model.config, "image_size", size) or size)

    def _embed(self, x):
        out = self.model(pixel_values=_imagenet(x, self.size))
        return out.last_hidden_state

    def forward(self, x, y):
        return (self._embed(x) - self._embed(y)).square().flatten(1).mean(1)


class OfflinePerceptual(nn.Module):
    name = "offline-randconv-msssim"
    label = "offline random-conv + MS-SSIM distance (not LPIPS)"

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        chans = (3, 16, 32, 64)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn((b, a, 3, 3), generator=g) * (2.0 / (9 * a)) ** 0.5, requires_grad=False)
            for a, b in zip(chans[:-1], chans[1:]))

    def _acts(self, x):
        out = []
        for i, w in enumerate(self.weights):
            x = F.leaky_relu(F.conv2d(x, w, stride=1 if i == 0 else 2, padding=1), 0.2)
            out.append(x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, x, y):
        feat = sum((a - b).square().sum(1).mean((1, 2)) for a, b in zip(self._acts(x), self._acts(y)))
        return feat / len(self.weights) + (1 - ms_ssim((x + 1) / 2, (y + 1) / 2))


def build_term(term, seed: int = 0) -> nn.Module:
    """One perceptual backend from a PerceptualTerm param."""
    if term.kind == "lpips":
        return LPIPSVGG(term.path, term.lin_path)
    if term.kind == "dinov2":
        return DinoFeatures(term.path, term.layers)
    if term.kind == "sam2":
        return SamFeatures(term.path)
    if term.kind == "offline":
        return OfflinePerceptual(seed)
    raise ValueError(f"unknown perceptual kind {term.kind!r}")


class PerceptualLoss(nn.Module):
    """Weighted sum of perceptual terms -> one value per image."""

    def __init__(self, terms, device="cpu"):
        super().__init__()
        self.weights = [float(t.weight) for t in terms]
        self.nets = nn.ModuleList(build_term(t) for t in terms).to(device)

    @property
    def labels(self) -> list[str]:
        return [n.label for n in self.nets]

    def forward(self, x, y):
        total = x.new_zeros(x.shape[0])
        for w, net in zip(self.weights, self.nets):
            if w:
                total = total + w * net(x, y)
        return total
