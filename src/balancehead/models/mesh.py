"""Mesh extraction: sample the generator's density on a cube grid, run marching cubes
(skimage.measure.marching_cubes) and write PLY or OBJ atomically. Used for 360° geometry figures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from balancehead import fileio


@torch.no_grad()
def density_grid(G, ws: torch.Tensor, resolution: int = 128, chunk: int = 65536, progress: bool = False) -> np.ndarray:
    """Raw density (EG3D's sigma, thresholded at level 10 as EG3D gen_samples does) of the first sample in
    `ws` on a resolution^3 grid spanning the box (index order x, y, z)."""
    planes = G.planes(ws[:1])
    half = G.cfg.box_warp / 2
    axis = torch.linspace(-half, half, resolution, device=ws.device)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(1, -1, 3)
    out = []
    for start in tqdm(range(0, grid.shape[1], chunk), disable=not progress, desc="density"):
        out.append(G.density(planes, grid[:, start:start + chunk]).reshape(-1))
    return torch.cat(out).reshape(resolution, resolution, resolution).cpu().numpy()


def marching_cubes(sigma: np.ndarray, box_warp: float, level: float = 10.0):
    """-> vertices (V, 3) in world units, faces (F, 3)."""
    from skimage.measure import marching_cubes as mc

    if not sigma.min() < level < sigma.max():
        raise ValueError(f"level {level} outside the density range [{sigma.min():.3g}, {sigma.max():.3g}]")
    verts, faces, _, _ = mc(sigma, level=level)
    scale = box_warp / (sigma.shape[0] - 1)
    return verts * scale - box_warp / 2, faces


def write_mesh(path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """PLY (ascii) or OBJ by suffix; atomic."""
    path = Path(path)
    if path.suffix == ".obj":
        lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    elif path.suffix == ".ply":
        lines = ["ply", "format ascii 1.0", f"element vertex {len(vertices)}", "property float x", "property float y",
                 "property float z", f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
        lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
        lines += [f"3 {a} {b} {c}" for a, b, c in faces]
    else:
        raise ValueError(f"mesh format must be .ply or .obj, got {path.suffix!r}")
    fileio.write_text(path, "\n".join(lines) + "\n")


def extract_mesh(G, ws: torch.Tensor, path, resolution: int = 128, level: float = 10.0):
    """Density grid -> marching cubes -> file. Returns (vertices, faces)."""
    verts, faces = marching_cubes(density_grid(G, ws, resolution), G.cfg.box_warp, level)
    write_mesh(path, verts, faces)
    return verts, faces
