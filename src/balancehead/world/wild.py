"""'In-the-wild' source photos of procedural subjects: the stand-in for a web photo collection.

A source is a near-front view (|yaw| <= 30 deg, small pitch) of the subject, placed off-centre and at a
random scale on a cluttered background, sometimes with a second person behind or an object in front of
the face, then degraded (blur / noise / JPEG / low resolution via `balancehead.world.degrade`). The
severity mix (mostly mild, some moderate, a few severe) gives the IQA gate downstream all three
outcomes (keep / enhance / drop). Everything drawn is recorded in the returned truth dict.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from balancehead.world.degrade import degrade
from balancehead.world.render import render
from balancehead.world.subject import Subject, sample_subject

SEVERITY_BANDS = {"mild": (0.0, 0.25), "moderate": (0.38, 0.6), "severe": (0.72, 1.0)}


@dataclass(frozen=True)
class WildRates:
    """Rates and ranges of the wild-source generator."""

    max_abs_yaw_deg: float = 30.0
    pitch_std_deg: float = 5.0
    mild_rate: float = 0.60
    moderate_rate: float = 0.25  # severe = 1 - mild - moderate
    second_person_rate: float = 0.10
    occluder_rate: float = 0.10
    scale_range: tuple = (0.7, 1.15)  # subject size relative to a canonical crop
    max_offset: float = 0.15  # off-centre shift as a fraction of the image size


def cluttered_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A busy but plausible backdrop: a colour gradient with random rectangles, discs and stripes."""
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    c0, c1 = rng.uniform(30, 230, 3), rng.uniform(30, 230, 3)
    angle = rng.uniform(0, 2 * np.pi)
    g = (np.cos(angle) * xx + np.sin(angle) * yy)
    g = (g - g.min()) / max(np.ptp(g), 1e-6)
    img = c0 * (1 - g[..., None]) + c1 * g[..., None]
    for _ in range(int(rng.integers(4, 12))):
        colour = rng.uniform(0, 255, 3)
        cy, cx = rng.uniform(0, 1, 2)
        ry, rx = rng.uniform(0.04, 0.3, 2)
        if rng.random() < 0.5:
            shape = (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
        else:
            shape = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        img[shape] = img[shape] * 0.3 + colour * 0.7
    if rng.random() < 0.4:
        period = rng.uniform(0.03, 0.12)
        stripes = (np.sin(2 * np.pi * (xx if rng.random() < 0.5 else yy) / period) > 0)[..., None]
        img = np.where(stripes, img * 0.8, img)
    return np.clip(img, 0, 255).astype(np.uint8)


def _place(rgb: np.ndarray, mask: np.ndarray, scale: float, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale about the image centre, then shift by (dx, dy) pixels (a crop that is off-centre/zoomed)."""
    size = rgb.shape[0]
    c = (size - 1) / 2.0
    # PIL affine maps output (x, y) -> input (a x + b y + c, d x + e y + f).
    coeffs = (1 / scale, 0.0, c - (c + dx) / scale, 0.0, 1 / scale, c - (c + dy) / scale)
    im = Image.fromarray(rgb).transform((size, size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR,
                                        fillcolor=(0, 0, 0))
    m = Image.fromarray(mask).transform((size, size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR,
                                        fillcolor=0)
    return np.asarray(im, dtype=np.float64), np.asarray(m, dtype=np.float64)[..., None] / 255.0


def _severity(rng: np.random.Generator, rates: WildRates) -> tuple[str, float]:
    u = rng.random()
    band = "mild" if u < rates.mild_rate else "moderate" if u < rates.mild_rate + rates.moderate_rate else "severe"
    lo, hi = SEVERITY_BANDS[band]
    return band, float(rng.uniform(lo, hi))


def make_wild_source(subject: Subject, seed: int, size: int = 128,
                     rates: WildRates | None = None) -> tuple[np.ndarray, dict]:
    """(rgb uint8 HxWx3, truth dict) for one wild photo of `subject`; deterministic per (subject, seed)."""
    rates = rates if rates is not None else WildRates()
    rng = np.random.default_rng([int(subject.seed) & 0xFFFFFFFF, int(seed) & 0xFFFFFFFF, 0x3117D])
    yaw = float(np.clip(rng.normal(0.0, rates.max_abs_yaw_deg / 2.0), -rates.max_abs_yaw_deg, rates.max_abs_yaw_deg))
    pitch = float(np.clip(rng.normal(0.0, rates.pitch_std_deg), -2.5 * rates.pitch_std_deg, 2.5 * rates.pitch_std_deg))
    scale = float(rng.uniform(*rates.scale_range))
    dx, dy = (float(v) for v in rng.uniform(-rates.max_offset, rates.max_offset, 2) * size)

    img = cluttered_background(size, rng).astype(np.float64)
    second = bool(rng.random() < rates.second_person_rate)
    truth_second = None
    if second:
        other = sample_subject(int(rng.integers(1 << 30)) + (1 << 30))
        side = float(rng.choice([-1.0, 1.0]))
        o = render(other, float(rng.uniform(-40, 40)), 0.0, size=size, background=None)
        o_rgb, o_a = _place(o.rgb, o.mask, scale * 0.8, dx + side * 0.45 * size, dy + 0.05 * size)
        img = img * (1 - o_a) + o_rgb * o_a
        truth_second = {"subject_id": other.subject_id, "side": side}

    main = render(subject, yaw, pitch, size=size, background=None)
    m_rgb, m_a = _place(main.rgb, main.mask, scale, dx, dy)
    img = img * (1 - m_a) + m_rgb * m_a

    occluder = bool(rng.random() < rates.occluder_rate)
    truth_occ = None
    if occluder:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        cy = size / 2 + dy + scale * size * rng.uniform(0.0, 0.3)
        cx = size / 2 + dx + scale * size * rng.uniform(-0.2, 0.2)
        ry, rx = scale * size * rng.uniform(0.08, 0.16), scale * size * rng.uniform(0.05, 0.2)
        colour = rng.uniform(0, 255, 3)
        shape = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1)[..., None]
        img = np.where(shape, colour, img)
        truth_occ = {"center": [float(cx), float(cy)], "radii": [float(rx), float(ry)]}

    img = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    band, severity = _severity(rng, rates)
    img, report = degrade(img, rng, severity)
    truth = {
        "subject_id": subject.subject_id,
        "subject_seed": int(subject.seed),
        "seed": int(seed),
        "size": int(size),
        "yaw": yaw,
        "pitch": pitch,
        "crop_scale": scale,
        "crop_offset": [dx / size, dy / size],  # fraction of the image size, + = right / down
        "severity": severity,
        "severity_class": band,
        "degradations": report,
        "second_person": second,
        "second_person_info": truth_second,
        "occluder": occluder,
        "occluder_info": truth_occ,
        "rates": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(rates).items()},
    }
    return img, truth
