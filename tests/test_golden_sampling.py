"""Hy-plane and spherical tri-plane sampling against the official HyPlaneHead / SphereHead code.

Golden numbers: scripts/golden/make_sampling_golden.py (official checkouts -> tests/data/golden/sampling.safetensors).
"""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from balancehead.models.hyplane import HyPlane, hyplane_uv
from balancehead.models.representations import sample_planes
from balancehead.models.sphere import SphericalTriPlane, rotate_a, rotate_b, sample_system

GOLDEN = Path(__file__).parent / "data" / "golden" / "sampling.safetensors"
TOL = dict(atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def golden():
    return load_file(str(GOLDEN))


def _shape(t):
    return t.shape[-3], t.shape[-1]  # channels, plane resolution


def test_hyplane_unify_split_matches_official_flatten(golden):
    unified = golden["hyplane_unified"][:, 0]        # (B, C, 2R, 2R): one synthesis map
    c, r = unified.shape[1], unified.shape[-1] // 2
    rep = HyPlane(c, r, 1.0, unify_split=True)
    assert (rep.synthesis_channels, rep.synthesis_resolution) == (c, 2 * r)
    planes = rep.planes(unified)
    per_plane = sample_planes(planes, hyplane_uv(rep.normalise(golden["points"])))   # (B, 4, N, C)
    torch.testing.assert_close(per_plane, golden["hyplane_unified_out"], **TOL)
    torch.testing.assert_close(rep.features(planes, golden["points"]), golden["hyplane_unified_out"].mean(1), **TOL)


def test_hyplane_channel_split_matches_official(golden):
    split = golden["hyplane_split"]                  # (B, 4, C, R, R)
    c, r = _shape(split)
    rep = HyPlane(c, r, 1.0, unify_split=False)
    assert (rep.synthesis_channels, rep.synthesis_resolution) == (4 * c, r)
    planes = rep.planes(split.reshape(split.shape[0], 4 * c, r, r))
    torch.testing.assert_close(rep.features(planes, golden["points"]), golden["hyplane_split_out"].mean(1), **TOL)


def test_sphere_single_matches_official(golden):
    single = golden["sphere_single"]                 # (B, 3, C, R, R)
    c, r = _shape(single)
    rep = SphericalTriPlane(c, r, 1.0, dual=False)
    planes = rep.planes(single.reshape(single.shape[0], 3 * c, r, r))
    torch.testing.assert_close(rep.features(planes, golden["points"]), golden["sphere_single_out"].mean(1), **TOL)
    torch.testing.assert_close(sample_system(planes.a, rotate_a(rep.normalise(golden["points"])))[0],
                               golden["sphere_single_out"], **TOL)


@pytest.mark.parametrize("system", ["a", "b", "both"])
def test_sphere_dual_matches_official(golden, system):
    dual = golden["sphere_dual"]                     # (B, 2, 3, C, R, R): systems A, B
    c, r = _shape(dual)
    rep = SphericalTriPlane(c, r, 1.0, dual=True)
    planes = rep.planes(dual.reshape(dual.shape[0], 6 * c, r, r), system=system)
    want = golden[f"sphere_dual_{system}_out"]
    torch.testing.assert_close(rep.features(planes, golden["points"]), want.mean(1), **TOL)
    if system != "both":
        rotate = rotate_a if system == "a" else rotate_b
        torch.testing.assert_close(sample_system(getattr(planes, system), rotate(rep.normalise(golden["points"])))[0],
                                   want, **TOL)


def test_hyplane_is_continuous_across_the_back_of_the_head():
    """Points just either side of azimuth ±180° (x = ±eps behind the head) get nearly the same feature;
    a cylindrical/theta-phi strip would read opposite edges of the map there."""
    g = torch.Generator().manual_seed(3)
    r = 16
    rep = HyPlane(6, r, 1.0, unify_split=True)
    planes = rep.planes(torch.randn(1, 6, 2 * r, 2 * r, generator=g))
    ys = torch.linspace(-0.35, 0.35, 15)
    depths = torch.linspace(-0.45, -0.1, 8)
    y, z = torch.meshgrid(ys, depths, indexing="ij")
    eps = 1e-4
    left = torch.stack([torch.full_like(y, eps), y, z], -1).reshape(1, -1, 3)
    right = torch.stack([torch.full_like(y, -eps), y, z], -1).reshape(1, -1, 3)
    gap = (rep.features(planes, left) - rep.features(planes, right)).abs().max()
    # bilinear look-ups move by at most ~ eps * (map size) * (Lipschitz factor of the warp) texels
    assert gap < 0.05
    # ...while the sphere quadrant alone is not constant there (the test can fail)
    far = torch.stack([torch.full_like(y, 0.2), y, z], -1).reshape(1, -1, 3)
    assert (rep.features(planes, left) - rep.features(planes, far)).abs().max() > 0.1


def test_hyplane_quadrants_are_the_planes():
    r = 4
    rep = HyPlane(2, r, 1.0, unify_split=True)
    image = torch.zeros(1, 2, 2 * r, 2 * r)
    for k, (rows, cols) in enumerate([(slice(0, r), slice(0, r)), (slice(0, r), slice(r, None)),
                                      (slice(r, None), slice(0, r)), (slice(r, None), slice(r, None))]):
        image[:, :, rows, cols] = 10.0 ** k
    planes = rep.planes(image)
    assert planes.shape == (1, 4, 2, r, r)
    assert [float(planes[0, k].unique()) for k in range(4)] == [1.0, 10.0, 100.0, 1000.0]
    feats = rep.features(planes, torch.tensor([[[0.1, 0.05, 0.2]]]))
    assert torch.allclose(feats, torch.full((1, 1, 2), 1111.0 / 4), atol=1e-3)


def test_hyplane_sphere_projection_is_equal_area():
    """Uniform directions land uniformly on the disc (Lambert azimuthal is equal-area): equal-area rings
    and sectors of the disc receive equal shares."""
    from balancehead.models.hyplane import crown_disc
    d = torch.randn(200000, 3, generator=torch.Generator().manual_seed(5))
    u, v = crown_disc(0.4 * d / d.norm(dim=1, keepdim=True))
    rho2, ang = (u.square() + v.square()), torch.atan2(v, u)
    assert rho2.max() <= 1 + 1e-6
    rings = torch.histc(rho2, bins=4, min=0, max=1)
    sectors = torch.histc(ang, bins=6, min=-torch.pi, max=torch.pi)
    assert rings.min() / rings.max() > 0.97 and sectors.min() / sectors.max() > 0.97
    # the crown (+y) is the disc's centre, the face (+z) is at the top of the map (v = -1 side)
    cu, cv = crown_disc(torch.tensor([[0.0, 0.3, 0.0], [0.0, 0.0, 0.3]]))
    assert abs(cu[0]) < 1e-6 and abs(cv[0]) < 1e-6 and cv[1] < -0.7


def test_sphere_dual_system_choice_is_seeded_and_follows_the_probabilities():
    def draws(seed, n=400):
        rep = SphericalTriPlane(2, 4, 1.0, dual=True, prob_a=0.2, prob_b=0.3, seed=seed).train()
        image = torch.zeros(1, 12, 4, 4)
        return [rep.planes(image).system for _ in range(n)]
    a, b = draws(7), draws(7)
    assert a == b and draws(8) != a
    share = {s: a.count(s) / len(a) for s in ("a", "b", "both")}
    assert abs(share["a"] - 0.2) < 0.06 and abs(share["b"] - 0.3) < 0.06 and abs(share["both"] - 0.5) < 0.07
    ev = SphericalTriPlane(2, 4, 1.0, dual=True, prob_a=0.5, prob_b=0.5, seed=0).eval()
    assert {ev.planes(torch.zeros(1, 12, 4, 4)).system for _ in range(20)} == {"both"}
    with pytest.raises(ValueError):
        SphericalTriPlane(2, 4, 1.0, dual=True, prob_a=0.7, prob_b=0.5)


def test_sphere_systems_poles_and_seams():
    """A's poles are on ±x, B's on ±y; each system's weight vanishes on its poles and seam, so the fusion
    reads B alone on A's seam (behind the head, y = 0) and A alone on B's seam (in front, x = 0)."""
    from balancehead.models.sphere import spherical_coords, system_weight
    ear, crown = torch.tensor([[0.4, 0.0, 0.0]]), torch.tensor([[0.0, 0.4, 0.0]])
    assert abs(float(spherical_coords(rotate_a(ear))[0].abs()) - 1) < 1e-6
    assert abs(float(spherical_coords(rotate_b(crown))[0].abs()) - 1) < 1e-6
    rep = SphericalTriPlane(2, 8, 1.0, dual=True)
    planes = torch.zeros(1, 12, 8, 8)
    planes[:, :6] = 1.0   # system A
    planes[:, 6:] = 5.0   # system B
    p = rep.eval().planes(planes)
    back = torch.tensor([[[0.05, 0.0, -0.3]]])    # on A's seam
    front = torch.tensor([[[0.0, 0.05, 0.3]]])    # on B's seam
    assert torch.allclose(rep.features(p, back), torch.full((1, 1, 2), 5.0), atol=1e-4)
    assert torch.allclose(rep.features(p, front), torch.full((1, 1, 2), 1.0), atol=1e-4)
    assert float(system_weight(*spherical_coords(rotate_a(back))[:2])) < 1e-6


def test_sphere_heads_match_spherehead_conva_convb(golden):
    """SphereHead's generator cuts each system's planes out of one backbone map with its own 1x1 head."""
    x = golden["sphere_head_in"]
    c = golden["sphere_head_a_out"].shape[1] // 3
    rep = SphericalTriPlane(c, x.shape[-1], 1.0, dual=True, head_channels=x.shape[1])
    assert rep.synthesis_channels == x.shape[1]
    with torch.no_grad():
        for name in ("a", "b"):
            head = getattr(rep, f"head_{name}")
            head[0].weight.copy_(golden[f"sphere_head_{name}_0"])
            head[1].weight.copy_(golden[f"sphere_head_{name}_1"])
    planes = rep.planes(x, system="both")
    for name in ("a", "b"):
        want = golden[f"sphere_head_{name}_out"].reshape(x.shape[0], 3, c, *x.shape[2:])
        torch.testing.assert_close(getattr(planes, name), want, **TOL)
    only_a = rep.planes(x, system="a")
    assert only_a.b is None and torch.equal(only_a.a, planes.a)
