"""Reconstructor building blocks: configs, template + densification, encoders (tiny and DINOv2 by path),
both architectures' outputs, SHP-CNN, losses."""
import dataclasses

import numpy as np
import pytest
import torch

from balancehead.camera import camera_label
from balancehead.recon.config import (EncoderConfig, PatchesConfig, PointsConfig, ReconConfig, TemplateConfig,
                                      TransformerConfig, panolam, perchead, preset)
from balancehead.recon.encoder import ImageEncoder
from balancehead.recon.losses import dinov2_features, feature_loss, psnr, reconstruction_loss, ssim
from balancehead.recon.model import PanoLAM, PercHead, SharpenCNN, build_model, positional_encoding
from balancehead.recon.template import (Template, densify, load_template, morton_order, patch_anchors,
                                        world_head_template)


def _small(name, **kw):
    cfg = preset(name, template=TemplateConfig(subdivisions=2), **kw)
    if cfg.points is not None:
        return dataclasses.replace(cfg, points=dataclasses.replace(cfg.points, max_points=400))
    return dataclasses.replace(cfg, patches=dataclasses.replace(cfg.patches, patches=16))


def test_paper_presets_carry_the_papers_numbers():
    p = panolam()
    assert (p.transformer.depth, p.transformer.heads, p.transformer.width) == (8, 16, 512)
    assert p.encoder.layers == (5, 12, 18, 24) and p.views == 6
    assert (p.points.offset_coarse, p.points.offset_dense, p.points.densify_area, p.points.max_points) == \
        (0.15, 0.056, 2e-6, 10_000)
    assert (p.triplane.resolution, p.triplane.cameras, p.triplane.ray_samples) == (64, 4, 32)
    assert (p.loss.l1, p.loss.lpips, p.loss.gaussians, p.loss.triplane_rgb, p.loss.mask, p.loss.triplane_feature) == \
        (1.0, 1.0, 1.0, 0.1, 1.0, 1e-4)
    h = perchead()
    assert h.encoder.layers == (9, 19, 29, 39) and (h.encoder.aux_depth, h.encoder.aux_width) == (2, 128)
    assert (h.transformer.depth, h.transformer.width, h.transformer.heads) == (10, 1024, 16)
    assert (h.patches.patches, h.patches.per_patch) == (4096, 16) and h.sharpen is not None
    assert h.loss.perceptual_layers == (8, 11) and h.loss.l1 == 0


def test_config_validation_names_the_problem():
    enc = EncoderConfig()
    with pytest.raises(ValueError, match="exactly one"):
        ReconConfig("x", enc, TransformerConfig())
    with pytest.raises(ValueError, match="exactly one"):
        ReconConfig("x", enc, TransformerConfig(), points=PointsConfig(), patches=PatchesConfig())
    with pytest.raises(ValueError, match="weights path"):
        EncoderConfig(kind="dinov2")
    with pytest.raises(ValueError, match="layers"):
        EncoderConfig(layers=(3,), depth=2)
    with pytest.raises(ValueError, match="loss weights"):
        dataclasses.replace(preset("panolam_tiny"), loss=dataclasses.replace(preset("panolam_tiny").loss, l1=float("nan")))
    with pytest.raises(ValueError, match="preset"):
        preset("lam")


def test_world_template_is_a_closed_head_around_the_pivot():
    t = world_head_template(2)
    assert t.vertices.shape == (162, 3) and t.faces.shape == (320, 3)
    centre = t.vertices.mean(0)
    assert np.all(np.abs(centre - [0, 0, 0.2]) < 0.12)
    height = np.ptp(t.vertices[:, 1])
    assert 0.3 < height < 0.8 and np.ptp(t.vertices[:, 0]) < height  # taller (neck) than wide


