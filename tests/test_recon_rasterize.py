"""The PyTorch splatting rasteriser against a brute-force per-pixel reference, and its gradients."""
import math

import numpy as np
import pytest
import torch

from balancehead.camera import camera_label
from balancehead.recon.gaussians import Gaussians, covariance, quat_to_rotmat
from balancehead.recon.rasterize import (RasterSettings, camera_from_label, gsplat_available, rasterize,
                                         rasterize_gsplat, rasterize_torch, render_views)


def _scene(dtype=torch.float64, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * torch.tensor([0.3, 0.3, 0.4], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = 0.03 + 0.05 * torch.rand(n, 3, generator=g, dtype=dtype)
    opac = 0.3 + 0.6 * torch.rand(n, generator=g, dtype=dtype)
    colors = torch.rand(n, 3, generator=g, dtype=dtype)
    return means, quats, scales, opac, colors


def _reference(means, quats, scales, opac, colors, viewmat, K, w, h, bg, s=RasterSettings()):
    """Per pixel, walk the Gaussians front to back and composite their closed-form 2D densities."""
    means, opac, colors = (t.detach().numpy().astype(np.float64) for t in (means, opac, colors))
    cov3 = covariance(quats.detach(), scales.detach()).numpy()
    V, K = viewmat.numpy(), K.numpy()
    pc = means @ V[:3, :3].T + V[:3, 3]
    order = np.argsort(pc[:, 2])
    rgb, acc, depth = np.zeros((h, w, 3)), np.zeros((h, w)), np.zeros((h, w))
    for py in range(h):
        for px in range(w):
            T, c, d = 1.0, np.zeros(3), 0.0
            for i in order:
                x, y, z = pc[i]
                J = np.array([[K[0, 0] / z, 0, -K[0, 0] * x / z ** 2], [0, K[1, 1] / z, -K[1, 1] * y / z ** 2]])
                cov2 = J @ V[:3, :3] @ cov3[i] @ V[:3, :3].T @ J.T + s.eps2d * np.eye(2)
                mu = np.array([K[0, 0] * x / z + K[0, 2], K[1, 1] * y / z + K[1, 2]])
                dd = np.array([px + 0.5, py + 0.5]) - mu
                a = min(s.alpha_max, opac[i] * math.exp(-0.5 * dd @ np.linalg.inv(cov2) @ dd))
                if a < s.alpha_min:
                    continue
                if T * (1 - a) <= s.t_min:
                    break
                c += T * a * colors[i]
                d += T * a * z
                T *= 1 - a
            rgb[py, px] = c + T * np.asarray(bg)
            acc[py, px] = 1 - T
            depth[py, px] = d / max(1 - T, 1e-10)
    return rgb, acc, depth


def _camera(size, yaw=20.0, pitch=10.0, dtype=torch.float64):
    return camera_from_label(camera_label(yaw, pitch, radius=1.2, fov_deg=30.0, pivot=(0, 0, 0)), size, dtype)


def test_forward_matches_brute_force_reference():
    means, quats, scales, opac, colors = _scene(n=6)
    viewmat, K = _camera(16)
    bg = (0.2, 0.4, 0.9)
    rgb, alpha, depth = rasterize_torch(means, quats, scales, opac, colors, viewmat, K, 16, 16, bg)
    ref_rgb, ref_acc, ref_depth = _reference(means, quats, scales, opac, colors, viewmat, K, 16, 16, bg)
    assert alpha.max() > 0.5 and alpha.min() < 0.05, "the scene must cover part of the image"
    np.testing.assert_allclose(rgb.numpy(), ref_rgb, atol=1e-9)
    np.testing.assert_allclose(alpha[..., 0].numpy(), ref_acc, atol=1e-9)
    np.testing.assert_allclose(depth[..., 0].numpy(), ref_depth, atol=1e-9)


def test_early_termination_and_occlusion():
    """An opaque Gaussian in front hides one behind it; the depth is the front one's."""
    means = torch.tensor([[0.0, 0.0, 0.1], [0.0, 0.0, -0.1]], dtype=torch.float64)
    quats = torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=torch.float64)
    scales = torch.full((2, 3), 0.2, dtype=torch.float64)
    opac = torch.tensor([1.0, 1.0], dtype=torch.float64)
    colors = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64)
    viewmat, K = _camera(9, yaw=0.0, pitch=0.0)
    rgb, alpha, depth = rasterize_torch(means, quats, scales, opac, colors, viewmat, K, 9, 9, (0, 0, 0))
    centre = rgb[4, 4]
    assert centre[0] > 0.99 and centre[1] < 0.01
    assert abs(depth[4, 4, 0].item() - (1.2 - 0.1)) < 1e-3


def test_gradients_match_finite_differences():
    means, quats, scales, opac, colors = _scene(n=3, seed=3)
    bg = torch.tensor([0.1, 0.5, 0.3], dtype=torch.float64)
    viewmat, K = _camera(6, yaw=-15.0)
    inputs = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors, bg)]

    def f(m, q, s, o, c, b):
        rgb, alpha, depth = rasterize_torch(m, q, s, o, c, viewmat, K, 6, 5, b)
        return rgb, alpha, depth

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5)


