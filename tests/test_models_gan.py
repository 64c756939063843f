"""Mapping/truncation, conditioning widths, discriminator label handling, camera adaptation,
any-resolution rendering, determinism and mesh extraction."""
import numpy as np
import pytest
import torch

from balancehead.camera import camera_label
from balancehead.models import (Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, drop_labels,
                                extract_mesh, shuffle_columns, shuffle_rows)
from balancehead.models.mesh import density_grid


def _z(n, seed=0, dim=32):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _cams(*yaws):
    return torch.from_numpy(np.stack([camera_label(y, 0.0) for y in yaws]))


@pytest.mark.parametrize("c_dim", [0, 25, 512, 537])
def test_mapping_accepts_any_label_width(c_dim):
    G = Generator(GeneratorConfig.tiny(c_dim=c_dim, n_coarse=4, n_importance=0))
    c = torch.randn(2, c_dim) if c_dim else None
    ws = G.map(_z(2), c)
    assert ws.shape == (2, G.synthesis.num_ws, 32)
    if c_dim:
        with pytest.raises(ValueError, match="label of width"):
            G.map(_z(2), torch.randn(2, c_dim + 1))


def test_truncation_towards_tracked_w_avg():
    G = Generator(GeneratorConfig.tiny(n_coarse=4, n_importance=0))
    c = _cams(0, 90, 180, 30)
    assert torch.count_nonzero(G.mapping.w_avg) == 0
    G.map(_z(4), c, update_w_avg=True)
    w_avg = G.mapping.w_avg.clone()
    assert torch.count_nonzero(w_avg) > 0
    ws0 = G.map(_z(4, seed=1), c, psi=0.0)
    assert torch.allclose(ws0, w_avg.expand_as(ws0))
    ws_half = G.map(_z(4, seed=1), c, psi=0.5)
    ws_one = G.map(_z(4, seed=1), c, psi=1.0)
    assert torch.allclose(ws_half, (ws_one + w_avg) / 2, atol=1e-5)


def test_same_seed_same_model_and_output():
    cfg = GeneratorConfig.tiny(n_coarse=4, n_importance=4)
    a, b = Generator(cfg), Generator(cfg)
    cam = _cams(45)
    assert torch.equal(a(_z(1), cam, cam).image, b(_z(1), cam, cam).image)
    c = Generator(GeneratorConfig.tiny(n_coarse=4, n_importance=4, seed=1))
    assert not torch.equal(a(_z(1), cam, cam).image, c(_z(1), cam, cam).image)


def test_random_noise_needs_explicit_generator():
    G = Generator(GeneratorConfig.tiny(n_coarse=4, n_importance=0))
    with pytest.raises(ValueError, match="torch.Generator"):
        G(_z(1), _cams(0), _cams(0), noise_mode="random")


def test_render_any_resolution_and_semantic_label():
    G = Generator(GeneratorConfig.tiny(c_dim=512, n_coarse=4, n_importance=4))
    c = torch.randn(3, 512, generator=torch.Generator().manual_seed(3))
    out = G(_z(3), c, _cams(0, 120, -120), neural_resolution=8)
    assert out.image.shape == (3, 3, 32, 32) and out.depth.shape == (3, 1, 8, 8)  # SR resizes to its input first (EG3D)
    out = G(_z(3), c, _cams(0, 120, -120), output_resolution=24)
    assert out.image.shape == (3, 3, 24, 24) and out.mask.shape == (3, 1, 24, 24)


def test_camera_adaptation_moves_only_the_translation():
    G = Generator(GeneratorConfig.tiny(n_coarse=4, n_importance=0))
    cam = _cams(0, 90)
    out = G(_z(2), cam, cam)
    assert (out.camera_delta_norm > 0).all()
    moved = out.camera.reshape(2, -1)
    assert torch.equal(moved[:, 16:], cam[:, 16:])
    rot = moved[:, :16].reshape(2, 4, 4)
    assert torch.equal(rot[:, :3, :3], cam[:, :16].reshape(2, 4, 4)[:, :3, :3])
    delta = rot[:, :3, 3] - cam[:, :16].reshape(2, 4, 4)[:, :3, 3]
    assert torch.allclose(delta.norm(dim=1), out.camera_delta_norm, atol=1e-6)
    off = G(_z(2), cam, cam, adapt_camera=False)
    assert torch.count_nonzero(off.camera_delta_norm) == 0