def test_template_files(tmp_path):
    t = world_head_template(1)
    np.savez(tmp_path / "flame.npz", v_template=t.vertices, f=t.faces)
    back = load_template(tmp_path / "flame.npz")
    np.testing.assert_array_equal(back.faces, t.faces)
    obj = "".join(f"v {x} {y} {z}\n" for x, y, z in t.vertices) + "f 1/1/1 2/2/2 3/3/3 4/4/4\n"
    quad = load_template(_write(tmp_path / "m.obj", obj))
    assert quad.faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    with pytest.raises(ValueError, match="'faces'"):
        np.savez(tmp_path / "bad.npz", vertices=t.vertices)
        load_template(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="faces must be"):
        Template(t.vertices, t.faces + 1000)


def _write(path, text):
    path.write_text(text)
    return path


def test_densification_is_barycentric_and_follows_deformation():
    t = world_head_template(2)
    plan = densify(t, area=1e-4, max_points=600)
    assert 0 < len(plan) <= 600 - 162
    assert torch.allclose(plan.weights.sum(1), torch.ones(len(plan)))
    verts = torch.from_numpy(t.vertices)[None]
    dense = plan.apply(verts)[0]
    assert len(torch.unique(dense.round(decimals=6), dim=0)) == len(dense), "no duplicated points"
    # Moving the template moves every new point with the same weights (PanoLAM: p' = sum w_i p_i).
    moved = verts + 0.01 * torch.randn_like(verts)
    expect = (moved[0][plan.index] * plan.weights[..., None]).sum(1)
    torch.testing.assert_close(plan.apply(moved)[0, 162:], expect)
    # A cap below the natural count raises the area threshold instead of overflowing.
    assert len(densify(t, area=2e-5, max_points=300)) <= 300 - 162


def test_patch_anchors_are_local_groups():
    t = world_head_template(2)
    anchors = patch_anchors(t, 32, 16)
    assert anchors.shape == (32, 16, 3)
    spread = np.linalg.norm(anchors - anchors.mean(1, keepdims=True), axis=-1).mean()
    overall = np.linalg.norm(anchors.reshape(-1, 3) - anchors.reshape(-1, 3).mean(0), axis=-1).mean()
    assert spread < 0.4 * overall
    assert sorted(morton_order(np.eye(3))) == [0, 1, 2]


@pytest.mark.parametrize("name", ["panolam_tiny", "perchead_tiny"])
def test_tiny_models_output_valid_bounded_gaussians(name):
    cfg = _small(name)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model, PanoLAM if name.startswith("pano") else PercHead)
    out = model(torch.rand(2, 3, 40, 40))
    g = out.gaussians
    assert g.means.shape == (2, model.num_gaussians, 3) and torch.isfinite(g.means).all()
    assert (g.opacities > 0).all() and (g.opacities < 1).all() and (g.colors >= 0).all() and (g.colors <= 1).all()
    torch.testing.assert_close(g.quats.norm(dim=-1), torch.ones(2, model.num_gaussians))
    if cfg.points is not None:
        assert out.coarse.means.shape == (2, 162, 3) and out.planes.shape[1:3] == (6, cfg.triplane.channels)
        offset = (out.coarse.means - model.vertices).abs()
        assert (offset <= cfg.points.offset_coarse + 1e-6).all() and (g.scales < cfg.points.scale_max).all()
    else:
        assert ((g.means - model.anchors.reshape(1, -1, 3)).abs() <= cfg.patches.max_offset + 1e-6).all()
    # Gradients reach the trainable parts but not the frozen encoder backbone.
    out.gaussians.colors.mean().backward()
    assert all(p.grad is None for p in model.encoder.backbone.parameters())
    assert model.encoder.fuse[0].weight.grad is not None