def test_render_views_layout_and_label_camera():
    means, quats, scales, opac, colors = _scene(dtype=torch.float32, n=4)
    g = Gaussians(means[None], quats[None], scales[None], opac[None], colors[None])
    cams = torch.from_numpy(np.stack([camera_label(0, 0), camera_label(90, 0)]))[None]
    rgb, alpha, depth = render_views(g, cams, 12, (1.0, 1.0, 1.0), backend="torch")
    assert rgb.shape == (1, 2, 3, 12, 12) and alpha.shape == depth.shape == (1, 2, 1, 12, 12)
    # The label camera sits at radius 2.7 looking at (0, 0, 0.2): depths are close to 2.5-2.7.
    d = depth[alpha > 0.5]
    assert d.numel() and ((d > 2.2) & (d < 3.0)).all()


def test_quaternion_convention_is_w_first():
    R = quat_to_rotmat(torch.tensor([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]))
    np.testing.assert_allclose(R.numpy() @ np.array([1.0, 0, 0]), [0, 1.0, 0], atol=1e-6)  # 90 deg about z


def test_gsplat_backend_fails_clearly_without_gsplat_or_cuda():
    means, quats, scales, opac, colors = _scene(dtype=torch.float32, n=2)
    viewmat, K = _camera(4, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="gsplat"):
        rasterize_gsplat(means, quats, scales, opac, colors, viewmat, K, 4, 4, (0, 0, 0))
    with pytest.raises(ValueError, match="backend"):
        rasterize(means, quats, scales, opac, colors, viewmat, K, 4, 4, (0, 0, 0), backend="cuda")
    rgb, _, _ = rasterize(means, quats, scales, opac, colors, viewmat, K, 4, 4, (0, 0, 0))  # auto -> torch on CPU
    assert rgb.shape == (4, 4, 3)


@pytest.mark.skipif(not gsplat_available(), reason="needs gsplat and CUDA (the GPU check runs it)")
def test_torch_and_gsplat_paths_agree_on_cuda():
    means, quats, scales, opac, colors = (t.cuda() for t in _scene(dtype=torch.float32, n=40, seed=7))
    viewmat, K = (t.cuda() for t in _camera(64, dtype=torch.float32))
    bg = torch.tensor([0.3, 0.6, 0.9], device="cuda")
    ours = rasterize_torch(means, quats, scales, opac, colors, viewmat, K, 64, 64, bg)
    theirs = rasterize_gsplat(means, quats, scales, opac, colors, viewmat, K, 64, 64, bg)
    # gsplat also drops pixels outside each Gaussian's 3-sigma box: allow small local differences.
    for a, b in zip(ours[:2], theirs[:2]):
        assert (a - b).abs().mean() < 2e-3 and (a - b).abs().max() < 5e-2


def test_tiled_path_equals_dense_path_values_and_gradients():
    means, quats, scales, opac, colors = _scene(n=30, seed=11)
    means = means * 2.0
    opac[:3] = 1.0  # opaque ones exercise the early termination inside tiles
    viewmat, K = _camera(21, yaw=40.0)  # 21 px: edge tiles are partial
    bg = (0.9, 0.1, 0.4)
    ins = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors)]
    dense = rasterize_torch(*ins, viewmat, K, 21, 19, bg, tile=0)
    grads_dense = torch.autograd.grad(sum(o.sin().sum() for o in dense), ins)
    for tile in (4, 8):
        tiled = rasterize_torch(*ins, viewmat, K, 21, 19, bg, tile=tile)
        for a, b in zip(tiled, dense):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
        grads = torch.autograd.grad(sum(o.sin().sum() for o in tiled), ins)
        for a, b in zip(grads, grads_dense):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_label_cameras_project_like_the_world_renderer():
    """Template points on the world head's skin, projected with camera_from_label, land where world.render's
    ray-cast depth for the same label is at or in front of them (flipped projections would not)."""
    from balancehead.recon.template import world_head_template
    from balancehead.world import Subject, render

    size = 64
    view = render(Subject(subject_id="t", seed=0), 60.0, 20.0, size=size)
    viewmat, K = camera_from_label(view.camera, size, torch.float64)
    pts = torch.from_numpy(world_head_template(2).vertices).double()
    cam = pts @ viewmat[:3, :3].T + viewmat[:3, 3]
    uv = (cam[:, :2] / cam[:, 2:] * torch.stack([K[0, 0], K[1, 1]]) + K[:2, 2]).floor().long()
    in_frame = ((uv >= 0) & (uv < size)).all(1)
    assert in_frame.double().mean() > 0.95
    uv, z = uv[in_frame], cam[in_frame, 2].numpy()

    def agree(rows, cols):  # the ray-cast surface at the pixel is not behind the skin point
        return (view.depth[rows, cols] <= z + 0.01).mean()

    assert agree(uv[:, 1], uv[:, 0]) > 0.97
    assert agree(size - 1 - uv[:, 1], uv[:, 0]) < 0.8    # upside down
    assert agree(uv[:, 1], size - 1 - uv[:, 0]) < 0.92   # mirrored
