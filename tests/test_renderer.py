"""Renderer against closed forms, and camera labels -> rays."""
import math

import numpy as np
import torch

from balancehead.camera import camera_label
from balancehead.models.rays import rays_from_labels
import balancehead.models.renderer as renderer
from balancehead.models.renderer import VolumeRenderer, composite, cumprod_positive, sample_pdf

SIGMA, RADIUS = 3.0, 0.5
RAW_INSIDE = math.log(math.expm1(SIGMA)) + 1  # softplus(raw - 1) = SIGMA
RAW_OUTSIDE = -1e3                            # softplus(-1001) = 0


def ball(points, _dirs):
    """Raw density whose activation is SIGMA inside a ball of RADIUS at the origin, 0 outside; feature 1 inside."""
    inside = (points.norm(dim=-1, keepdim=True) < RADIUS).to(points.dtype)
    return RAW_OUTSIDE + (RAW_INSIDE - RAW_OUTSIDE) * inside, inside


def expected(offset):
    """Closed form along a ray passing `offset` from the centre, camera 2.7 away."""
    half_chord = math.sqrt(RADIUS ** 2 - offset ** 2)
    t0 = math.sqrt(2.7 ** 2 - offset ** 2) - half_chord
    length = 2 * half_chord
    opacity = 1 - math.exp(-SIGMA * length)
    depth = t0 + 1 / SIGMA - length * math.exp(-SIGMA * length) / opacity
    return opacity, depth


def _rays(offsets):
    origins = torch.tensor([[[0.0, 0.0, 2.7]] * len(offsets)])
    targets = torch.tensor([[[o, 0.0, 0.0] for o in offsets]])
    dirs = targets - origins
    return origins, dirs / dirs.norm(dim=-1, keepdim=True)


def _ray_offset(o):  # distance of the ray (0,0,2.7)->(o,0,0) from the origin
    return 2.7 * o / math.hypot(2.7, o)


def test_constant_density_ball_matches_closed_form():
    offsets = [0.0, 0.2, 0.4]
    origins, dirs = _rays(offsets)
    renderer = VolumeRenderer(2.0, 3.4, n_coarse=4000, n_importance=0)
    feats, depth, opacity = renderer.render_rays(ball, origins, dirs)
    for i, o in enumerate(offsets):
        exp_opacity, exp_depth = expected(_ray_offset(o))
        assert abs(opacity[0, i, 0].item() - exp_opacity) < 2e-3
        assert abs(depth[0, i, 0].item() - exp_depth) < 2e-3
        assert abs(feats[0, i, 0].item() - opacity[0, i, 0].item()) < 1e-3  # feature 1 inside -> ~opacity


def test_ray_missing_the_ball_is_transparent():
    origins, dirs = _rays([0.9])
    _, _, opacity = VolumeRenderer(2.0, 3.4, 64, 64).render_rays(ball, origins, dirs)
    assert opacity.item() < 1e-6


def test_importance_sampling_improves_on_coarse_only():
    origins, dirs = _rays([0.0])
    exp_opacity, exp_depth = expected(0.0)
    coarse = VolumeRenderer(2.0, 3.4, 12, 0).render_rays(ball, origins, dirs)  # the pass the fine samples refine
    fine = VolumeRenderer(2.0, 3.4, 12, 12).render_rays(ball, origins, dirs)
    err_coarse = abs(coarse[1].item() - exp_depth) + abs(coarse[2].item() - exp_opacity)
    err_fine = abs(fine[1].item() - exp_depth) + abs(fine[2].item() - exp_opacity)
    assert err_fine < err_coarse


def test_stratified_jitter_is_seeded():
    origins, dirs = _rays([0.1])
    r = VolumeRenderer(2.0, 3.4, 16, 16)
    a = r.render_rays(ball, origins, dirs, torch.Generator().manual_seed(3))
    b = r.render_rays(ball, origins, dirs, torch.Generator().manual_seed(3))
    c = r.render_rays(ball, origins, dirs, torch.Generator().manual_seed(4))
    assert torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])


def test_sample_pdf_concentrates_where_weights_are():
    bins = torch.linspace(0, 1, 11).reshape(1, 11)
    weights = torch.zeros(1, 10)
    weights[..., 7] = 1.0
    for generator in (None, torch.Generator().manual_seed(0)):
        s = sample_pdf(bins, weights, 50, generator)
        assert ((s >= 0.7) & (s <= 0.8)).float().mean() > 0.9


def test_density_is_averaged_raw_then_activated():
    """EG3D MipRayMarcher2: softplus(mean(raw) - 1), not mean(softplus(raw - 1)); the former order is an option."""
    depths = torch.tensor([2.0, 2.5]).reshape(1, 1, 2, 1)
    raw = torch.tensor([-4.0, 6.0]).reshape(1, 1, 2, 1)
    feats = torch.ones(1, 1, 2, 1)
    _, _, w_ref = composite(depths, raw, feats)
    _, _, w_old = composite(depths, raw, feats, "activate_then_mean")
    sp = torch.nn.functional.softplus
    assert torch.allclose(w_ref[0, 0, 0, 0], 1 - torch.exp(-sp(torch.tensor(1.0 - 1)) * 0.5))
    assert torch.allclose(w_old[0, 0, 0, 0], 1 - torch.exp(-(sp(torch.tensor(-5.0)) + sp(torch.tensor(5.0))) / 2 * 0.5))


