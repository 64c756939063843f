"""Fakes grids: rows of subjects (fixed z and condition), columns at yaw 0/45/90/135/180, plus a row
of random views — the pictures that show whether the back of the head is learned."""
from __future__ import annotations

import numpy as np
import torch

from balancehead.camera import camera_label

YAWS = (0, 45, 90, 135, 180)


def grid_image(images: torch.Tensor, rows: int, cols: int) -> np.ndarray:
    """(rows*cols, 3, H, W) in [-1, 1] -> uint8 HxWx3 mosaic."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    _, c, h, w = x.shape
    x = x.reshape(rows, cols, c, h, w).transpose(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c)
    return np.ascontiguousarray(x)


@torch.no_grad()
def render_grid(G, g_labels: torch.Tensor, seed: int, device, neural_resolution: int,
                random_cameras: torch.Tensor) -> np.ndarray:
    """Rows = len(g_labels) subjects at YAWS, then one row of the same subjects' z at random real cameras."""
    n = g_labels.shape[0]
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.cfg.z_dim, generator=gen).to(device)
    cams = torch.tensor(np.array([camera_label(y, 0.0) for y in YAWS]), dtype=torch.float32, device=device)
    tiles = []
    for i in range(n):
        zi = z[i:i + 1].repeat(len(YAWS), 1)
        ci = g_labels[i:i + 1].repeat(len(YAWS), 1)
        out = G(zi, ci, cams, neural_resolution=neural_resolution, noise_mode="const")
        tiles.append(out.image)
    k = min(len(YAWS), n)
    rnd = G(z[:k], g_labels[:k], random_cameras[:k].to(device), neural_resolution=neural_resolution, noise_mode="const")
    tiles.append(torch.cat([rnd.image, rnd.image.new_zeros(len(YAWS) - k, *rnd.image.shape[1:])]) if k < len(YAWS) else rnd.image)
    return grid_image(torch.cat(tiles), n + 1, len(YAWS))
