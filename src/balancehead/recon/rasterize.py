"""Differentiable 3D Gaussian splatting rasteriser: a dense pure-PyTorch path and a gsplat adapter.

Both paths implement one interface,

    rasterize(means, quats, scales, opacities, colors, viewmat, K, width, height, background)
        -> rgb (H, W, 3), alpha (H, W, 1), depth (H, W, 1)

for one camera: `viewmat` is the 4x4 world-to-camera matrix (OpenCV: x right, y down, z forward) and `K`
the 3x3 intrinsics in pixels (pixel centres at integer + 0.5), as gsplat's `rasterization` takes them.
Gaussians follow `gaussians.py` (quaternions w-first, scales as standard deviations, activated opacities
and RGB colours).

The PyTorch path follows 3DGS (Kerbl et al. 2023) and gsplat's classic mode so the two agree:
* EWA projection: Sigma_2D = J W Sigma W^T J^T + eps2d I, with the Jacobian's x/z and y/z clamped to
  1.3x the image half-extent (3DGS's guard against Gaussians far outside the frustum); Gaussians with
  camera z <= near are dropped;
* front-to-back compositing over Gaussians sorted by camera z: alpha_i = min(alpha_max, o_i exp(-d^T
  Sigma_2D^-1 d / 2)), skipped below 1/255; a pixel stops before the Gaussian that would bring its
  transmittance to t_min or below;
* rgb = sum_i w_i c_i + T background, alpha = 1 - T, depth = sum_i w_i z_i / alpha (gsplat's "ED").
Tiles of 8 x 8 pixels composite only the Gaussians whose alpha >= 1/255 ellipse reaches them (padded to the
busiest tile's count), which gives the dense result exactly; memory is still O(pixels x Gaussians per tile),
so this path is for CPU runs, tests and small images. gsplat also drops pixels outside each Gaussian's 3-sigma box, so the
two paths differ slightly where a very opaque Gaussian's tail is still above 1/255.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from balancehead.camera import camera_label

from .gaussians import Gaussians, covariance

BACKENDS = ("auto", "torch", "gsplat")


@dataclass(frozen=True)
class RasterSettings:
    near: float = 0.01          # camera-z near plane (gsplat near_plane)
    eps2d: float = 0.3          # low-pass filter added to the 2D covariance, pixels^2 (3DGS / gsplat)
    alpha_max: float = 0.999    # per-Gaussian alpha clamp (gsplat; original 3DGS uses 0.99)
    alpha_min: float = 1.0 / 255.0
    t_min: float = 1e-4         # early termination transmittance


def camera_from_label(label, size: int, dtype=torch.float32, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Our 25-float EG3D label (cam2world + intrinsics normalised by the image size) -> (viewmat, K in pixels)."""
    lab = torch.as_tensor(np.asarray(label, dtype=np.float64)).reshape(-1)
    c2w = lab[:16].reshape(4, 4)
    K = lab[16:25].reshape(3, 3).clone()
    K[:2] *= size
    return torch.linalg.inv(c2w).to(dtype=dtype, device=device), K.to(dtype=dtype, device=device)


