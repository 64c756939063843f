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
    """-> origins (B, R*R, 3), unit directions (B, R*R, 3), pixels in row-major order."""
    cam2world, k = split_label(label.to(torch.float32))
    b = label.shape[0]
    steps = (torch.arange(resolution, dtype=torch.float32, device=label.device) + 0.5) / resolution
    v, u = torch.meshgrid(steps, steps, indexing="ij")
    u, v = u.reshape(1, -1), v.reshape(1, -1)
    fx, fy, cx, cy, skew = k[:, 0, 0:1], k[:, 1, 1:2], k[:, 0, 2:3], k[:, 1, 2:3], k[:, 0, 1:2]
    y_cam = (v - cy) / fy
    x_cam = (u - cx - skew * y_cam) / fx
    dirs_cam = torch.stack([x_cam, y_cam, torch.ones_like(x_cam)], dim=-1)  # (B, HW, 3)
    dirs = dirs_cam @ cam2world[:, :3, :3].transpose(1, 2)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = cam2world[:, None, :3, 3].expand(b, dirs.shape[1], 3)
    return origins, dirs