def test_empty_ray_depth_is_the_far_end():
    """All weights zero: EG3D's 0/0 -> NaN -> +inf -> clamped to the largest sample depth."""
    depths = torch.linspace(2.0, 3.0, 5).reshape(1, 1, 5, 1)
    raw = torch.full((1, 1, 5, 1), -1e4)
    _, depth, weights = composite(depths, raw, torch.zeros(1, 1, 5, 3))
    assert weights.sum() == 0 and depth.item() == 3.0


def test_generator_reproduces_eg3d_draw_order():
    """A seeded generator gives the draws EG3D takes from the global RNG: rand_like(B,R,S,1) then rand(B*R, N)."""
    origins, dirs = _rays([0.1, 0.2])
    r = VolumeRenderer(2.0, 3.4, 8, 5)
    torch.manual_seed(11)
    jitter = torch.rand(1, 2, 8, 1)
    u = torch.rand(2, 5)
    seen = []
    r._evaluate = lambda field, o, d, depths, _f=r._evaluate: (seen.append(depths), _f(field, o, d, depths))[1]
    r.render_rays(ball, origins, dirs, torch.Generator().manual_seed(11))
    expected_coarse = torch.linspace(2.0, 3.4, 8).reshape(1, 1, 8, 1) + jitter * (1.4 / 7)
    assert torch.equal(seen[0], expected_coarse)
    assert seen[1].shape == (1, 2, 5, 1) and torch.isfinite(seen[1]).all()
    assert not torch.equal(seen[1][0, :, :, 0], u)  # u are CDF quantiles, mapped to depths


def _label(yaw, pitch=0.0, pivot=(0.0, 0.0, 0.2)):
    return torch.from_numpy(np.asarray(camera_label(yaw, pitch, pivot=pivot)))[None]


def test_front_camera_sits_on_plus_z_and_looks_at_pivot():
    label = _label(0)
    origins, dirs = rays_from_labels(label, 33)
    origin = origins[0, 0]
    assert origin[2] > 2.5 and abs(origin[0]) < 1e-5 and abs(origin[1]) < 1e-5
    centre = dirs[0, 16 * 33 + 16]
    to_pivot = torch.tensor([0.0, 0.0, 0.2]) - origin
    assert torch.allclose(centre, to_pivot / to_pivot.norm(), atol=1e-5)
    # image row 0 looks up (+y), the last column looks to +x (the subject's left, seen on the right)
    assert dirs[0, 16][1] > centre[1] + 1e-3
    assert dirs[0, 16 * 33 + 32][0] > centre[0] + 1e-3


def test_back_camera_yaw_180_sits_on_minus_z():
    for yaw in (180.0, -180.0):
        origins, dirs = rays_from_labels(_label(yaw), 33)
        origin = origins[0, 0]
        assert origin[2] < -2.0 and abs(origin[0]) < 1e-4
        centre = dirs[0, 16 * 33 + 16]
        assert centre[2] > 0.99  # looking towards +z, i.e. at the back of the head


def test_transmittance_gradient_is_torchs_without_asking_for_zeros(monkeypatch):
    """cumprod_positive: torch.cumprod's forward and gradient, bit for bit, on the renderer's own
    inputs (opaque samples give factors of exactly 1e-10), through `composite` as a whole too."""
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        x = torch.rand(2, 3, 17, 1, generator=g, dtype=dtype)
        x[0, 0, 5] = 1 - 1 + 1e-10                       # alpha == 1
        x.requires_grad_()
        up = torch.randn(2, 3, 17, 1, generator=g, dtype=dtype)
        ref, = torch.autograd.grad(torch.cumprod(x, -2), x, up)
        ours, = torch.autograd.grad(cumprod_positive(x, -2), x, up)
        assert torch.equal(cumprod_positive(x, -2), torch.cumprod(x, -2))
        assert torch.equal(ours, ref), (ours - ref).abs().max()
    depths = torch.linspace(2.0, 3.0, 12).reshape(1, 1, 12, 1).repeat(2, 5, 1, 1)
    density = (torch.randn(2, 5, 12, 1, generator=g) * 4).requires_grad_()
    density.data[0, 0] = 1e4                              # fully opaque samples
    features = torch.rand(2, 5, 12, 3, generator=g).requires_grad_()
    grads = []
    for cumprod in (cumprod_positive, torch.cumprod):
        monkeypatch.setattr(renderer, "cumprod_positive", cumprod)
        f, d, w = composite(depths, density, features)
        grads.append(torch.autograd.grad((f.sum() + w.square().sum()), (density, features)))
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    assert torch.isfinite(grads[0][0]).all()
