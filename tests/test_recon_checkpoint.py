"""Reconstructor checkpoints (safetensors + JSON): a saved model loads back to identical outputs, the config
round-trips through JSON, damaged bytes are refused naming the file, and writes leave no temporary files."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from balancehead.models.checkpoint import CheckpointError
from balancehead.recon.checkpoint import CONFIG, TENSORS, load_reconstructor, save_reconstructor
from balancehead.recon.config import PRESETS, TemplateConfig, config_from_dict, config_to_dict, preset
from balancehead.recon.model import build_model
from balancehead.recon.template import world_head_template


def _small(name):
    cfg = preset(name, template=TemplateConfig(subdivisions=1))
    if cfg.points is not None:
        return dataclasses.replace(cfg, points=dataclasses.replace(cfg.points, max_points=120))
    return dataclasses.replace(cfg, patches=dataclasses.replace(cfg.patches, patches=8))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trips_through_json(name):
    cfg = preset(name)
    assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg


def test_config_from_dict_names_unknown_keys():
    data = config_to_dict(preset("panolam_tiny"))
    data["encoder"]["colour"] = 1
    with pytest.raises(ValueError, match="colour"):
        config_from_dict(data)


@pytest.mark.parametrize("name", ["panolam_tiny", "perchead_tiny"])
def test_save_load_round_trip_gives_the_same_heads(tmp_path, name):
    cfg = _small(name)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():                               # move the weights off their (partly zero) init
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(image).gaussians
    save_reconstructor(model, cfg, tmp_path / "ckpt", {"step": 7, "note": "x"})
    save_reconstructor(model, cfg, tmp_path / "ckpt", {"step": 8})            # replacing an existing one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]            # no temporary leftovers
    loaded, cfg2, meta = load_reconstructor(tmp_path / "ckpt")
    assert cfg2 == cfg and meta == {"step": 8} and not loaded.training
    np.testing.assert_array_equal(loaded.template.vertices, model.template.vertices)
    with torch.no_grad():
        out = loaded(image).gaussians
    for a, b in zip((ref.means, ref.colors, ref.opacities, ref.scales, ref.quats),
                    (out.means, out.colors, out.opacities, out.scales, out.quats)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_checkpoint_keeps_its_template_when_the_file_is_gone(tmp_path):
    t = world_head_template(1)
    path = tmp_path / "head.npz"
    np.savez(path, vertices=t.vertices * 1.1, faces=t.faces)
    cfg = dataclasses.replace(_small("panolam_tiny"), template=TemplateConfig(path=str(path)))
    model = build_model(cfg)
    save_reconstructor(model, cfg, tmp_path / "ckpt")
    path.unlink()
    loaded, _, _ = load_reconstructor(tmp_path / "ckpt")
    np.testing.assert_allclose(loaded.template.vertices, t.vertices * 1.1, rtol=1e-6)


def test_damaged_checkpoint_is_refused_naming_the_file(tmp_path):
    cfg = _small("perchead_tiny")
    save_reconstructor(build_model(cfg), cfg, tmp_path / "ckpt")
    f = tmp_path / "ckpt" / TENSORS
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=TENSORS):
        load_reconstructor(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=CONFIG):
        load_reconstructor(tmp_path)
