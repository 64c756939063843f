"""The template head mesh the reconstructors start from, and its network-free densification.

PanoLAM (§3.2) and PercHead (§3.1) start from FLAME's neutral head. FLAME is licence-restricted, so the
template is either the user's FLAME-like mesh (`.npz` with `vertices`/`faces` -- FLAME's `v_template`/`f`
are accepted -- or a Wavefront `.obj`), or by default the embedded world's parametric head: an icosphere
pushed out from the head centre onto the outer surface of a neutral subject's skin ellipsoids (skull, jaw,
cheeks, nose, ears, neck; `world.render.build_scene`), in the same world units as the renders.

Densification (PanoLAM §3.2, "Efficient Point Cloud Densification"): faces larger than `area` are split
1-to-4 at their edge midpoints, largest first, until none is or `max_points` is reached; every new point is
stored as a barycentric combination of (at most three) template vertices, so deformed coarse points and their
features densify with the same weights: p' = sum_i w_i p_i.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from balancehead.world.render import build_scene
from balancehead.world.subject import Subject


@dataclass(frozen=True)
class Template:
    vertices: np.ndarray   # (V, 3) float32
    faces: np.ndarray      # (F, 3) int64

    def __post_init__(self):
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3 or not np.isfinite(self.vertices).all():
            raise ValueError(f"template vertices must be finite (V, 3), got shape {self.vertices.shape}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3 or self.faces.min() < 0 \
                or self.faces.max() >= len(self.vertices):
            raise ValueError("template faces must be (F, 3) indices into the vertices")


def load_template(path) -> Template:
    """A user's mesh: `.npz` (vertices|v_template, faces|f) or `.obj` (polygons are fan-triangulated)."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            v = next((z[k] for k in ("vertices", "v_template") if k in z), None)
            f = next((z[k] for k in ("faces", "f") if k in z), None)
        if v is None or f is None:
            raise ValueError(f"{path}: a template .npz needs arrays 'vertices' (or 'v_template') and 'faces' (or 'f')")
    elif path.suffix == ".obj":
        verts, faces = [], []
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] == ["v"]:
                verts.append([float(x) for x in words[1:4]])
            elif words[:1] == ["f"]:
                idx = [int(w.split("/")[0]) for w in words[1:]]
                idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
                faces += [[idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1)]
        v, f = np.array(verts), np.array(faces)
    else:
        raise ValueError(f"template must be a .npz or .obj file, got {path.name!r}")
    return Template(np.asarray(v, dtype=np.float32), np.asarray(f, dtype=np.int64))


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere: 10 * 4^s + 2 vertices (s=3: 642, s=4: 2562, s=5: 10242)."""
    t = (1 + math.sqrt(5)) / 2
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
         (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2), (10, 7, 6),
         (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10),
         (8, 6, 7), (9, 8, 1)]
    verts = [np.array(p, dtype=np.float64) / np.linalg.norm(p) for p in v]
    for _ in range(subdivisions):
        cache, new_faces = {}, []

        def mid(a, b):
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        for a, b, c in f:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new_faces += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        f = new_faces
    return np.array(verts), np.array(f, dtype=np.int64)


def world_head_template(subdivisions: int = 3, subject: Subject | None = None) -> Template:
    """The embedded default: an icosphere shrink-wrapped onto a (neutral by default) subject's skin ellipsoids."""
    subject = subject or Subject(subject_id="template", seed=0)
    prims = [p for p in build_scene(subject) if p.material == "skin"]
    centre = prims[0].center  # the skull
    dirs, faces = icosphere(subdivisions)
    reach = np.zeros(len(dirs))
    for p in prims:
        # Ray centre + t d against the ellipsoid: in its unit-sphere frame solve |o + t d| = 1, keep the far root.
        M = p.rot / p.radii[None, :]
        o = (centre - p.center) @ M
        d = dirs @ M
        a, b, c = (d * d).sum(1), 2 * (d @ o), o @ o - 1
        disc = b * b - 4 * a * c
        far = np.where(disc > 0, (-b + np.sqrt(np.maximum(disc, 0))) / (2 * a), 0.0)
        reach = np.maximum(reach, far)
    return Template((centre + dirs * reach[:, None]).astype(np.float32), faces)


