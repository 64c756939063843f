"""Offline image-quality gate: a classical no-reference IQA score and a classical restoration.

`ClassicalIQA.score(img)` returns 0..100 (higher = better) so that the pipeline's thresholds mean
something: keep > 60, drop < 35, enhance in between. It measures three kinds of damage and
converts each into an *equivalent degradation amount* on the scale of `balancehead.world.degrade`
(0 = none, ~0.3 mild, ~0.6 moderate, ~0.9 severe):

* lost detail (blur, lost resolution, heavy compression): how steep the strongest edges are
  relative to their local contrast. A sharp step rises over ~1 pixel; blurring by sigma spreads it
  over ~2.5 sigma pixels, so ``log(steepness_clean / steepness)`` grows with the blur radius and
  does not depend on the image's contrast;
* noise: robust (median absolute deviation) estimate of the sigma of a second-derivative residual,
  taken only where the image is locally flat and unsaturated, so edges and texture count little;
* JPEG blocking: mean absolute step across 8x8 block borders relative to inside blocks.

The amounts are combined as a Euclidean norm (several moderate problems add up) and mapped
linearly: ``score = 97 - 75 * amount``, so amount 0.49 is the keep threshold (60) and 0.83 the drop
threshold (35). The constants were calibrated on procedural head renders at 128 px
(`benchmarks/bench_iqa.py` prints the table); on real photographs they are a reasonable prior,
not ground truth — the production backend (a learned IQA) replaces this module there.

`ClassicalIQA.enhance(img)` is the matching restoration (`offline-lanczos-unsharp`): denoise where
noise was measured, soften 8x8 block borders where blocking was measured, optional Lanczos
resampling, then an unsharp mask whose radius and strength follow the measured loss of detail.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

# Second-derivative kernel (Immerkaer 1996): zero response on planes, unit-variance white noise
# gives a residual of standard deviation 6.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_MAD_TO_SIGMA = 1.0 / 0.6745


@dataclass(frozen=True)
class IQAConfig:
    """Calibration constants; the defaults come from `benchmarks/bench_iqa.py` on 128 px renders."""

    steepness_clean: float = 0.56  # 98th-percentile edge steepness of an unblurred image
    detail_gain: float = 0.85  # amount per unit of log(steepness_clean / steepness)
    noise_floor: float = 0.3  # gray-level sigma (0..255) read on clean images
    noise_per_amount: float = 16.0  # gray-level sigma per unit amount (degrade: 28/sqrt(3))
    block_floor: float = 1.05  # blockiness of clean images
    block_per_amount: float = 1.3  # amount = sqrt(blockiness excess / this)
    score_at_zero: float = 97.0
    score_per_amount: float = 75.0


@dataclass(frozen=True)
class Features:
    """What `ClassicalIQA.features` measures; amounts are on the `degrade` severity scale."""

    steepness: float | None  # None when the image has no strong edge to measure
    noise_sigma: float  # gray levels, 0..255 scale
    blockiness: float
    detail_amount: float
    noise_amount: float
    block_amount: float

    @property
    def amount(self) -> float:
        return float(np.sqrt(self.detail_amount**2 + self.noise_amount**2 + self.block_amount**2))

    def as_dict(self) -> dict:
        return {
            "steepness": self.steepness,
            "noise_sigma": self.noise_sigma,
            "blockiness": self.blockiness,
            "detail_amount": self.detail_amount,
            "noise_amount": self.noise_amount,
            "block_amount": self.block_amount,
            "amount": self.amount,
        }


def _gray(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8 image, got {img.dtype} {img.shape}")
    return img.astype(np.float32).mean(axis=2) / 255.0


def edge_steepness(g: np.ndarray) -> float | None:
    """98th percentile of |gradient| / local (7x7) contrast over strong-contrast pixels.

    A light pre-smoothing (sigma 0.5) keeps pixel noise from passing as sharp edges.
    """
    gs = ndimage.gaussian_filter(g, 0.5)
    gx = ndimage.correlate1d(gs, [-0.5, 0.0, 0.5], axis=1)
    gy = ndimage.correlate1d(gs, [-0.5, 0.0, 0.5], axis=0)
    contrast = ndimage.maximum_filter(gs, 7) - ndimage.minimum_filter(gs, 7)
    strong = contrast > 0.15
    if strong.sum() < 20:
        return None
    return float(np.quantile(np.hypot(gx, gy)[strong] / contrast[strong], 0.98))


def noise_sigma(g: np.ndarray) -> float:
    """Noise standard deviation in gray levels (0..255), from flat, unsaturated pixels."""
    residual = ndimage.convolve(g, _NOISE_KERNEL, mode="reflect") / 6.0
    gs = ndimage.gaussian_filter(g, 2.0)  # wide enough that the noise itself does not pick the pixels
    usable = (gs > 0.06) & (gs < 0.9)  # near black or white, clipping hides half of the noise
    if usable.sum() < 50:
        return 0.0
    grad = np.hypot(ndimage.sobel(gs, 1), ndimage.sobel(gs, 0))
    flat = usable & (grad <= np.quantile(grad[usable], 0.5))
    return float(np.median(np.abs(residual[flat])) * _MAD_TO_SIGMA * 255.0)


def blockiness(g: np.ndarray) -> float:
    """Mean |step| across 8x8 block borders over mean |step| inside blocks (1 = no blocking)."""
    ratios = []
    for axis in (0, 1):
        d = np.abs(np.diff(g, axis=axis))
        if d.shape[axis] < 16:
            continue
        border = (np.arange(d.shape[axis]) % 8) == 7
        at = d.take(np.flatnonzero(border), axis=axis).mean()
        inside = d.take(np.flatnonzero(~border), axis=axis).mean()
        ratios.append(at / (inside + 1e-4))
    return float(np.mean(ratios)) if ratios else 1.0


class ClassicalIQA:
    """No-reference quality score (0..100) and matching restoration, numpy/scipy only."""

    name = "offline-classical-nriqa"
    enhancer_name = "offline-lanczos-unsharp"

    def __init__(self, config: IQAConfig = IQAConfig()):
        self.config = config

    def features(self, img: np.ndarray) -> Features:
        c = self.config
        g = _gray(img)
        steep = edge_steepness(g)
        sigma = noise_sigma(g)
        block = blockiness(g)
        detail = 0.0 if steep is None else c.detail_gain * max(0.0, np.log(c.steepness_clean / max(steep, 1e-3)))
        return Features(
            steepness=steep,
            noise_sigma=sigma,
            blockiness=block,
            detail_amount=float(detail),
            noise_amount=max(0.0, sigma - c.noise_floor) / c.noise_per_amount,
            block_amount=float(np.sqrt(max(0.0, block - c.block_floor) / c.block_per_amount)),
        )

    def score(self, img: np.ndarray) -> float:
        """Quality in [0, 100]; > 60 keep, < 35 drop, in between enhance."""
        c = self.config
        return float(np.clip(c.score_at_zero - c.score_per_amount * self.features(img).amount, 0.0, 100.0))

    def enhance(self, img: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """Restore `img` (HxWx3 uint8); `size` = (width, height) to Lanczos-resample to (default: same).

        Steps follow the measured damage, so a clean image is left almost untouched.
        """
        f = self.features(img)
        out = img.astype(np.float32)
        if f.noise_amount > 0.05:
            out = _denoise(out, f.noise_sigma)
        if f.block_amount > 0.05:
            out = _deblock(out, strength=min(1.0, f.block_amount))
        if size is not None and tuple(size) != (img.shape[1], img.shape[0]):
            pil = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
            out = np.asarray(pil.resize(tuple(size), Image.Resampling.LANCZOS), dtype=np.float32)
        if f.detail_amount > 0.05:
            radius = 0.8 + 1.6 * min(f.detail_amount, 1.2)
            amount = 0.6 + 1.4 * min(f.detail_amount, 1.2)
            out = _unsharp(out, radius, amount)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _denoise(x: np.ndarray, sigma: float) -> np.ndarray:
    """Edge-aware smoothing: a Gaussian blend weighted by how flat the neighbourhood is.

    Flat regions (where noise shows) get the full blur; pixels on edges keep most of their value.
    """
    s = float(np.clip(0.6 + sigma / 12.0, 0.6, 2.0))
    smooth = ndimage.gaussian_filter(x, (s, s, 0))
    med = ndimage.median_filter(x, size=(3, 3, 1))
    g = smooth.mean(axis=2)
    grad = np.hypot(ndimage.sobel(g, 1), ndimage.sobel(g, 0))
    edge = np.clip(grad / (8.0 * max(sigma, 1.0) * 4.0), 0.0, 1.0)[..., None]
    return (1.0 - edge) * smooth + edge * med


def _deblock(x: np.ndarray, strength: float) -> np.ndarray:
    """Blend the two pixel rows/columns on each side of every 8x8 border towards a local mean."""
    out = x.copy()
    h, w = x.shape[:2]
    smooth_h = ndimage.uniform_filter1d(x, 4, axis=1)
    smooth_v = ndimage.uniform_filter1d(x, 4, axis=0)
    cols = np.array([c for k in range(8, w, 8) for c in (k - 1, k)])
    rows = np.array([r for k in range(8, h, 8) for r in (k - 1, k)])
    if cols.size:
        out[:, cols] = (1 - strength) * out[:, cols] + strength * smooth_h[:, cols]
    if rows.size:
        out[rows] = (1 - strength) * out[rows] + strength * smooth_v[rows]
    return out


def _unsharp(x: np.ndarray, radius: float, amount: float) -> np.ndarray:
    blurred = ndimage.gaussian_filter(x, (radius, radius, 0))
    return x + amount * (x - blurred)