def project(means, quats, scales, viewmat, K, width: int, height: int, settings: RasterSettings = RasterSettings()):
    """EWA splatting of N Gaussians -> camera z (N,), 2D means (N, 2) in pixels, 2D covariances (N, 2, 2), valid (N,)."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    pc = means @ R.T + t
    x, y, z = pc.unbind(-1)
    valid = z > settings.near
    zs = torch.where(valid, z, torch.ones_like(z))  # culled Gaussians get a harmless depth
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    lim_x = ((cx / fx + 0.3 * width / fx), ((width - cx) / fx + 0.3 * width / fx))
    lim_y = ((cy / fy + 0.3 * height / fy), ((height - cy) / fy + 0.3 * height / fy))
    tx = zs * torch.clamp(x / zs, -lim_x[0], lim_x[1])
    ty = zs * torch.clamp(y / zs, -lim_y[0], lim_y[1])
    zero = torch.zeros_like(zs)
    J = torch.stack([torch.stack([fx / zs, zero, -fx * tx / zs ** 2], -1),
                     torch.stack([zero, fy / zs, -fy * ty / zs ** 2], -1)], -2)  # (N, 2, 3)
    cov_cam = R @ covariance(quats, scales) @ R.T
    cov2d = J @ cov_cam @ J.transpose(-1, -2) + settings.eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    mean2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)
    return z, mean2d, cov2d, valid


def _composite(px, py, mean2d, conic, opacities, colors, z, valid, settings: RasterSettings):
    """Pixels (T, P) against T lists of K Gaussians in depth order ((T, K, ...); `valid` (T, K)) ->
    sum_i w_i c_i (T, P, 3), sum_i w_i (T, P, 1), sum_i w_i z_i (T, P, 1)."""
    dx = px[..., None] - mean2d[:, None, :, 0]      # (T, P, K)
    dy = py[..., None] - mean2d[:, None, :, 1]
    sigma = 0.5 * (conic[:, None, :, 0] * dx ** 2 + conic[:, None, :, 2] * dy ** 2) + conic[:, None, :, 1] * dx * dy
    alpha = torch.clamp(opacities[:, None] * torch.exp(-sigma), max=settings.alpha_max)
    keep = valid[:, None] & (sigma >= 0) & (alpha >= settings.alpha_min)
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    t_incl = torch.cumprod(1.0 - alpha, dim=-1)
    t_excl = torch.cat([torch.ones_like(t_incl[..., :1]), t_incl[..., :-1]], dim=-1)
    weight = alpha * t_excl * (t_incl > settings.t_min)
    return weight @ colors, weight.sum(-1, keepdim=True), weight @ z[..., None]


def rasterize_torch(means, quats, scales, opacities, colors, viewmat, K, width: int, height: int, background,
                    settings: RasterSettings = RasterSettings(), tile: int = 8):
    """The PyTorch path (see the module docstring). With `tile` > 0 each tile x tile block of pixels composites
    only the Gaussians whose contribution ellipse (alpha >= alpha_min) reaches it -- the same result as the
    dense path (`tile=0`), which every pixel composites against every Gaussian, for a fraction of the work."""
    z, mean2d, cov2d, valid = project(means, quats, scales, viewmat, K, width, height, settings)
    order = torch.argsort(z.detach())
    z, mean2d, cov2d, valid = z[order], mean2d[order], cov2d[order], valid[order]
    opacities, colors = opacities[order], colors[order]
    det = cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] ** 2
    valid = valid & (det > 0)
    det = torch.where(valid, det, torch.ones_like(det))
    conic = torch.stack([cov2d[:, 1, 1] / det, -cov2d[:, 0, 1] / det, cov2d[:, 0, 0] / det], -1)
    bg = torch.as_tensor(background, dtype=means.dtype, device=means.device)
    arange = lambda n: torch.arange(n, dtype=means.dtype, device=means.device)  # noqa: E731

    if tile <= 0:
        py, px = torch.meshgrid(arange(height) + 0.5, arange(width) + 0.5, indexing="ij")
        rgb, acc, zsum = _composite(px.reshape(1, -1), py.reshape(1, -1), mean2d[None], conic[None], opacities[None],
                                    colors[None], z[None], valid[None], settings)
        rgb, acc, zsum = rgb[0], acc[0], zsum[0]
    else:
        # Half-extents of the ellipse o exp(-d^T Sigma^-1 d / 2) >= alpha_min, plus a hair for rounding.
        power = torch.log(opacities.detach().clamp_min(1e-30) / settings.alpha_min).clamp_min(0)
        rx = torch.sqrt(2 * power * cov2d[:, 0, 0].detach()) + 1e-3
        ry = torch.sqrt(2 * power * cov2d[:, 1, 1].detach()) + 1e-3
        live = valid & (power > 0)
        nx, ny = -(-width // tile), -(-height // tile)
        lo_x, lo_y = arange(nx) * tile + 0.5, arange(ny) * tile + 0.5      # first/last pixel centres per tile
        hi_x, hi_y = lo_x + tile - 1, lo_y + tile - 1
        mx, my = mean2d[:, 0].detach(), mean2d[:, 1].detach()
        over_x = (mx + rx >= lo_x[:, None]) & (mx - rx <= hi_x[:, None])   # (nx, N)
        over_y = (my + ry >= lo_y[:, None]) & (my - ry <= hi_y[:, None])   # (ny, N)
        overlap = (over_y[:, None] & over_x[None] & live).reshape(ny * nx, -1)
        counts = overlap.sum(1)
        k = max(int(counts.max()), 1)
        idx = torch.argsort((~overlap).to(torch.int8), dim=1, stable=True)[:, :k]  # overlapping first, depth order kept
        slot = torch.arange(k, device=means.device) < counts[:, None]
        local_y, local_x = torch.meshgrid(arange(tile), arange(tile), indexing="ij")
        px = (lo_x[None, :, None] + local_x.reshape(1, 1, -1)).expand(ny, -1, -1).reshape(ny * nx, -1)
        py = (lo_y[:, None, None] + local_y.reshape(1, 1, -1)).expand(-1, nx, -1).reshape(ny * nx, -1)
        rgb, acc, zsum = _composite(px, py, mean2d[idx], conic[idx], opacities[idx], colors[idx], z[idx], slot, settings)
        untile = lambda t: (t.reshape(ny, nx, tile, tile, -1).permute(0, 2, 1, 3, 4)  # noqa: E731
                            .reshape(ny * tile, nx * tile, -1)[:height, :width].reshape(height * width, -1))
        rgb, acc, zsum = untile(rgb), untile(acc), untile(zsum)
    rgb = rgb + (1.0 - acc) * bg
    depth = zsum / acc.clamp_min(1e-10)
    return rgb.reshape(height, width, 3), acc.reshape(height, width, 1), depth.reshape(height, width, 1)


def gsplat_available() -> bool:
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def rasterize_gsplat(means, quats, scales, opacities, colors, viewmat, K, width: int, height: int, background,
                     settings: RasterSettings = RasterSettings()):
    """The same interface through gsplat's CUDA `rasterization` (classic mode, no spherical harmonics)."""
    try:
        import gsplat
    except ImportError as e:
        raise RuntimeError("recon rasteriser backend 'gsplat' was requested but `import gsplat` failed; install "
                           "gsplat (CUDA) or use backend 'torch'") from e
    if not means.is_cuda:
        raise RuntimeError("recon rasteriser backend 'gsplat' needs CUDA tensors; use backend 'torch' on CPU")
    out, alpha, _ = gsplat.rasterization(means, quats, scales, opacities, colors, viewmat[None], K[None], width,
                                         height, near_plane=settings.near, eps2d=settings.eps2d,
                                         render_mode="RGB+D", packed=False)
    out, alpha = out[0], alpha[0]
    bg = torch.as_tensor(background, dtype=means.dtype, device=means.device)
    rgb = out[..., :3] + (1.0 - alpha) * bg
    return rgb, alpha, out[..., 3:4] / alpha.clamp_min(1e-10)


