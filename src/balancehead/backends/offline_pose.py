"""Offline head-pose estimation from pixels: nearest neighbours in a bank of procedural renders.

The offline pipeline must estimate the yaw of synthesised views without peeking at their sidecar.
We render a deterministic bank of random subjects (disjoint seeds from those used elsewhere) at known
yaw/pitch on white, describe every image by compact colour-robust features (silhouette, contrast-
normalised luma, gradient orientation), and answer a query with a distance-weighted circular mean of
its k nearest neighbours. The bank is mirrored (flipped image, negated yaw), so left/right are treated
symmetrically. Roll is reported as 0: the procedural world never rolls the head, so there is nothing
to learn it from; a production backend replaces this one for real photos.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from tqdm import tqdm

from balancehead.camera import wrap_yaw
from balancehead.world.render import build_scene, render
from balancehead.world.subject import sample_subject

BANK_SEED_OFFSET = 900_000_000  # bank subjects never collide with dataset subjects (small seeds)


@dataclass(frozen=True)
class PoseBankConfig:
    n_subjects: int = 48
    views_per_subject: int = 48
    max_abs_pitch_deg: float = 20.0
    feature_size: int = 24
    k: int = 7
    seed: int = 0


def _features(rgb: np.ndarray, size: int) -> np.ndarray:
    """Feature vector of one white-background image, robust to skin/hair/clothing colours."""
    im = Image.fromarray(np.ascontiguousarray(rgb[..., :3]))
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BOX)
    x = np.asarray(im, dtype=np.float32) / 255.0
    fg = (x.min(axis=-1) < 0.96).astype(np.float32)
    luma = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    w = fg.sum() + 1e-6
    mu = (luma * fg).sum() / w
    sd = np.sqrt((((luma - mu) * fg) ** 2).sum() / w) + 1e-3
    lz = (luma - mu) / sd * fg
    gy, gx = np.gradient(lz)
    ang2 = 2 * np.arctan2(gy, gx)  # orientation (not direction): doubled angle
    mag = np.hypot(gx, gy)
    blocks = [fg, lz * 0.5, mag * np.cos(ang2), mag * np.sin(ang2)]
    parts = []
    for b in blocks:
        v = b.reshape(-1)
        parts.append(v / (np.linalg.norm(v) + 1e-6))
    return np.concatenate(parts).astype(np.float32)


class OfflinePoseEstimator:
    """Image-based yaw/pitch estimator for white-background head renders (never reads sidecars)."""

    name = "offline-procedural-template"

    def __init__(self, config: PoseBankConfig | None = None, progress: bool = False):
        self.config = config if config is not None else PoseBankConfig()
        self._build(progress)

    def _build(self, progress: bool) -> None:
        c = self.config
        rng = np.random.default_rng([c.seed, 0x905E])
        feats, yaws, pitches = [], [], []
        render_size = 2 * c.feature_size
        for i in tqdm(range(c.n_subjects), desc="pose bank", disable=not progress):
            subject = sample_subject(BANK_SEED_OFFSET + c.seed * 10_000 + i)
            scene = build_scene(subject)
            # Stratified yaw over the full circle with a random phase per subject.
            base = np.linspace(-180.0, 180.0, c.views_per_subject, endpoint=False)
            ys = wrap_yaw(base + rng.uniform(0, 360.0 / c.views_per_subject))
            ps = rng.uniform(-c.max_abs_pitch_deg, c.max_abs_pitch_deg, c.views_per_subject)
            for yaw, pitch in zip(ys, ps):
                img = render(subject, float(yaw), float(pitch), size=render_size, scene=scene).rgb
                for flipped, sign in ((img, 1.0), (img[:, ::-1], -1.0)):
                    feats.append(_features(flipped, c.feature_size))
                    yaws.append(wrap_yaw(sign * yaw))
                    pitches.append(pitch)
        self._feats = np.stack(feats)
        self._sq_norms = (self._feats * self._feats).sum(1)   # per bank row, reused by every query
        self._yaw = np.radians(np.asarray(yaws, dtype=np.float64))
        self._pitch = np.asarray(pitches, dtype=np.float64)

    def estimate(self, rgb: np.ndarray, mask: np.ndarray | None = None) -> dict:
        """Pose of one image. `mask` (optional) whitens everything outside the person first."""
        return self.estimate_batch([rgb], None if mask is None else [mask])[0]

    def estimate_batch(self, images, masks=None) -> list[dict]:
        c = self.config
        q = []
        for i, rgb in enumerate(images):
            rgb = np.asarray(rgb)
            if masks is not None and masks[i] is not None:
                rgb = np.where(np.asarray(masks[i])[..., None] > 127, rgb[..., :3], 255).astype(np.uint8)
            q.append(_features(rgb, c.feature_size))
        q = np.stack(q)
        # Squared euclidean distance via dot products (features of equal block norms).
        d2 = (q * q).sum(1)[:, None] - 2 * q @ self._feats.T + self._sq_norms[None, :]
        nn = np.argpartition(d2, c.k, axis=1)[:, :c.k]
        out = []
        for row, idx in zip(d2, nn):
            dist = np.sqrt(np.maximum(row[idx], 0.0))
            w = 1.0 / (dist + 1e-3)
            s, co = (w * np.sin(self._yaw[idx])).sum(), (w * np.cos(self._yaw[idx])).sum()
            resultant = float(np.hypot(s, co) / w.sum())  # 1 = neighbours agree on the yaw
            out.append({
                "yaw": float(wrap_yaw(np.degrees(np.arctan2(s, co)))),
                "pitch": float((w * self._pitch[idx]).sum() / w.sum()),
                "roll": 0.0,
                "confidence": float(resultant * np.exp(-float(dist.mean()))),
            })
        return out
