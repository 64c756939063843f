"""Camera rays from the 25-float EG3D label (see balancehead.camera).

label[:16] is the OpenCV cam2world matrix (x right, y down, z forward), label[16:] the intrinsics
normalised by the image size (fx, 0, cx / 0, fy, cy / 0, 0, 1). Pixel (row i, column j) of an
R x R image looks through normalised image point ((j + 0.5)/R, (i + 0.5)/R): row 0 is the top.
"""
from __future__ import annotations

import torch


def split_label(label: torch.Tensor):
    """(B, 25) -> cam2world (B, 4, 4), intrinsics (B, 3, 3)."""
    return label[:, :16].reshape(-1, 4, 4), label[:, 16:25].reshape(-1, 3, 3)


def rays_from_labels(label: torch.Tensor, resolution: int):
    """-> origins (B, R*R, 3), unit directions (B, R*R, 3), pixels in row-major order.

    The arithmetic follows EG3D's RaySampler (uv = index / R + 0.5 / R; points lifted to z = 1 with
    the skew term; direction = cam2world @ point - camera centre, normalised)."""
    cam2world, k = split_label(label.to(torch.float32))
    b = label.shape[0]
    idx = torch.arange(resolution, dtype=torch.float32, device=label.device)
    rows, cols = torch.meshgrid(idx, idx, indexing="ij")
    u = (cols * (1.0 / resolution) + (0.5 / resolution)).reshape(1, -1)
    v = (rows * (1.0 / resolution) + (0.5 / resolution)).reshape(1, -1)
    fx, fy, cx, cy, sk = k[:, 0, 0:1], k[:, 1, 1:2], k[:, 0, 2:3], k[:, 1, 2:3], k[:, 0, 1:2]
    z = torch.ones((b, u.shape[1]), device=label.device)
    x_lift = (u - cx + cy * sk / fy - sk * v / fy) / fx * z
    y_lift = (v - cy) / fy * z
    points = torch.stack((x_lift, y_lift, z, torch.ones_like(z)), dim=-1)
    world = torch.bmm(cam2world, points.permute(0, 2, 1)).permute(0, 2, 1)[:, :, :3]
    centre = cam2world[:, :3, 3]
    dirs = torch.nn.functional.normalize(world - centre[:, None, :], dim=2)
    origins = centre.unsqueeze(1).repeat(1, dirs.shape[1], 1)
    return origins, dirs
