"""Camera labels in the EG3D convention, and the one place where yaw/pitch in degrees are converted.

A label is 25 floats: the 4x4 OpenCV cam2world matrix (x right, y down, z forward; row-major)
followed by the 3x3 intrinsics normalised by the image size. World space is y-up, the head faces +z.

We speak of **yaw in degrees, 0 = front (camera on +z), +90 = the subject's left side (camera on +x),
±180 = back**, and **pitch in degrees, positive = camera above the head**. EG3D's LookAtPoseSampler
puts the front at horizontal angle pi/2 and the equator at vertical angle pi/2; `to_eg3d_angles`
converts (this is the only place that does).
"""
from __future__ import annotations

import math

import numpy as np

CAMERA_LABEL_SIZE = 25       # floats in a label: 16 (cam2world) + 9 (intrinsics)
DEFAULT_RADIUS = 2.7
DEFAULT_FOV_DEG = 18.837
DEFAULT_PIVOT = (0.0, 0.0, 0.2)


def focal_from_fov(fov_deg: float) -> float:
    """Normalised focal length used by EG3D: 1 / (tan(fov/2) * 1.414)."""
    return 1.0 / (math.tan(math.radians(fov_deg) / 2.0) * 1.414)


def to_eg3d_angles(yaw_deg, pitch_deg):
    """(yaw, pitch) in our degrees -> EG3D (horizontal, vertical) angles in radians."""
    return math.pi / 2 + np.radians(yaw_deg), math.pi / 2 - np.radians(pitch_deg)


def from_eg3d_angles(horizontal, vertical):
    """EG3D (horizontal, vertical) radians -> (yaw, pitch) in our degrees, yaw wrapped to (-180, 180]."""
    return wrap_yaw(np.degrees(horizontal - math.pi / 2)), np.degrees(math.pi / 2 - vertical)


def wrap_yaw(yaw_deg):
    """Wrap degrees into (-180, 180]."""
    y = np.mod(np.asarray(yaw_deg, dtype=np.float64) + 180.0, 360.0) - 180.0
    y = np.where(y == -180.0, 180.0, y)
    return float(y) if np.ndim(y) == 0 else y


def yaw_distance(a, b):
    """Absolute angular difference in degrees, in [0, 180]."""
    d = np.abs(np.mod(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64) + 180.0, 360.0) - 180.0)
    return float(d) if np.ndim(d) == 0 else d


def camera_origin(yaw_deg: float, pitch_deg: float, radius: float = DEFAULT_RADIUS, pivot=DEFAULT_PIVOT) -> np.ndarray:
    """Camera centre in world space, on a sphere of `radius` around `pivot`."""
    h, v = to_eg3d_angles(yaw_deg, pitch_deg)
    v = float(np.clip(v, 1e-5, math.pi - 1e-5))
    phi = math.acos(1 - 2 * v / math.pi)
    origin = np.array([
        radius * math.sin(phi) * math.cos(math.pi - h),
        radius * math.cos(phi),
        radius * math.sin(phi) * math.sin(math.pi - h),
    ])
    return origin + np.asarray(pivot, dtype=np.float64)


def look_at(origin: np.ndarray, target) -> np.ndarray:
    """4x4 OpenCV cam2world looking from `origin` at `target` with world up +y."""
    forward = np.asarray(target, dtype=np.float64) - origin
    forward /= np.linalg.norm(forward)
    up = np.array([0.0, 1.0, 0.0])
    right = -np.cross(up, forward)
    right /= np.linalg.norm(right)
    up = np.cross(forward, right)
    up /= np.linalg.norm(up)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, forward, origin
    return m


def intrinsics(fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    f = focal_from_fov(fov_deg)
    return np.array([[f, 0.0, 0.5], [0.0, f, 0.5], [0.0, 0.0, 1.0]])


def camera_label(yaw_deg: float, pitch_deg: float = 0.0, radius: float = DEFAULT_RADIUS,
                 fov_deg: float = DEFAULT_FOV_DEG, pivot=DEFAULT_PIVOT) -> np.ndarray:
    """The 25-float EG3D label (float32) for a camera at (yaw, pitch) looking at `pivot`."""
    origin = camera_origin(yaw_deg, pitch_deg, radius, pivot)
    c2w = look_at(origin, pivot)
    return np.concatenate([c2w.reshape(-1), intrinsics(fov_deg).reshape(-1)]).astype(np.float32)


def label_to_yaw_pitch(label, pivot=DEFAULT_PIVOT) -> tuple[float, float]:
    """Recover (yaw, pitch) in degrees from a 25-float label (camera position relative to `pivot`)."""
    c2w = np.asarray(label, dtype=np.float64)[:16].reshape(4, 4)
    d = c2w[:3, 3] - np.asarray(pivot, dtype=np.float64)
    yaw = math.degrees(math.atan2(d[0], d[2]))
    pitch = math.degrees(math.atan2(d[1], math.hypot(d[0], d[2])))
    return wrap_yaw(yaw), pitch


def label_to_fov(label) -> float:
    f = float(np.asarray(label)[16])
    return math.degrees(2 * math.atan(1.0 / (f * 1.414)))
