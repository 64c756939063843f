"""Image feature extractors for FID/KID.

- `InceptionFeatures`: torchvision's InceptionV3 architecture with the pooling of the original
  TensorFlow FID graph (average pools that exclude padding, a max pool in the last block), 2048-d
  pool features, loading local FID weights (e.g. pytorch-fid's pt_inception-2015-12-05 state dict,
  converted to safetensors or read weights-only). Numbers are comparable to published FIDs only with
  those weights.
- `OfflineFeatures`: a fixed, seeded random conv net (no weights); its FIDs rank models of one run
  but are NOT comparable to published numbers, and every result says so (`comparable` = False).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .weights import load_state_dict


def _to_float(images) -> torch.Tensor:
    """uint8 (N, H, W, 3) numpy or float (N, 3, H, W) in [-1, 1] -> float (N, 3, H, W) in [0, 1]."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    x = torch.as_tensor(images).float()
    return (x + 1) / 2


class OfflineFeatures(nn.Module):
    """Random-init conv features: 4 stride-2 conv + ReLU layers; mean and std pooled per layer (480-d)."""
    name = "offline-random-conv"
    comparable = False
    note = "offline seeded random conv features: not comparable to published numbers"

    def __init__(self, seed: int = 0, size: int = 64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        chans = [3, 24, 48, 64, 104]
        self.size = size
        self.weights = nn.ParameterList()
        for a, b in zip(chans[:-1], chans[1:]):
            w = torch.randn((b, a, 3, 3), generator=g) * (2.0 / (a * 9)) ** 0.5
            self.weights.append(nn.Parameter(w, requires_grad=False))

    @torch.no_grad()
    def forward(self, images) -> torch.Tensor:
        x = _to_float(images).to(self.weights[0].device) * 2 - 1
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        feats = []
        for w in self.weights:
            x = F.relu(F.conv2d(x, w, stride=2, padding=1))
            feats += [x.mean((2, 3)), x.std((2, 3))]
        return torch.cat(feats, 1)



def _fid_inception(state: dict) -> nn.Module:
    from torchvision.models import inception as tvi

    net = tvi.Inception3(num_classes=1008, aux_logits=False, transform_input=False, init_weights=False)
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith("fc.")]
    if bad or unexpected:
        raise ValueError(f"inception weights do not match the InceptionV3 architecture: missing {bad[:5]}, "
                         f"unexpected {list(unexpected)[:5]}")

    def pool_avg(block, branches):
        def fwd(x):
            outs = branches(x)
            outs.append(block.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)))
            return torch.cat(outs, 1)
        return fwd

    def a_branches(b):
        return lambda x: [b.branch1x1(x), b.branch5x5_2(b.branch5x5_1(x)),
                          b.branch3x3dbl_3(b.branch3x3dbl_2(b.branch3x3dbl_1(x)))]

    def c_branches(b):
        return lambda x: [b.branch1x1(x), b.branch7x7_3(b.branch7x7_2(b.branch7x7_1(x))),
                          b.branch7x7dbl_5(b.branch7x7dbl_4(b.branch7x7dbl_3(b.branch7x7dbl_2(b.branch7x7dbl_1(x)))))]

    def e_forward(b, maxpool: bool):
        def fwd(x):
            y3 = b.branch3x3_1(x)
            y3 = torch.cat([b.branch3x3_2a(y3), b.branch3x3_2b(y3)], 1)
            yd = b.branch3x3dbl_2(b.branch3x3dbl_1(x))
            yd = torch.cat([b.branch3x3dbl_3a(yd), b.branch3x3dbl_3b(yd)], 1)
            p = (F.max_pool2d(x, 3, stride=1, padding=1) if maxpool
                 else F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
            return torch.cat([b.branch1x1(x), y3, yd, b.branch_pool(p)], 1)
        return fwd

    for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        blk = getattr(net, name)
        blk.forward = pool_avg(blk, a_branches(blk))
    for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        blk = getattr(net, name)
        blk.forward = pool_avg(blk, c_branches(blk))
    net.Mixed_7b.forward = e_forward(net.Mixed_7b, maxpool=False)
    net.Mixed_7c.forward = e_forward(net.Mixed_7c, maxpool=True)
    net.fc = nn.Identity()
    net.dropout = nn.Identity()
    return net.eval().requires_grad_(False)


class InceptionFeatures(nn.Module):
    """2048-d pool3 features of InceptionV3 with FID weights loaded from `path`."""
    name = "inception-v3-fid"
    comparable = True
    note = "InceptionV3 pool3 (FID weights): comparable to published FIDs"

    def __init__(self, path):
        super().__init__()
        self.net = _fid_inception(load_state_dict(path))

    @torch.no_grad()
    def forward(self, images) -> torch.Tensor:
        x = _to_float(images).to(next(self.net.parameters()).device)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.net(x * 2 - 1)


def build_extractor(p, device="cpu") -> nn.Module:
    """From EvaluateParams: the named extractor on `device`."""
    if p.feature_extractor == "inception":
        return InceptionFeatures(p.inception_path).to(device)
    return OfflineFeatures().to(device)


def extract(extractor: nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    out = [extractor(images[s:s + batch_size]).cpu().numpy() for s in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 1))
