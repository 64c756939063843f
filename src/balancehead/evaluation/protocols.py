"""Camera sampling protocols of PanoLAM appendix E, in our yaw convention (0 = front, ±180 = back).

- `front`: EG3D-style window; yaw ~ U(-36°, 36°), pitch ~ U(-26°, 26°), 32 views per identity.
- `360`: 8 views evenly spaced on the equator (random phase per identity, so the set of yaws covers
  the circle across identities) + 24 views at random angles (yaw ~ U(-180°, 180°), pitch ~ U(±26°)).
Both: radius ~ N(2.7, 0.1), FOV ~ N(18.83°, 1°) per view (PanoLAM's "focal length 18.83" is the FOV
in degrees, see DESIGN.md §3). Pitch is true elevation (balancehead.camera): PanoLAM's "pitch range of
±26°" is read as ±26° of elevation, as the paper states it, not as an offset of EG3D's sampler angle v.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from balancehead.camera import DEFAULT_PIVOT, camera_label, wrap_yaw


@dataclass(frozen=True)
class ViewSpec:
    """The views of one identity: arrays of equal length."""
    yaw: np.ndarray
    pitch: np.ndarray
    radius: np.ndarray
    fov_deg: np.ndarray
    kind: tuple[str, ...]          # "front" / "equator" / "random", per view

    def __len__(self) -> int:
        return len(self.yaw)

    def labels(self, pivot=DEFAULT_PIVOT) -> np.ndarray:
        """(N, 25) float32 EG3D camera labels."""
        return np.stack([camera_label(float(y), float(p), float(r), float(f), pivot)
                         for y, p, r, f in zip(self.yaw, self.pitch, self.radius, self.fov_deg)])


def _intrinsics_draws(rng: np.random.Generator, n: int, p) -> tuple[np.ndarray, np.ndarray]:
    radius = rng.normal(p.radius_mean, p.radius_std, n)
    fov = rng.normal(p.fov_mean_deg, p.fov_std_deg, n)
    # A draw far in the tail (radius <= 0, FOV <= 0) is not a camera; clip to a sane floor.
    return np.maximum(radius, 0.1 * p.radius_mean), np.clip(fov, 1.0, 120.0)


def sample_views(rng: np.random.Generator, p) -> ViewSpec:
    """One identity's cameras under protocol `p.protocol` (p: SamplePriorParams or any object with
    the same fields)."""
    if p.protocol == "front":
        n = p.views_per_identity
        yaw = rng.uniform(-p.front_max_abs_yaw_deg, p.front_max_abs_yaw_deg, n)
        pitch = rng.uniform(-p.front_max_abs_pitch_deg, p.front_max_abs_pitch_deg, n)
        kind = ("front",) * n
    elif p.protocol == "360":
        phase = rng.uniform(0.0, 360.0 / max(p.equator_views, 1))
        eq_yaw = wrap_yaw(np.arange(p.equator_views) * 360.0 / max(p.equator_views, 1) + phase)
        rnd_yaw = rng.uniform(-180.0, 180.0, p.random_views)
        rnd_pitch = rng.uniform(-p.random_max_abs_pitch_deg, p.random_max_abs_pitch_deg, p.random_views)
        yaw = np.concatenate([np.atleast_1d(eq_yaw), rnd_yaw])
        pitch = np.concatenate([np.zeros(p.equator_views), rnd_pitch])
        kind = ("equator",) * p.equator_views + ("random",) * p.random_views
    else:
        raise ValueError(f"unknown protocol {p.protocol!r}; expected 'front' or '360'")
    radius, fov = _intrinsics_draws(rng, len(yaw), p)
    return ViewSpec(np.asarray(yaw, dtype=np.float64), np.asarray(pitch, dtype=np.float64), radius, fov, kind)


def turntable_yaws(frames: int) -> np.ndarray:
    """`frames` yaws evenly around the head starting at the front (0, 360/frames, ...), wrapped."""
    return wrap_yaw(np.arange(frames) * 360.0 / frames)
