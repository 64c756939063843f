"""Procedural image degradations: blur, sensor noise, JPEG compression and lost resolution.

These stand in for the quality problems of in-the-wild photo collections, so that the IQA gate
(keep / enhance / drop) has real work to do and can be calibrated against a known severity.

All functions take and return HxWx3 uint8 arrays and never modify their input. Randomness comes
only from the `numpy.random.Generator` passed in, so a given (image, rng state, severity) always
produces the same bytes.

Severity scale used by `degrade` (and by the IQA calibration):
  0.0        untouched
  ~0.3       mild: visible on close inspection, still a usable photo
  ~0.6       moderate: clearly soft / noisy / blocky, worth enhancing
  ~0.9-1.0   severe: detail destroyed, should be dropped
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

OPS = ("downscale", "blur", "noise", "jpeg")
"""Operation names as they appear in the `degrade` report, in the order they are applied
(optics and resolution first, then sensor noise, then compression — as in a camera pipeline)."""


def _check(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8 image, got {img.dtype} {img.shape}")
    return img


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation `sigma` pixels (per channel, reflecting borders)."""
    img = _check(img)
    if sigma <= 0:
        return img.copy()
    out = ndimage.gaussian_filter(img.astype(np.float32), sigma=(sigma, sigma, 0), mode="reflect")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def add_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise with standard deviation `sigma` in 0..255 units."""
    img = _check(img)
    if sigma <= 0:
        return img.copy()
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(np.rint(img.astype(np.float32) + noise), 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through baseline JPEG at `quality` (1..100, 4:2:0 chroma subsampling).

    libjpeg is deterministic, so equal inputs give equal outputs.
    """
    img = _check(img)
    q = int(np.clip(round(quality), 1, 100))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=q, subsampling=2, optimize=False)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def downscale(img: np.ndarray, factor: float) -> np.ndarray:
    """Shrink by `factor` (>= 1) and enlarge back to the original size: same shape, lost detail.

    Down with an area filter (what a camera/resizer does), up with bicubic (what a viewer does).
    """
    img = _check(img)
    if factor <= 1.0:
        return img.copy()
    h, w = img.shape[:2]
    sw, sh = max(1, round(w / factor)), max(1, round(h / factor))
    small = Image.fromarray(img).resize((sw, sh), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC), dtype=np.uint8).copy()


# Parameter of each operation at amount 1. Chosen so that equal amounts look about equally bad on
# 128 px faces (the IQA calibration checks this): resolution lost by 5x ~ blur sigma 2.6 ~ noise
# sigma 28 ~ JPEG quality 5.
_FULL = {"downscale": 5.0, "blur": 2.6, "noise": 28.0}


def _magnitude(op: str, amount: float) -> float:
    """Parameter of `op` for a degradation amount in [0, ~1.25]."""
    if op == "downscale":
        return 1.0 + (_FULL[op] - 1.0) * amount  # factor: 1 = none
    if op == "jpeg":
        # Perceived JPEG damage grows fast below quality ~40: quality 95 * (1 - amount)^1.5 + 5.
        return float(round(95.0 * max(0.0, 1.0 - amount) ** 1.5 + 5.0))
    return _FULL[op] * amount  # blur sigma / noise sigma


def _apply(img: np.ndarray, op: str, value: float, rng: np.random.Generator) -> np.ndarray:
    if op == "downscale":
        return downscale(img, value)
    if op == "blur":
        return blur(img, value)
    if op == "noise":
        return add_noise(img, value, rng)
    return jpeg(img, int(value))


def degrade(img: np.ndarray, rng: np.random.Generator, severity: float) -> tuple[np.ndarray, dict]:
    """Apply a plausible mix of degradations at `severity` in [0, 1]; return (image, report).

    One *primary* operation carries the full severity (so the perceived damage tracks severity
    whatever the mix); each other operation is added with probability 0.35 at a fraction of it,
    like a real photo that is e.g. mainly out of focus but also a little noisy and compressed.
    Severity 0 returns an unchanged copy. The report is JSON-able:
    ``{"severity": s, "ops": [{"op": "blur", "amount": a, "value": v}, ...]}`` in applied order,
    where `value` is the operation's parameter (factor, sigma, sigma, quality).
    """
    img = _check(img)
    s = float(np.clip(severity, 0.0, 1.0))
    report: dict = {"severity": s, "ops": []}
    if s <= 0.0:
        return img.copy(), report
    primary = OPS[int(rng.integers(len(OPS)))]
    amounts: dict[str, float] = {}
    for op in OPS:
        jitter = float(rng.uniform(0.8, 1.2))
        extra = float(rng.uniform())
        fraction = float(rng.uniform(0.2, 0.5))
        if op == primary:
            amounts[op] = s * jitter
        elif extra < 0.35:
            amounts[op] = s * fraction * jitter
    out = img
    for op in OPS:
        if op not in amounts:
            continue
        value = _magnitude(op, amounts[op])
        out = _apply(out, op, value, rng)
        report["ops"].append({"op": op, "amount": round(amounts[op], 6), "value": round(float(value), 6)})
    return out, report
