"""Camera labels in the EG3D convention, and the one place where yaw/pitch in degrees are converted.

A label is 25 floats: the 4x4 OpenCV cam2world matrix (x right, y down, z forward; row-major)
followed by the 3x3 intrinsics normalised by the image size. World space is y-up, the head faces +z.

Every angle in params, manifests and reports means the same thing:

* **yaw** in degrees: 0 = front (camera on +z), +90 = the subject's left side (camera on +x), ±180 = back;
* **pitch** in degrees: the camera's **true elevation** above the horizontal plane through the world
  origin (positive = camera above the head), i.e. the angle papers and users mean.

As in EG3D's `LookAtPoseSampler`, the camera sits on a sphere of `radius` around the **world origin**
and looks at `pivot` (EG3D's `lookat_position`, default (0, 0, 0.2)); the pivot moves only where the
camera looks, never where it is. `LookAtPoseSampler.sample(h, v, ...)` does not take the polar angle
directly: it places the camera at polar angle `arccos(1 - 2 v / pi)`. `to_eg3d_angles` /
`from_eg3d_angles` convert between our (yaw, elevation) and EG3D's (h, v) exactly, so code that
talks to EG3D-style samplers (or reads their "pitch" offsets) converts there and nowhere else.
"""
from __future__ import annotations

import math

import numpy as np

CAMERA_LABEL_SIZE = 25       # floats in a label: 16 (cam2world) + 9 (intrinsics)
DEFAULT_RADIUS = 2.7
DEFAULT_FOV_DEG = 18.837
DEFAULT_PIVOT = (0.0, 0.0, 0.2)
# EG3D's FOV_to_intrinsics converts degrees with this truncated pi; we reproduce it bit for bit.
_EG3D_PI = 3.14159


def focal_from_fov(fov_deg: float) -> float:
    """Normalised focal length as EG3D's FOV_to_intrinsics computes it: 1 / (tan(fov/2) * 1.414)."""
    return 1.0 / (math.tan(fov_deg * _EG3D_PI / 360.0) * 1.414)


def to_eg3d_angles(yaw_deg, pitch_deg):
    """(yaw, elevation) in our degrees -> the (horizontal_mean, vertical_mean) radians that EG3D's
    LookAtPoseSampler needs to put the camera there: h = pi/2 + yaw, v = pi/2 (1 - sin elevation)."""
    yaw, elevation = np.radians(yaw_deg), np.radians(pitch_deg)
    return math.pi / 2 + yaw, math.pi / 2 * (1.0 - np.sin(elevation))


def from_eg3d_angles(horizontal, vertical):
    """EG3D (horizontal_mean, vertical_mean) radians -> (yaw, elevation) in our degrees, yaw in (-180, 180].

    Inverse of `to_eg3d_angles`: the camera's polar angle is arccos(1 - 2v/pi), so sin(elevation) = 1 - 2v/pi."""
    sin_elevation = np.clip(1.0 - 2.0 * np.asarray(vertical, dtype=np.float64) / math.pi, -1.0, 1.0)
    return wrap_yaw(np.degrees(np.asarray(horizontal, dtype=np.float64) - math.pi / 2)), _scalar(np.degrees(np.arcsin(sin_elevation)))


def _scalar(a):
    return float(a) if np.ndim(a) == 0 else a


def wrap_yaw(yaw_deg):
    """Wrap degrees into (-180, 180]."""
    y = np.mod(np.asarray(yaw_deg, dtype=np.float64) + 180.0, 360.0) - 180.0
    y = np.where(y == -180.0, 180.0, y)
    return _scalar(y)


def yaw_distance(a, b):
    """Absolute angular difference in degrees, in [0, 180]."""
    d = np.abs(np.mod(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64) + 180.0, 360.0) - 180.0)
    return _scalar(d)


def camera_origin(yaw_deg: float, pitch_deg: float, radius: float = DEFAULT_RADIUS) -> np.ndarray:
    """Camera centre in world space: on a sphere of `radius` around the world origin (as EG3D), at
    azimuth `yaw_deg` and elevation `pitch_deg`. Elevation is clamped where EG3D clamps its polar angle."""
    elevation = float(np.clip(math.radians(pitch_deg), -math.pi / 2 + 1e-5, math.pi / 2 - 1e-5))
    yaw = math.radians(yaw_deg)
    return radius * np.array([math.cos(elevation) * math.sin(yaw), math.sin(elevation),
                              math.cos(elevation) * math.cos(yaw)])


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
    """The 25-float EG3D label (float32) of a camera at (yaw, elevation) on the `radius` sphere around the
    world origin, looking at `pivot` -- what LookAtPoseSampler + FOV_to_intrinsics give for
    `to_eg3d_angles(yaw, pitch)`."""
    origin = camera_origin(yaw_deg, pitch_deg, radius)
    c2w = look_at(origin, pivot)
    return np.concatenate([c2w.reshape(-1), intrinsics(fov_deg).reshape(-1)]).astype(np.float32)


def label_to_yaw_pitch(label) -> tuple[float, float]:
    """Recover (yaw, elevation) in degrees from a 25-float label: the camera centre's direction from the
    world origin (the pivot does not move the camera, so it is not needed). Inverse of `camera_label`."""
    centre = np.asarray(label, dtype=np.float64)[:16].reshape(4, 4)[:3, 3]
    yaw = math.degrees(math.atan2(centre[0], centre[2]))
    pitch = math.degrees(math.atan2(centre[1], math.hypot(centre[0], centre[2])))
    return wrap_yaw(yaw), pitch


def label_to_radius(label) -> float:
    """Distance of the camera centre from the world origin."""
    return float(np.linalg.norm(np.asarray(label, dtype=np.float64)[:16].reshape(4, 4)[:3, 3]))


def label_to_fov(label) -> float:
    """Inverse of `focal_from_fov` (EG3D's truncated pi included)."""
    f = float(np.asarray(label)[16])
    return math.degrees(2 * math.atan(1.0 / (f * 1.414))) * math.pi / _EG3D_PI
