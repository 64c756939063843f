"""Image embedders for the label_clip stage: the CLIP feature of a subject's front view is the
semantic condition shared by all of its views (BalanceHead, §3.1 and §4).

Two backends share one embedding routine:

* `OfflineClipEmbedder` builds open_clip's real ViT-B-32 architecture with a seeded random
  initialisation. Its features carry no semantics learned from data, but the code path (shapes,
  preprocessing, batching, normalisation, dtype) is exactly the production one, so the rest of the
  workflow can run anywhere without weights. Its `name` says so, and every label it writes is
  marked with that name.
* `OpenClipEmbedder` loads real weights from a local file only (no hub, no network); if the file
  is missing it fails at construction with a message naming the parameter to set.

Preprocessing follows open_clip's own for ViT-B-32 (resize the shortest side to 224 with bicubic
interpolation, centre crop, scale to [0, 1], normalise by the CLIP mean/std), implemented with
torch ops on uint8 arrays so that no PIL round trip is needed.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm


@dataclass(frozen=True)
class ClipPreprocess:
    """The parts of open_clip's preprocess config that we reproduce."""

    size: int = 224
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

    @classmethod
    def from_model(cls, model) -> "ClipPreprocess":
        cfg = getattr(model.visual, "preprocess_cfg", None) or {}
        size = cfg.get("size", getattr(model.visual, "image_size", 224))
        if isinstance(size, (tuple, list)):
            if size[0] != size[1]:
                raise ValueError(f"non-square CLIP input size {size} is not supported")
            size = size[0]
        return cls(
            size=int(size),
            mean=tuple(float(v) for v in cfg.get("mean", cls.mean)),
            std=tuple(float(v) for v in cfg.get("std", cls.std)),
        )


def _bicubic_kernel(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel with PIL's a = -0.5 (torch's own bicubic uses -0.75)."""
    x = x.abs()
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


def resample_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """(out_size, in_size) matrix of PIL's bicubic resampling weights along one axis.

    PIL widens the kernel by the scale factor when shrinking (antialiasing), truncates the window
    at the borders and renormalises each row; we do the same so that our uint8 -> tensor path
    matches `PIL.Image.resize(..., BICUBIC)`, which open_clip's transform calls, to within
    rounding.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        taps = torch.arange(lo, hi, dtype=torch.float64)
        w = _bicubic_kernel((taps - center + 0.5) / filterscale)
        weights[i, lo:hi] = w / w.sum()
    return weights


