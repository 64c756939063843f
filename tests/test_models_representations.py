"""Every representation: forward + backward at tiny sizes with gradients reaching every
parameter; and the geometry of each sampling scheme."""

import numpy as np
import pytest
import torch

from balancehead.camera import camera_label
from balancehead.models import REPRESENTATIONS, Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from balancehead.models.representations import TriGrid, TriPlane


def _cams(*yaws):
    return torch.from_numpy(np.stack([camera_label(y, 5.0) for y in yaws]))


@pytest.mark.parametrize("rep", REPRESENTATIONS)
@pytest.mark.parametrize("mode", ["tri", "dual"])
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
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_trigrid_with_depth_one_is_a_triplane():
    planes = torch.randn(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    points = torch.rand(2, 50, 3, generator=torch.Generator().manual_seed(1)) - 0.5
    a = TriPlane(4, 8, 1.0).features(planes, points)
    b = TriGrid(4, 8, 1.0, depth=1).features(planes, points)
    assert torch.allclose(a, b, atol=1e-6)


def test_trigrid_separates_front_and_back():
    """Tri-plane: points mirrored through the XY plane share the XY feature; tri-grid: they don't."""
    g = torch.Generator().manual_seed(2)
    rep = TriGrid(4, 8, 1.0, depth=3)
    planes = torch.zeros(1, 9, 4, 8, 8)
    planes[:, 0:3] = torch.randn(1, 3, 4, 8, 8, generator=g)  # XY slices only
    front, back = torch.tensor([[[0.1, 0.1, 0.4]]]), torch.tensor([[[0.1, 0.1, -0.4]]])
    assert not torch.allclose(rep.features(planes, front), rep.features(planes, back))
    tri = TriPlane(4, 8, 1.0)
    tri_planes = torch.zeros(1, 3, 4, 8, 8)
    tri_planes[:, 0] = planes[:, 0]
    assert torch.allclose(tri.features(tri_planes, front), tri.features(tri_planes, back))


# Hy-plane and spherical tri-plane geometry: tests/test_golden_sampling.py (against the official code).
