"""Analytic ray casting of a procedural head: one 3D scene of ellipsoids seen through the EG3D camera.

Why ellipsoids: a ray/ellipsoid hit is a closed-form quadratic, so a whole image is a handful of
vectorised numpy operations per primitive; a 128x128 render takes milliseconds on one CPU core, and
every view of a subject is the same 3D object, so yaw, pitch, depth and mask are exact ground truth.

The scene lives in world space (y up, the head faces +z, the subject's left is +x). Primitives may be
clipped by half-spaces (a hairline, the face opening of a bob) and may have a hole (spectacle rims);
when the near hit of a ray is clipped, the far hit is tried, so clipped shells show their inside.
The light follows the camera (a studio setup), so every view is lit alike and left/right stay mirrors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from balancehead.camera import DEFAULT_FOV_DEG, DEFAULT_PIVOT, DEFAULT_RADIUS, camera_label
from balancehead.world.subject import Subject

# The head's anchor in world space; equal to the default look-at pivot so that the head stays centred
# in every view of a 360-degree turntable.
ANCHOR = np.array(DEFAULT_PIVOT, dtype=np.float64)
# Scene coordinates are authored for a head ~0.55 tall; SCALE and SHIFT place it in the EG3D frame so
# that a yaw-0 render at radius 2.7 / FOV 18.837 looks like an FFHQ-style crop (hair to shoulders).
SCALE = 0.86
SHIFT = np.array([0.0, -0.015, 0.0])

MATERIALS = ("skin", "hair", "eye", "lips", "brow", "cloth", "rim", "metal", "hat", "afro", "braid")
_MAT = {m: i for i, m in enumerate(MATERIALS)}


@dataclass
class Prim:
    """An ellipsoid primitive. `clip` is a list of groups of half-spaces (normal, offset) in world space
    relative to ANCHOR; a point is kept if for ANY group ALL of n.p <= offset hold. `hole` removes the
    hits whose unit-space (x, y) radius is below it (rings)."""

    center: np.ndarray
    radii: np.ndarray
    material: str
    colour: tuple
    rot: np.ndarray = field(default_factory=lambda: np.eye(3))
    clip: list = field(default_factory=list)
    hole: float = 0.0


@dataclass
class RenderResult:
    rgb: np.ndarray  # HxWx3 uint8
    mask: np.ndarray  # HxW uint8, 255 = foreground
    depth: np.ndarray  # HxW float32 camera-space z, inf on background
    camera: np.ndarray  # 25 float32 EG3D label


def _rgb(c) -> np.ndarray:
    return np.asarray(c, dtype=np.float64) / 255.0


def _segment(p0, p1, thickness: float, material: str, colour, extra: float = 0.0) -> Prim:
    """An ellipsoid whose long axis joins p0 and p1 (braids, temples of glasses, ponytails)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    z = axis / length
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    rot = np.stack([x, y, z], axis=1)
    return Prim((p0 + p1) / 2, np.array([thickness, thickness, length / 2 + extra]), material, colour, rot)


def _keep_above(y0: float, slope: float) -> list:
    """Half-space group 'y >= y0 + slope * z' (a hairline that is high at the front, low at the back)."""
    return [(np.array([0.0, -1.0, slope]), -y0)]