@pytest.mark.parametrize("kind", ["panohead", "mlp"])
def test_both_camera_adapters_move_only_the_translation(kind):
    G = Generator(GeneratorConfig.tiny(n_coarse=4, n_importance=0, camera_adapt_kind=kind))
    cam = _cams(0, 90)
    out = G(_z(2), cam, cam)
    changed = (out.camera != cam).any(dim=0).nonzero().flatten().tolist()
    assert changed and set(changed) <= {3, 7, 11}


def test_former_project_variants_stay_available():
    """The project's former choices are named options next to the EG3D / PanoHead defaults."""
    cfg = GeneratorConfig.tiny(n_coarse=4, n_importance=4, density_order="activate_then_mean",
                               background_kind="own_mapping", camera_adapt_kind="mlp")
    out = Generator(cfg)(_z(2), _cams(0, 180), _cams(0, 180))
    ref = Generator(GeneratorConfig.tiny(n_coarse=4, n_importance=4))(_z(2), _cams(0, 180), _cams(0, 180))
    assert torch.isfinite(out.image).all() and out.image.shape == ref.image.shape
    with pytest.raises(ValueError, match="density_order"):
        GeneratorConfig.tiny(density_order="nope")


def test_background_composition():
    from balancehead.models.background import compose

    fg, bg = torch.full((1, 3, 2, 2), 0.25), torch.full((1, 3, 2, 2), 0.8)
    mask = torch.tensor([0.0, 0.5, 1.0, 0.25]).reshape(1, 1, 2, 2)
    assert torch.allclose(compose(fg * mask, mask, bg), (1 - mask) * bg + fg * mask)


def _images(seed, n=4, res=32):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(n, 3, res, res, generator=g), "image_raw": torch.randn(n, 3, res // 2, res // 2, generator=g),
            "mask": torch.rand(n, 1, res, res, generator=g)}


