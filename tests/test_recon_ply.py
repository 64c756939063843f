"""3DGS .ply export round-trips through our numpy reader with the standard property layout."""
import numpy as np
import pytest
import torch

from balancehead.recon.gaussians import Gaussians
from balancehead.recon.ply import SH_C0, decode, encode, property_names, read_ply, read_table, write_ply


def _heads(n=7):
    g = torch.Generator().manual_seed(1)
    quats = torch.randn(n, 4, generator=g)
    return Gaussians(torch.randn(n, 3, generator=g), quats / quats.norm(dim=-1, keepdim=True),
                     0.01 + torch.rand(n, 3, generator=g), 0.05 + 0.9 * torch.rand(n, generator=g),
                     torch.rand(n, 3, generator=g))


def test_round_trip(tmp_path):
    g = _heads()
    write_ply(tmp_path / "head.ply", g)
    back = read_ply(tmp_path / "head.ply")
    for name in ("means", "quats", "scales", "opacities", "colors"):
        np.testing.assert_allclose(getattr(back, name).numpy(), getattr(g, name).numpy(), rtol=1e-5, atol=1e-6)


def test_standard_layout_and_stored_values():
    g = _heads(3)
    data = encode(g)
    header = data[:data.index(b"end_header")].decode()
    assert header.startswith("ply\nformat binary_little_endian 1.0\nelement vertex 3\n")
    table = read_table(data)
    assert list(table.dtype.names) == property_names(3) and len(property_names(3)) == 62  # 17 + 45 f_rest
    assert table.dtype["x"] == np.dtype("<f4")
    # The stored opacity is a logit, the scale a log, the colour an SH DC coefficient.
    np.testing.assert_allclose(1 / (1 + np.exp(-table["opacity"])), g.opacities.numpy(), rtol=1e-5)
    np.testing.assert_allclose(np.exp(table["scale_1"]), g.scales[:, 1].numpy(), rtol=1e-5)
    np.testing.assert_allclose(0.5 + SH_C0 * table["f_dc_2"], g.colors[:, 2].numpy(), rtol=1e-5, atol=1e-6)
    assert not table["f_rest_44"].any() and not table["nx"].any()


def test_degree_zero_and_ascii_reader():
    g = _heads(2)
    assert len(read_table(encode(g, sh_degree=0)).dtype.names) == 17
    names = property_names(0)
    table = read_table(encode(g, sh_degree=0))
    ascii_ply = ("ply\nformat ascii 1.0\nelement vertex 2\n" + "".join(f"property float {n}\n" for n in names)
                 + "end_header\n" + "".join(" ".join(repr(float(row[n])) for n in names) + "\n" for row in table))
    back = decode(ascii_ply.encode())
    np.testing.assert_allclose(back.means.numpy(), g.means.numpy(), rtol=1e-5)


def test_rejects_non_3dgs_files():
    with pytest.raises(ValueError, match="magic"):
        decode(b"hello")
    mesh = (b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
            b"property float z\nend_header\n" + np.zeros(3, "<f4").tobytes())
    with pytest.raises(ValueError, match="missing properties"):
        decode(mesh)
    with pytest.raises(ValueError, match="one head"):
        encode(Gaussians(*(t[None] for t in (_heads(2).means, _heads(2).quats, _heads(2).scales,
                                              _heads(2).opacities, _heads(2).colors))))


def test_a_reconstructed_head_renders_the_same_after_ply_round_trip(tmp_path):
    from balancehead.recon.config import TemplateConfig, preset
    from balancehead.recon.model import build_model
    from balancehead.recon.rasterize import turntable

    torch.manual_seed(0)
    model = build_model(preset("perchead_tiny", template=TemplateConfig(subdivisions=1)))
    with torch.no_grad():
        head = model(torch.rand(1, 3, 32, 32)).gaussians.select(0)
    write_ply(tmp_path / "head.ply", head)
    before = turntable(head, 4, 16, backend="torch")
    after = turntable(read_ply(tmp_path / "head.ply"), 4, 16, backend="torch")
    assert before.shape == (4, 3, 16, 16) and (before < 0.99).any(), "the head must be visible"
    assert (before[0] - before[2]).abs().max() > 1e-3, "front and back views differ"
    torch.testing.assert_close(after, before, atol=1e-4, rtol=0)