def build_scene(s: Subject) -> list[Prim]:
    """The subject's primitives, coordinates relative to ANCHOR (metres-ish; the head is ~0.5 tall)."""
    skin = _rgb(s.skin_rgb)
    hair = _rgb(s.hair_rgb)
    hw, hh, hd = s.head_width, s.head_height, s.head_depth
    P = lambda *v: np.array(v, dtype=np.float64)  # noqa: E731
    prims: list[Prim] = []

    skull_c, skull_r = P(0, 0.07, -0.01), P(0.165 * hw, 0.2 * hh, 0.2 * hd)
    prims.append(Prim(skull_c, skull_r, "skin", skin))
    prims.append(Prim(P(0, -0.04, 0.045), P(0.135 * s.jaw_width, 0.165 * s.chin_length, 0.155), "skin", skin))
    for sx in (-1, 1):
        prims.append(Prim(P(sx * 0.068, -0.025, 0.09), P(0.065, 0.06, 0.085), "skin", skin))
    # Nose: a vertical ellipsoid tilted so the tip sticks out below the eyes.
    tilt = math.radians(25)
    rot_x = np.array([[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]])
    prims.append(Prim(P(0, -0.01, 0.19), P(0.021 * s.nose_width, 0.052 * s.nose_length, 0.034), "skin",
                      skin * 0.97, rot_x))
    # Eyes: eyeballs partly sunk into the face; the iris is a texture around their +z pole.
    for sx in (-1, 1):
        prims.append(Prim(P(sx * 0.056 * s.eye_spacing, 0.035, 0.163), P(0.025, 0.025, 0.025) * s.eye_size,
                          "eye", _rgb(s.iris_rgb)))
        prims.append(Prim(P(sx * 0.058 * s.eye_spacing, 0.078, 0.176),
                          P(0.034, 0.008 * s.brow_thickness, 0.014), "brow", hair * 0.7))
    lips = skin * (1 - 0.35 * s.lip_redness) + np.array([0.75, 0.2, 0.25]) * 0.35 * s.lip_redness
    prims.append(Prim(P(0, -0.095, 0.18), P(0.042 * s.mouth_width, 0.014, 0.022), "lips", lips))
    for sx in (-1, 1):
        ear_rot = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1.0]])
        prims.append(Prim(P(sx * 0.158 * hw, 0.025, 0.0), P(0.022, 0.052 * s.ear_size, 0.034 * s.ear_size),
                          "skin", skin * 0.95, ear_rot))
    # Neck and torso (clothing).
    prims.append(Prim(P(0, -0.24, -0.02), P(0.072, 0.2, 0.078), "skin", skin * 0.9))
    cloth = _rgb(s.clothing_colour)
    prims.append(Prim(P(0, -0.47, -0.03), P(0.37, 0.21, 0.17), "cloth", cloth))

    prims.extend(_hair(s, skull_c, skull_r, hair))
    if s.hat:
        hat = _rgb(s.hat_colour)
        prims.append(Prim(skull_c + P(0, 0.035, 0), skull_r * P(1.12, 1.0, 1.12), "hat", hat,
                          clip=[[(P(0, -1, 0), -0.12)]]))
        prims.append(Prim(P(0, 0.12, 0.0), P(0.27, 0.012, 0.28), "hat", hat * 0.85))
    if s.glasses:
        g = _rgb(s.glasses_colour)
        for sx in (-1, 1):
            ex = sx * 0.056 * s.eye_spacing
            prims.append(Prim(P(ex, 0.035, 0.205), P(0.036, 0.029, 0.005), "rim", g, hole=0.8))
            prims.append(_segment(P(sx * 0.092, 0.042, 0.203), P(sx * 0.162 * hw, 0.045, 0.0), 0.0045, "rim", g))
        prims.append(Prim(P(0, 0.045, 0.205), P(0.022, 0.004, 0.004), "rim", g))
    if s.earrings:
        m = _rgb(s.earring_colour)
        for sx in (-1, 1):
            prims.append(Prim(P(sx * 0.165 * hw, -0.04, 0.0), P(0.011, 0.011, 0.011), "metal", m))
    for p in prims:
        p.center = ANCHOR + SHIFT + SCALE * p.center
        p.radii = SCALE * p.radii
    return prims


def _scene_coords(pts: np.ndarray) -> np.ndarray:
    """World points -> the authoring coordinates of build_scene (where clip planes and textures live)."""
    return (pts - ANCHOR - SHIFT) / SCALE


def _hair(s: Subject, skull_c, skull_r, hair) -> list[Prim]:
    P = lambda *v: np.array(v, dtype=np.float64)  # noqa: E731
    v = s.hair_volume
    style = s.hair_style
    if style == "bald":
        return []
    cap_line = _keep_above(0.045, 0.5)
    cap = Prim(skull_c + P(0, 0.008, -0.004), skull_r * P(1.06, 1.05, 1.07) * (0.98 + 0.04 * v), "hair", hair,
               clip=[cap_line])
    out = [cap]
    face_open = P(0, 0, 1)  # normal of the 'behind the face' half-space
    # Hair volumes are kept behind the face plane, beside the face (|x| > 0.14) or above the hairline.
    beside = [[(P(1, 0, 0), -0.14)], [(P(-1, 0, 0), -0.14)]]
    if style == "bob":
        out.append(Prim(P(0, 0.02, -0.015), P(0.2, 0.26, 0.225) * v, "hair", hair,
                        clip=[[(face_open, 0.06), (P(0, -1, 0), 0.17)], cap_line]
                        + [g + [(P(0, -1, 0), 0.17)] for g in beside]))
    elif style == "long":
        out.append(Prim(P(0, -0.06, -0.03), P(0.205, 0.35, 0.225) * P(v, 1, v), "hair", hair,
                        clip=[[(face_open, 0.05), (P(0, -1, 0), 0.37)], cap_line]
                        + [g + [(P(0, -1, 0), 0.37)] for g in beside]))
    elif style == "afro":
        out = [Prim(P(0, 0.12, -0.03), P(0.25, 0.24, 0.26) * v, "afro", hair,
                    clip=[[(face_open, 0.07)], _keep_above(0.045, 0.5)] + beside)]
    elif style == "ponytail":
        out.append(_segment(P(0, 0.08, -0.2), P(0, -0.2, -0.29), 0.05 * v, "hair", hair))
        out.append(Prim(P(0, 0.08, -0.205), P(0.03, 0.03, 0.02), "hat", hair * 0.5))
    elif style == "braids":
        for sx in (-1, 1):
            pts = np.linspace(P(sx * 0.125, 0.0, -0.1), P(sx * 0.135, -0.36, -0.07), 7)
            for a, b in zip(pts[:-1], pts[1:]):
                out.append(_segment(a, b, 0.028 * v, "braid", hair, extra=0.006))
    return out