def test_discriminator_uses_the_label_it_is_given():
    D = Discriminator(DiscriminatorConfig.tiny(c_dim=537, mode="tri"))
    imgs = _images(0)
    c = torch.randn(4, 537, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    shuffled = shuffle_columns(c, 0, 25, g)
    assert torch.equal(shuffled[:, 25:], c[:, 25:]) and not torch.equal(shuffled[:, :25], c[:, :25])
    assert sorted(shuffled[:, 0].tolist()) == sorted(c[:, 0].tolist())
    assert not torch.allclose(D(imgs, c), D(imgs, shuffled))
    assert torch.equal(D(imgs, c), D(imgs, c.clone()))
    with pytest.raises(ValueError, match="label of width"):
        D(imgs, c[:, :25])


def test_label_dropout_and_shuffle_are_seeded():
    c = torch.arange(40.0).reshape(20, 2) + 1
    a = drop_labels(c, 0.5, torch.Generator().manual_seed(0))
    b = drop_labels(c, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    dropped = (a == 0).all(dim=1)
    assert 0 < dropped.sum() < 20 and torch.equal(a[~dropped], c[~dropped])
    assert torch.equal(shuffle_rows(c, torch.Generator().manual_seed(5)), shuffle_rows(c, torch.Generator().manual_seed(5)))


def test_tri_discriminator_sees_the_mask_and_dual_does_not():
    imgs, other = _images(0), _images(0)
    other["mask"] = 1 - other["mask"]
    c = torch.randn(4, 25)
    tri, dual = Discriminator(DiscriminatorConfig.tiny()), Discriminator(DiscriminatorConfig.tiny(mode="dual"))
    assert not torch.allclose(tri(imgs, c), tri(other, c))
    assert torch.equal(dual(imgs, c), dual(other, c))


def test_r1_double_backward_through_discriminator():
    D = Discriminator(DiscriminatorConfig.tiny())
    imgs = {k: v.requires_grad_(True) for k, v in _images(3).items()}
    logits = D(imgs, torch.randn(4, 25))
    grads = torch.autograd.grad(logits.sum(), [imgs["image"], imgs["image_raw"]], create_graph=True)
    penalty = sum(g.square().sum() for g in grads)
    penalty.backward()
    assert torch.isfinite(penalty) and penalty > 0
    # every conv weight shapes the input gradient, so R1 must reach it (biases after the last
    # nonlinearity legitimately do not)
    for name, p in D.named_parameters():
        if name.startswith("blocks") and name.endswith("weight"):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_mesh_extraction_writes_ply_and_obj(tmp_path):
    G = Generator(GeneratorConfig.tiny(n_coarse=4, n_importance=0))
    ws = G.map(_z(1), _cams(0))
    sigma = density_grid(G, ws, resolution=24)
    level = float((sigma.min() + sigma.max()) / 2)
    verts, faces = extract_mesh(G, ws, tmp_path / "head.ply", resolution=24, level=level)
    assert len(verts) > 0 and len(faces) > 0 and np.abs(verts).max() <= G.cfg.box_warp / 2 + 1e-6
    text = (tmp_path / "head.ply").read_text()
    assert text.startswith("ply\n") and f"element vertex {len(verts)}" in text
    extract_mesh(G, ws, tmp_path / "head.obj", resolution=24, level=level)
    lines = (tmp_path / "head.obj").read_text().splitlines()
    assert sum(line.startswith("v ") for line in lines) == len(verts)
    assert sum(line.startswith("f ") for line in lines) == len(faces)


def test_compiled_rendering_is_the_same_generator():
    """compile_rendering (train.distributed.compile: rendering): the decoder and the ray march compiled
    in place; images, gradients and parameter names are the eager generator's (to float rounding)."""
    cfg = GeneratorConfig.tiny(n_coarse=6, n_importance=6)
    eager, compiled = Generator(cfg), Generator(cfg).compile_rendering()
    assert list(eager.state_dict()) == list(compiled.state_dict())
    z, cams = _z(2), _cams(0, 120)
    outs = []
    for G in (eager, compiled):
        out = G(z, cams, cams, generator=torch.Generator().manual_seed(3))
        loss = out.image.square().mean() + out.depth.mean()
        params = [G.decoder.hidden.weight, next(G.synthesis.parameters())]
        outs.append((out.image, out.depth, *torch.autograd.grad(loss, params)))
    assert compiled.renderer.composite is not eager.renderer.composite
    for a, b in zip(*outs):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (a - b).abs().max()


def test_decoder_softplus_keeps_only_its_output():
    """The decoder's hidden softplus differentiates through its output (-expm1(-y) = sigmoid(x)): the
    gradients are torch's softplus's to float rounding, over the whole range (the threshold at 20, far
    negative inputs), and its input is no longer saved for the backward."""
    from balancehead.models.decoder import DecoderMLP, _SoftplusKeepOutput

    x = torch.cat([torch.linspace(-40, 40, 801), torch.randn(200) * 3]).requires_grad_()
    up = torch.randn(x.shape)
    ours, = torch.autograd.grad(_SoftplusKeepOutput.apply(x), x, up)
    ref, = torch.autograd.grad(torch.nn.functional.softplus(x), x, up)
    assert torch.allclose(ours, ref, rtol=1e-6, atol=1e-12)
    dec = DecoderMLP(8, 4, torch.Generator().manual_seed(0))
    feats = torch.randn(2, 50, 8, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        density, colour = dec(feats)
    hidden = dec.hidden(feats.reshape(100, 8))
    assert not any(t.shape == hidden.shape and torch.equal(t, hidden) for t in saved)   # pre-activation not kept
    (density.sum() + colour.square().sum()).backward()
    g_ours = feats.grad.clone()
    feats.grad = None
    x = torch.nn.functional.softplus(dec.hidden(feats.reshape(100, 8)))
    out = dec.out(x).reshape(2, 50, -1)
    (out[..., :1].sum() + (torch.sigmoid(out[..., 1:]) * (1 + 2 * 0.001) - 0.001).square().sum()).backward()
    assert torch.allclose(g_ours, feats.grad, rtol=1e-5, atol=1e-7)