def _resize_uint8(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Separable PIL-style bicubic resize of float (N, C, H, W) holding 0..255 values.

    Horizontal pass first, then vertical, each rounded and clipped to 8 bits as PIL does.
    """
    h, w = x.shape[-2:]
    if w != out_w:
        x = torch.einsum("nchw,ow->ncho", x, resample_matrix(w, out_w).to(x.dtype))
        x = torch.floor(x + 0.5).clamp_(0.0, 255.0)
    if h != out_h:
        x = torch.einsum("nchw,oh->ncow", x, resample_matrix(h, out_h).to(x.dtype))
        x = torch.floor(x + 0.5).clamp_(0.0, 255.0)
    return x


def preprocess_batch(rgbs: np.ndarray, pre: ClipPreprocess) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, size, size), as open_clip's image transform would give.

    Shortest side resized to `pre.size` (PIL-style bicubic), centre crop, [0, 1], CLIP mean/std.
    """
    if rgbs.ndim != 4 or rgbs.shape[-1] != 3 or rgbs.dtype != np.uint8:
        raise ValueError(f"expected uint8 (N, H, W, 3), got {rgbs.dtype} {rgbs.shape}")
    x = torch.from_numpy(np.ascontiguousarray(rgbs)).permute(0, 3, 1, 2).to(torch.float64)
    h, w = x.shape[-2:]
    # torchvision's Resize(int): short side -> size, long side truncated (not rounded)
    new_h, new_w = (pre.size, int(pre.size * w / h)) if h <= w else (int(pre.size * h / w), pre.size)
    x = _resize_uint8(x, new_h, new_w)
    top, left = int(round((new_h - pre.size) / 2.0)), int(round((new_w - pre.size) / 2.0))
    x = x[:, :, top:top + pre.size, left:left + pre.size].float() / 255.0
    mean = torch.tensor(pre.mean, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


@contextmanager
def torch_threads(threads: int | None):
    """Run a block with `threads` intra-op threads and restore the previous setting afterwards."""
    if not threads:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _as_batch(rgbs) -> np.ndarray:
    if isinstance(rgbs, np.ndarray):
        return rgbs[None] if rgbs.ndim == 3 else rgbs
    return np.stack([np.asarray(r) for r in rgbs]) if len(rgbs) else np.zeros((0, 1, 1, 3), np.uint8)


class _ClipImageEmbedder:
    """Shared embedding loop: preprocess, encode_image, L2-normalise, float32 numpy."""

    name: str
    model_name: str
    embed_dim: int

    def __init__(self, model, device: str, threads: int | None, progress: bool):
        self.model = model.to(device).eval()
        self.device = device
        self.threads = threads
        self.progress = progress
        self.preprocess = ClipPreprocess.from_model(model)
        self.embed_dim = int(model.visual.output_dim)

    def embed(self, rgbs, batch_size: int = 32) -> np.ndarray:
        """Embed RGB uint8 images (list of HxWx3 or an (N, H, W, 3) array) -> float32 (N, D), unit rows."""
        batch = _as_batch(rgbs)
        n = len(batch)
        out = np.zeros((n, self.embed_dim), dtype=np.float32)
        if n == 0:
            return out
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        starts = range(0, n, batch_size)
        with torch_threads(self.threads), torch.no_grad():
            for s in tqdm(starts, desc=f"{self.name} embed", unit="batch",
                          disable=not self.progress or len(starts) < 2):
                x = preprocess_batch(batch[s:s + batch_size], self.preprocess).to(self.device)
                feats = self.model.encode_image(x).float()
                feats = F.normalize(feats, dim=-1)
                out[s:s + len(x)] = feats.cpu().numpy()
        return out


def _create_model(model_name: str, **kwargs):
    import open_clip  # imported lazily: it is heavy and only this stage needs it

    return open_clip.create_model(model_name, **kwargs)


class OfflineClipEmbedder(_ClipImageEmbedder):
    """open_clip ViT-B-32 with a seeded random initialisation (no weights needed, no semantics).

    The initialisation runs inside `torch.random.fork_rng` so the caller's global RNG state is
    untouched, and two instances with the same seed hold bit-identical weights.
    """

    def __init__(self, seed: int = 0, model_name: str = "ViT-B-32", device: str = "cpu",
                 threads: int | None = None, progress: bool = True):
        self.seed = int(seed)
        self.model_name = model_name
        self.name = f"offline-random-init-{model_name}"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = _create_model(model_name, pretrained=None)
        super().__init__(model, device, threads, progress)

    def provenance(self) -> dict:
        return {"backend": self.name, "model_id": self.model_name, "weights": None, "seed": self.seed}


class OpenClipEmbedder(_ClipImageEmbedder):
    """open_clip model with weights from a local file (.safetensors preferred; .bin/.pt are read with
    torch.load(weights_only=True) by open_clip). Never downloads: a pretrained *tag* is refused."""

    PARAM = "label_clip.pretrained"

    def __init__(self, model_name: str = "ViT-B-32", pretrained: str | os.PathLike | None = None,
                 device: str = "cpu", threads: int | None = None, progress: bool = True):
        if not pretrained or not os.path.isfile(pretrained):
            raise FileNotFoundError(
                f"open_clip weights for {model_name!r} not found at {pretrained!r}: set "
                f"`{self.PARAM}` in params.yaml to a local .safetensors file (no download is attempted), "
                f"or select the offline backend."
            )
        self.model_name = model_name
        self.pretrained = str(pretrained)
        self.name = f"open_clip-{model_name}"
        model = _create_model(model_name, pretrained=self.pretrained, require_pretrained=True,
                                    weights_only=True)
        super().__init__(model, device, threads, progress)

    def provenance(self) -> dict:
        return {"backend": self.name, "model_id": self.model_name, "weights": self.pretrained, "seed": None}