def camera_rays(label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World-space ray origin (3,), unit directions (size, size, 3) and per-pixel z-to-distance factor,
    built from the cam2world + normalised intrinsics exactly as EG3D's ray sampler does (pixel centres)."""
    label = np.asarray(label, dtype=np.float64)
    c2w = label[:16].reshape(4, 4)
    K = label[16:25].reshape(3, 3)
    uv = (np.arange(size, dtype=np.float64) + 0.5) / size
    u, v = np.meshgrid(uv, uv, indexing="xy")
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    cam = np.stack([x, y, np.ones_like(x)], axis=-1)
    norm = np.linalg.norm(cam, axis=-1)
    dirs = cam @ c2w[:3, :3].T / norm[..., None]
    return c2w[:3, 3].copy(), dirs, 1.0 / norm  # depth z = t * (1 / norm)


def _clip_ok(pts: np.ndarray, clip: list) -> np.ndarray:
    """Points (..., 3) world space -> bool keep mask."""
    rel = _scene_coords(pts)
    keep = np.zeros(pts.shape[:-1], dtype=bool)
    for group in clip:
        ok = np.ones(pts.shape[:-1], dtype=bool)
        for n, off in group:
            ok &= rel @ n <= off
        keep |= ok
    return keep


def _screen_box(prim: Prim, origin, c2w, K, size) -> tuple[int, int, int, int] | None:
    """Conservative pixel box of the primitive's bounding sphere (None if behind the camera)."""
    r = float(prim.radii.max())
    rel = (prim.center - origin) @ c2w[:3, :3]
    if rel[2] <= r * 1.01:
        return 0, size, 0, size
    x, y, z = (float(v) for v in rel)
    den = z * z - r * r

    def bounds(a: float, f: float, c: float) -> tuple[float, float]:
        # Tangent planes of the sphere through the camera centre, along one image axis.
        s = r * math.sqrt(max(a * a + z * z - r * r, 0.0))
        return (f * (a * z - s) / den + c) * size, (f * (a * z + s) / den + c) * size

    ux0, ux1 = bounds(x, K[0, 0], K[0, 2])
    vy0, vy1 = bounds(y, K[1, 1], K[1, 2])
    x0, x1 = int(max(0, math.floor(ux0) - 1)), int(min(size, math.ceil(ux1) + 1))
    y0, y1 = int(max(0, math.floor(vy0) - 1)), int(min(size, math.ceil(vy1) + 1))
    if x0 >= x1 or y0 >= y1:
        return None
    return y0, y1, x0, x1


def render(subject: Subject, yaw_deg: float, pitch_deg: float = 0.0, size: int = 128,
           radius: float = DEFAULT_RADIUS, fov_deg: float = DEFAULT_FOV_DEG, pivot=DEFAULT_PIVOT,
           background=(255, 255, 255), scene: list[Prim] | None = None) -> RenderResult:
    """Render `subject` seen from (yaw, elevation) on a sphere of `radius` around the world origin, looking at `pivot`.

    `background=None` leaves background pixels black; use `mask` as alpha. `scene` lets callers that
    render many views of one subject build the primitives once.
    """
    label = camera_label(yaw_deg, pitch_deg, radius=radius, fov_deg=fov_deg, pivot=pivot)
    return render_label(subject, label, size=size, background=background, scene=scene)


def render_label(subject: Subject, label, size: int = 128, background=(255, 255, 255),
                 scene: list[Prim] | None = None) -> RenderResult:
    """Render from an arbitrary 25-float EG3D camera label."""
    prims = build_scene(subject) if scene is None else scene
    label = np.asarray(label, dtype=np.float32)
    lab64 = label.astype(np.float64)
    c2w, K = lab64[:16].reshape(4, 4), lab64[16:25].reshape(3, 3)
    origin, dirs, z_factor = camera_rays(lab64, size)

    t_best = np.full((size, size), np.inf)
    idx = np.full((size, size), -1, dtype=np.int16)
    for i, p in enumerate(prims):
        box = _screen_box(p, origin, c2w, K, size)
        if box is None:
            continue
        y0, y1, x0, x1 = box
        d = dirs[y0:y1, x0:x1]
        # Unit-sphere space: o' = R^T (o - c) / r, d' = R^T d / r.
        M = p.rot / p.radii[None, :]
        o_u = (origin - p.center) @ M
        d_u = d @ M
        a = np.einsum("...k,...k->...", d_u, d_u)
        b = d_u @ o_u
        c = float(o_u @ o_u) - 1.0
        disc = b * b - a * c
        hit = disc > 0
        if not hit.any():
            continue
        sq = np.sqrt(np.where(hit, disc, 0.0))
        t0 = np.where(hit, (-b - sq) / a, np.inf)
        if p.clip or p.hole:
            t1 = np.where(hit, (-b + sq) / a, np.inf)
            ok0 = hit & self_ok(p, origin, d, t0, o_u, d_u)
            ok1 = hit & self_ok(p, origin, d, t1, o_u, d_u)
            t0 = np.where(ok0, t0, np.where(ok1, t1, np.inf))
        t0 = np.where(t0 > 1e-6, t0, np.inf)
        tb = t_best[y0:y1, x0:x1]
        closer = t0 < tb
        tb[closer] = t0[closer]
        idx[y0:y1, x0:x1][closer] = i

    fg = idx >= 0
    light = -c2w[:3, 2] * 0.8 - c2w[:3, 1] * 0.55  # from the camera, above it (camera y points down)
    light /= np.linalg.norm(light)
    rgb = np.zeros((size, size, 3))
    rgb[:] = np.asarray(background if background is not None else (0, 0, 0), dtype=np.float64) / 255.0
    for i in np.unique(idx[fg]):
        sel = idx == i
        p = prims[i]
        t = t_best[sel]
        d = dirs[sel]
        pts = origin + t[:, None] * d
        local = (pts - p.center) @ (p.rot / p.radii[None, :])  # unit-sphere coordinates
        normal = (local / p.radii[None, :]) @ p.rot.T
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        facing = np.einsum("ij,ij->i", normal, d) > 0
        normal[facing] *= -1
        albedo = _albedo(p, _scene_coords(pts), local)
        lam = np.clip(normal @ light, 0.0, 1.0)
        col = albedo * (0.38 + 0.7 * lam[:, None])
        if p.material in ("eye", "metal", "rim"):
            half = light - d
            half /= np.linalg.norm(half, axis=1, keepdims=True)
            col += 0.5 * np.clip(np.einsum("ij,ij->i", normal, half), 0, 1)[:, None] ** 40
        rgb[sel] = col
    depth = np.where(fg, t_best * z_factor, np.inf).astype(np.float32)
    out = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return RenderResult(out, np.where(fg, 255, 0).astype(np.uint8), depth, label)


def self_ok(p: Prim, origin, d, t, o_u, d_u) -> np.ndarray:
    """Clip and hole tests for hits at parameter t (inf where no hit)."""
    tt = np.where(np.isfinite(t), t, 0.0)
    ok = np.ones(t.shape, dtype=bool)
    if p.clip:
        ok &= _clip_ok(origin + tt[..., None] * d, p.clip)
    if p.hole:
        loc = o_u + tt[..., None] * d_u
        ok &= loc[..., 0] ** 2 + loc[..., 1] ** 2 >= p.hole ** 2
    return ok


def _albedo(p: Prim, rel: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Per-hit base colour: procedural textures (hair strands, iris, braids) on the material colour."""
    base = np.asarray(p.colour, dtype=np.float64)[None, :].repeat(len(rel), axis=0)
    m = p.material
    if m == "hair":
        az = np.arctan2(np.abs(rel[:, 0]), rel[:, 2])  # |x|: textures are left/right mirror symmetric
        strands = 0.5 + 0.5 * np.sin(70.0 * az + 9.0 * np.sin(23.0 * rel[:, 1]) + 40.0 * rel[:, 1] * np.abs(rel[:, 0]))
        return base * (0.72 + 0.4 * strands[:, None]) + 0.04
    if m == "afro":
        curls = np.cos(95 * rel[:, 0]) * np.sin(95 * rel[:, 1]) * np.sin(95 * rel[:, 2])
        return base * (0.8 + 0.35 * curls[:, None]) + 0.03
    if m == "braid":
        bands = 0.5 + 0.5 * np.sin(local[:, 2] * 9.0)
        return base * (0.7 + 0.45 * bands[:, None]) + 0.04
    if m == "eye":
        pole = local[:, 2]
        out = np.full_like(base, 0.93)
        iris = pole > 0.86
        out[iris] = base[iris]
        out[pole > 0.965] = 0.05
        return out
    if m == "cloth":
        # A neckline of skin-free darker collar plus a soft vertical fold pattern.
        folds = 0.92 + 0.08 * np.sin(25 * rel[:, 0])
        return base * folds[:, None]
    return base