@dataclass(frozen=True)
class Densification:
    """New points as combinations of template vertices: index (M, 3) and weights (M, 3), rows sum to 1."""
    index: torch.Tensor
    weights: torch.Tensor

    def __len__(self) -> int:
        return self.index.shape[0]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Per-vertex values (B, V, C) -> the template's values followed by the new points' (B, V + M, C)."""
        new = (x[:, self.index] * self.weights.to(x.dtype)[None, :, :, None]).sum(2)
        return torch.cat([x, new], 1)


def _split(vertices: np.ndarray, faces: np.ndarray, area: float, budget: int) -> list:
    """Largest-first barycentric 1-to-4 splitting of the faces above `area`, stopping before the new points
    would exceed `budget` -> the new points as ((vertex, weight), ...) combinations. Midpoints are shared
    through an edge cache, so neighbouring faces never duplicate a point."""
    combos = [((i, 1.0),) for i in range(len(vertices))]
    pos = [tuple(map(float, v)) for v in vertices]
    cache: dict = {}

    def midpoint(a: int, b: int) -> int:
        key = (a, b) if a < b else (b, a)
        if key not in cache:
            weights: dict = {}
            for i, w in combos[a] + combos[b]:
                weights[i] = weights.get(i, 0.0) + w / 2
            combos.append(tuple(sorted(weights.items())))
            pos.append(tuple((x + y) / 2 for x, y in zip(pos[a], pos[b])))
            cache[key] = len(combos) - 1
        return cache[key]

    def face_area(a: int, b: int, c: int) -> float:
        (ax, ay, az), (bx, by, bz), (cx, cy, cz) = pos[a], pos[b], pos[c]
        ux, uy, uz, vx, vy, vz = bx - ax, by - ay, bz - az, cx - ax, cy - ay, cz - az
        return 0.5 * math.sqrt((uy * vz - uz * vy) ** 2 + (uz * vx - ux * vz) ** 2 + (ux * vy - uy * vx) ** 2)

    heap = [(-face_area(*f), k, f) for k, f in enumerate(tuple(map(int, f)) for f in faces)]
    heapq.heapify(heap)
    counter = len(heap)
    while heap and -heap[0][0] > area:
        _, _, (a, b, c) = heapq.heappop(heap)
        fresh = sum(((min(x, y), max(x, y)) not in cache) for x, y in ((a, b), (b, c), (c, a)))
        if len(combos) - len(vertices) + fresh > budget:
            break
        ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
        for face in ((a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)):
            heapq.heappush(heap, (-face_area(*face), counter, face))
            counter += 1
    return combos[len(vertices):]


def densify(template: Template, area: float, max_points: int) -> Densification:
    """Plan the densification of `template` (PanoLAM: λ_area 2e-6 on FLAME in metres, M_D = 10k in total):
    the largest faces are split first, so a `max_points` cap keeps the most useful points."""
    budget = max_points - len(template.vertices)
    if budget < 0:
        raise ValueError(f"densify max_points {max_points} is below the template's {len(template.vertices)} vertices")
    if not area > 0:
        raise ValueError(f"densify area threshold must be > 0, got {area}")
    points = _split(template.vertices.astype(np.float64), template.faces, area, budget)
    index = np.zeros((len(points), 3), dtype=np.int64)
    weights = np.zeros((len(points), 3), dtype=np.float64)
    for row, combo in enumerate(points):
        if len(combo) > 3:
            raise AssertionError("a densified point depends on more than one template face")
        for k, (i, w) in enumerate(combo):
            index[row, k], weights[row, k] = i, w
    weights /= weights.sum(1, keepdims=True)
    return Densification(torch.from_numpy(index), torch.from_numpy(weights).float())


def morton_order(points: np.ndarray, bits: int = 10) -> np.ndarray:
    """Indices sorting points along a Z-order curve (consecutive points are spatial neighbours)."""
    lo, hi = points.min(0), points.max(0)
    q = ((points - lo) / np.maximum(hi - lo, 1e-12) * (2 ** bits - 1)).astype(np.int64)
    code = np.zeros(len(points), dtype=np.int64)
    for bit in range(bits):
        for axis in range(3):
            code |= ((q[:, axis] >> bit) & 1) << (3 * bit + axis)
    return np.argsort(code, kind="stable")


def patch_anchors(template: Template, patches: int, per_patch: int) -> np.ndarray:
    """PercHead §3.1: the template upsampled to patches * per_patch points grouped into patches of neighbours.
    -> (patches, per_patch, 3): densify to at least that many points, sort them along a Z-order curve, take
    evenly spaced ones and cut the sequence into consecutive groups."""
    need = patches * per_patch
    points = template.vertices
    if need > len(points):
        v, f = template.vertices.astype(np.float64), template.faces
        total = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum()
        plan = densify(template, area=total / (8 * need), max_points=2 * need)
        points = plan.apply(torch.from_numpy(template.vertices)[None])[0].numpy()
    if len(points) < need:
        raise ValueError(f"template densifies to {len(points)} points, fewer than {need} = patches x per_patch")
    ordered = points[morton_order(points)]
    pick = np.round(np.linspace(0, len(ordered) - 1, need)).astype(np.int64)
    return ordered[pick].reshape(patches, per_patch, 3).astype(np.float32)
