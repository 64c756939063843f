"""Every representation: forward + backward at tiny sizes with gradients reaching every
parameter; and the geometry of each sampling scheme."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from balancehead.camera import camera_label
from balancehead.models import REPRESENTATIONS, Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from balancehead.models.representations import TriGrid, TriPlane


def _cams(*yaws):
    return torch.from_numpy(np.stack([camera_label(y, 5.0) for y in yaws]))


@pytest.mark.parametrize("rep", REPRESENTATIONS)
@pytest.mark.parametrize("mode", ["tri", "dual", "mask"])
def test_train_step_reaches_every_parameter(rep, mode):
    G = Generator(GeneratorConfig.tiny(representation=rep, n_coarse=6, n_importance=6))
    D = Discriminator(DiscriminatorConfig.tiny(mode=mode))
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    cam = _cams(0, 180)
    out = G(z, cam, cam, generator=torch.Generator().manual_seed(1), noise_mode="random")
    assert out.image.shape == (2, 3, 32, 32) and out.image_raw.shape == (2, 3, 16, 16)
    assert out.mask.shape == (2, 1, 32, 32) and out.depth.shape == (2, 1, 16, 16)
    assert torch.isfinite(out.image).all() and (out.mask_raw >= 0).all() and (out.mask_raw <= 1 + 1e-5).all()
    loss = torch.nn.functional.softplus(-D(out.as_discriminator_input(), cam)).mean() + out.camera_delta_norm.mean()
    loss.backward()
    for name, p in list(G.named_parameters()) + list(D.named_parameters()):
        if name.startswith("superres.") and name.endswith("noise_strength"):  # EG3D: SR noise mode "none"
            assert p.grad is None, name
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_triplane_uses_eg3d_plane_axes():
    """EG3D generate_planes: the planes are read at (x, y), (x, z) and (z, x)."""
    planes = torch.randn(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    points = torch.rand(1, 30, 3, generator=torch.Generator().manual_seed(1)) - 0.5
    q = points * 2
    x, y, z = q.unbind(-1)
    ref = 0
    for i, uv in enumerate((torch.stack([x, y], -1), torch.stack([x, z], -1), torch.stack([z, x], -1))):
        ref = ref + F.grid_sample(planes[:, i], uv[:, None], align_corners=False)[:, :, 0].permute(0, 2, 1)
    assert torch.allclose(TriPlane(4, 8, 1.0).features(planes, points), ref / 3, atol=1e-6)


@pytest.mark.parametrize("depth", [1, 3])
def test_trigrid_is_panohead_3d_grid_sample(depth):
    """PanoHead: planes viewed (3, C, D, H, W), 3-D grid_sample at (x, y, z), (x, z, y), (y, z, x), zero padding."""
    planes = torch.randn(2, 3, 4 * depth, 8, 8, generator=torch.Generator().manual_seed(0))
    points = (torch.rand(2, 40, 3, generator=torch.Generator().manual_seed(1)) - 0.5) * 1.1  # some outside the box
    q = points * 2
    x, y, z = q.unbind(-1)
    vol = planes.reshape(2, 3, 4, depth, 8, 8)
    ref = 0
    for i, g in enumerate((torch.stack([x, y, z], -1), torch.stack([x, z, y], -1), torch.stack([y, z, x], -1))):
        ref = ref + F.grid_sample(vol[:, i], g[:, None, None], align_corners=False)[:, :, 0, 0].permute(0, 2, 1)
    assert torch.allclose(TriGrid(4, 8, 1.0, depth=depth).features(planes, points), ref / 3, atol=1e-5)


def test_trigrid_separates_front_and_back():
    """Tri-plane: points mirrored through the XY plane share the XY feature; tri-grid: they don't."""
    g = torch.Generator().manual_seed(2)
    rep = TriGrid(4, 8, 1.0, depth=3)
    planes = torch.zeros(1, 3, 12, 8, 8)
    planes[:, 0] = torch.randn(1, 12, 8, 8, generator=g)  # XY plane (C=4 x D=3 slices) only
    front, back = torch.tensor([[[0.1, 0.1, 0.4]]]), torch.tensor([[[0.1, 0.1, -0.4]]])
    assert not torch.allclose(rep.features(planes, front), rep.features(planes, back))
    tri = TriPlane(4, 8, 1.0)
    tri_planes = torch.zeros(1, 3, 4, 8, 8)
    tri_planes[:, 0] = planes[:, 0, ::3]
    assert torch.allclose(tri.features(tri_planes, front), tri.features(tri_planes, back))


# Hy-plane and spherical tri-plane geometry: tests/test_golden_sampling.py (against the official code).
