"""The offline image synthesiser: stands in for FLUX.1 Kontext by re-rendering the procedural subject.

It is asked for "this person, seen from yaw X" and, like the real model (BalanceHead §3), it sometimes
misses: the yaw is off by a few degrees (always) or by tens of degrees (gross error), occasionally the
view is a different one altogether (front/back/opposite side), the image shows artifacts, or the
identity drifts (hair, glasses, skin, clothes change). Each failure is drawn at a configured rate and
recorded in `truth`, the ground-truth sidecar that only evaluation and tests read — the filtering stages
must find the failures from pixels.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from balancehead.camera import wrap_yaw, yaw_distance
from balancehead.world.render import render
from balancehead.world.subject import Subject, perturb_identity

ARTIFACT_KINDS = ("smear", "duplicate", "blotch", "distort")


@dataclass(frozen=True)
class SynthRates:
    """Failure-mode rates of the offline synthesiser (probabilities per generated image)."""

    yaw_error_std_deg: float = 12.0  # ordinary yaw error, N(0, std)
    gross_yaw_error_rate: float = 0.10  # yaw off by 30-75 degrees
    wrong_view_rate: float = 0.05  # a different canonical view (front/back/opposite side)
    artifact_rate: float = 0.08
    identity_drift_rate: float = 0.08
    pitch_std_deg: float = 4.0


@dataclass
class SynthResult:
    rgb: np.ndarray  # HxWx3 uint8 on pure white
    truth: dict = field(default_factory=dict)  # JSON-able sidecar (evaluation only)


def _seed_words(subject: Subject, seed: int, target_yaw: float, tag: int) -> list[int]:
    # Yaw in millidegrees shifted positive: distinct targets give independent streams.
    return [int(subject.seed) & 0xFFFFFFFF, int(seed) & 0xFFFFFFFF,
            int(round((wrap_yaw(target_yaw) + 360.0) * 1000)), tag]


class ProceduralSynthesizer:
    """Deterministic for (subject, target yaw, seed); white background; head centred by the camera."""

    name = "offline-procedural"

    def __init__(self, rates: SynthRates | None = None, size: int = 128):
        self.rates = rates if rates is not None else SynthRates()
        self.size = int(size)

    def front(self, subject: Subject, seed: int) -> SynthResult:
        """A front-view candidate (target yaw 0) for front selection."""
        return self.view(subject, 0.0, seed)

    def view(self, subject: Subject, target_yaw_deg: float, seed: int) -> SynthResult:
        r = self.rates
        rng = np.random.default_rng(_seed_words(subject, seed, target_yaw_deg, 0x5E17))
        target = wrap_yaw(float(target_yaw_deg))
        u = rng.random()
        wrong_view = bool(u < r.wrong_view_rate)
        gross = bool(r.wrong_view_rate <= u < r.wrong_view_rate + r.gross_yaw_error_rate)
        if wrong_view:
            options = [v for v in (0.0, 180.0, -target, target + 180.0, 90.0, -90.0)
                       if yaw_distance(v, target) >= 60.0]
            true_yaw = wrap_yaw(options[int(rng.integers(len(options)))] + rng.normal(0, 5.0))
        elif gross:
            true_yaw = wrap_yaw(target + rng.choice([-1.0, 1.0]) * rng.uniform(30.0, 75.0))
        else:
            true_yaw = wrap_yaw(target + rng.normal(0.0, r.yaw_error_std_deg))
        true_pitch = float(np.clip(rng.normal(0.0, r.pitch_std_deg), -25.0, 25.0))

        drift = bool(rng.random() < r.identity_drift_rate)
        shown = perturb_identity(subject, rng) if drift else subject
        drift_changes = sorted(k for k, v in shown.to_dict().items() if subject.to_dict()[k] != v)

        res = render(shown, true_yaw, true_pitch, size=self.size)
        rgb = res.rgb
        artifact = bool(rng.random() < r.artifact_rate)
        kind = None
        if artifact:
            kind = ARTIFACT_KINDS[int(rng.integers(len(ARTIFACT_KINDS)))]
            rgb = apply_artifact(rgb, res.mask, kind, rng)
        truth = {
            "backend": self.name,
            "subject_id": subject.subject_id,
            "seed": int(seed),
            "requested_yaw": float(target),
            "true_yaw": float(true_yaw),
            "true_pitch": true_pitch,
            "yaw_error": float(yaw_distance(true_yaw, target)),
            "wrong_view": wrong_view,
            "gross_yaw_error": gross,
            "artifact": artifact,
            "artifact_kind": kind,
            "identity_drift": drift,
            "drift_changes": drift_changes,
            "rates": asdict(r),
        }
        if drift:       # what the image shows (the offline CLIP stand-in embeds it: backends.attribute_clip)
            truth["shown_subject"] = shown.to_dict()
        return SynthResult(rgb=rgb, truth=truth)


def apply_artifact(rgb: np.ndarray, mask: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Visible generation artifacts confined to the subject; the background stays pure white."""
    h, w = mask.shape
    fg = mask > 0
    ys, xs = np.nonzero(fg)
    out = rgb.astype(np.float64)
    if kind == "smear":
        # A band of the head smeared sideways, as when a diffusion model loses structure.
        y0 = int(rng.integers(h // 5, h // 2))
        band = slice(y0, y0 + max(4, h // 5))
        k = max(3, w // 10)
        kernel = np.ones(k) / k
        for c in range(3):
            out[band, :, c] = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, out[band, :, c])
    elif kind == "duplicate":
        # A patch of the face region pasted again elsewhere on the head (duplicated eyes/mouth).
        ph = max(6, h // 6)
        cy, cx = int(np.median(ys)), int(np.median(xs))
        sy, sx = int(np.clip(cy - ph, 0, h - ph)), int(np.clip(cx - ph // 2, 0, w - ph))
        dy = int(np.clip(sy + rng.integers(-ph, ph + 1) + (ph if rng.random() < 0.5 else -ph), 0, h - ph))
        dx = int(np.clip(sx + rng.integers(-ph, ph + 1), 0, w - ph))
        out[dy:dy + ph, dx:dx + ph] = out[sy:sy + ph, sx:sx + ph]
    elif kind == "blotch":
        yy, xx = np.mgrid[0:h, 0:w]
        for _ in range(int(rng.integers(2, 5))):
            j = int(rng.integers(len(ys)))
            rad = rng.uniform(0.05, 0.12) * h
            colour = rng.uniform(0, 255, 3)
            blob = np.exp(-((yy - ys[j]) ** 2 + (xx - xs[j]) ** 2) / (2 * rad ** 2))[..., None] * 0.85
            out = out * (1 - blob) + colour * blob
    elif kind == "distort":
        # Wrong proportions: the upper or lower half of the subject stretched vertically.
        sy = rng.uniform(1.25, 1.5)
        img = Image.fromarray(rgb).resize((w, int(round(h * sy))), Image.Resampling.BILINEAR)
        m = Image.fromarray(mask).resize((w, int(round(h * sy))), Image.Resampling.BILINEAR)
        top = int(rng.integers(0, img.height - h + 1))
        out = np.asarray(img, dtype=np.float64)[top:top + h]
        fg = np.asarray(m)[top:top + h] > 127
    else:
        raise ValueError(f"unknown artifact kind {kind!r}; expected one of {ARTIFACT_KINDS}")
    out[~fg] = 255.0
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