def test_dinov2_encoder_by_path_without_download(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                             image_size=28, patch_size=14)).save_pretrained(tmp_path / "dino")
    assert (tmp_path / "dino" / "model.safetensors").exists()
    enc_cfg = EncoderConfig(kind="dinov2", weights=str(tmp_path / "dino"), layers=(1, 3), image_size=28, patch_size=14)
    enc = ImageEncoder(enc_cfg, width=16)
    tokens = enc(torch.rand(2, 3, 50, 50))
    assert tokens.shape == (2, 4, 16)  # (28 / 14)^2 patches
    cfg = dataclasses.replace(_small("perchead_tiny"), encoder=dataclasses.replace(enc_cfg, aux_width=8, aux_depth=1))
    out = build_model(cfg)(torch.rand(1, 3, 28, 28))
    assert torch.isfinite(out.gaussians.means).all()
    # The same model serves as PercHead's perceptual feature extractor.
    extract = dinov2_features(enc.backbone, (1, 3))
    x = torch.rand(1, 3, 28, 28)
    assert feature_loss(extract, x, x).item() < 1e-10 and feature_loss(extract, x, x.flip(-1)).item() > 0


def test_sharpen_cnn_starts_as_identity_and_positional_encoding_shape():
    cnn = SharpenCNN(perchead().sharpen)
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(cnn(x), x)
    assert positional_encoding(torch.zeros(5, 3), 4).shape == (5, 27)


def test_losses():
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    assert (ssim(x, x.flip(-1)) < 0.5).all() and psnr(x, x + 0.1).allclose(torch.tensor(20.0), atol=1e-3)
    cfg = _small("panolam_tiny")
    model = build_model(cfg)
    out = model(torch.rand(1, 3, 32, 32))
    cams = torch.from_numpy(np.stack([camera_label(0, 0), camera_label(180, 0)]))[None]
    target, mask = torch.rand(1, 2, 3, 12, 12), torch.ones(1, 2, 1, 12, 12)
    total, terms = reconstruction_loss(cfg.loss, out, target, mask, cams, 12, backend="torch")
    assert {"l1", "ssim", "mask", "coarse_l1"} <= set(terms) and terms["render"].shape == (1, 2, 3, 12, 12)
    total.backward()
    assert model.dense_head.net[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="perceptual"):
        reconstruction_loss(dataclasses.replace(cfg.loss, perceptual=1.0), out, target, mask, cams, 12, backend="torch")


def test_foreground_patches_and_depth_term():
    cfg = _small("perchead_tiny")
    torch.manual_seed(0)
    model = build_model(cfg)
    mask = torch.zeros(2, 1, 32, 32)
    mask[0, :, :16, :16] = 1  # image 0: only the top-left patch quadrant is foreground; image 1: none
    keep = model.encoder.foreground(mask)
    assert keep.shape == (2, 16) and keep[0].sum() == 4 and keep[1].all()
    # Dropped patches are invisible to the decoder's cross-attention (the frozen ViT still mixes them in).
    block = model.blocks[0]
    x, context = torch.randn(2, 5, 64), torch.randn(2, 16, 64)
    changed = context.clone()
    changed[0, ~keep[0]] += 3.0
    torch.testing.assert_close(block(x, context, keep)[0], block(x, changed, keep)[0])
    assert not torch.allclose(block(x, context)[0], block(x, changed)[0])
    images = torch.rand(2, 3, 32, 32)
    assert torch.isfinite(model(images, mask).gaussians.colors).all()
    # Depth supervision: rendered camera-z against a target inside the mask.
    w = dataclasses.replace(cfg.loss, depth=1.0)
    cams = torch.from_numpy(np.stack([camera_label(0, 0)]))[None]
    out = model(images[:1])
    target, m = torch.rand(1, 1, 3, 12, 12), torch.ones(1, 1, 1, 12, 12)
    near = reconstruction_loss(w, out, target, m, cams, 12, backend="torch", depth=torch.full((1, 1, 1, 12, 12), 2.5))[1]
    far = reconstruction_loss(w, out, target, m, cams, 12, backend="torch", depth=torch.full((1, 1, 1, 12, 12), 9.0))[1]
    assert far["depth"] > near["depth"] + 5
    with pytest.raises(ValueError, match="depth"):
        reconstruction_loss(w, out, target, m, cams, 12, backend="torch")