def rasterize(means, quats, scales, opacities, colors, viewmat, K, width: int, height: int, background,
              settings: RasterSettings = RasterSettings(), backend: str = "auto"):
    """Dispatch: 'torch', 'gsplat', or 'auto' (gsplat when importable and the tensors are on CUDA)."""
    if backend not in BACKENDS:
        raise ValueError(f"recon rasteriser backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "gsplat" or (backend == "auto" and means.is_cuda and gsplat_available()):
        return rasterize_gsplat(means, quats, scales, opacities, colors, viewmat, K, width, height, background, settings)
    return rasterize_torch(means, quats, scales, opacities, colors, viewmat, K, width, height, background, settings)


def render_views(g: Gaussians, cameras: torch.Tensor, size: int, background, backend: str = "auto",
                 settings: RasterSettings = RasterSettings()):
    """Batched Gaussians (B, N, ...) seen by cameras (B, V, 25 labels) -> rgb (B, V, 3, S, S), alpha and
    depth (B, V, 1, S, S): images channel-first, the layout the losses take."""
    rgbs, alphas, depths = [], [], []
    for b in range(cameras.shape[0]):
        for v in range(cameras.shape[1]):
            viewmat, K = camera_from_label(cameras[b, v].detach().cpu().numpy(), size, g.means.dtype, g.means.device)
            rgb, alpha, depth = rasterize(g.means[b], g.quats[b], g.scales[b], g.opacities[b], g.colors[b], viewmat, K,
                                          size, size, background, settings, backend)
            rgbs.append(rgb), alphas.append(alpha), depths.append(depth)
    shape = (cameras.shape[0], cameras.shape[1])
    stack = lambda ts: torch.stack(ts).reshape(*shape, size, size, -1).permute(0, 1, 4, 2, 3)  # noqa: E731
    return stack(rgbs), stack(alphas), stack(depths)


def turntable(g: Gaussians, frames: int, size: int, background=(1.0, 1.0, 1.0), pitch_deg: float = 0.0,
              backend: str = "auto") -> torch.Tensor:
    """One head (N, ...) rendered from `frames` yaws evenly around 360 degrees (yaw 0 = front first), with the
    default EG3D camera (radius 2.7, FOV 18.837, looking at the pivot) -> (frames, 3, size, size)."""
    labels = np.stack([camera_label(yaw, pitch_deg) for yaw in np.arange(frames) * 360.0 / frames])
    batched = Gaussians(*(t[None] for t in (g.means, g.quats, g.scales, g.opacities, g.colors)))
    with torch.no_grad():
        return render_views(batched, torch.from_numpy(labels)[None], size, background, backend)[0][0]
