"""Checkpoints: safetensors + JSON round trip is exact; pickles are refused."""
import json

import numpy as np
import pytest
import torch

from balancehead.camera import camera_label
from balancehead.models import (CheckpointError, Discriminator, DiscriminatorConfig, Generator, GeneratorConfig,
                                load_checkpoint, save_checkpoint)


def test_round_trip_is_exact(tmp_path):
    G = Generator(GeneratorConfig.tiny(representation="trigrid", c_dim=537, n_coarse=4, n_importance=4))
    D = Discriminator(DiscriminatorConfig.tiny(c_dim=537, mode="dual"))
    with torch.no_grad():  # make the state differ from a fresh construction
        for p in G.parameters():
            p.add_(0.01)
        G.mapping.w_avg.fill_(0.3)
    save_checkpoint(tmp_path / "ckpt", {"G_ema": G, "D": D}, meta={"kimg": 12})
    assert json.loads((tmp_path / "ckpt" / "model.json").read_text())["modules"]["G_ema"]["config"]["representation"] == "trigrid"
    modules, meta = load_checkpoint(tmp_path / "ckpt")
    assert meta == {"kimg": 12}
    G2, D2 = modules["G_ema"], modules["D"]
    assert G2.cfg == G.cfg and D2.cfg == D.cfg
    for a, b in ((G, G2), (D, D2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    z = torch.randn(1, 32, generator=torch.Generator().manual_seed(0))
    c = torch.randn(1, 537, generator=torch.Generator().manual_seed(1))
    cam = torch.from_numpy(np.asarray(camera_label(60, 10)))[None]
    assert torch.equal(G(z, c, cam).image, G2(z, c, cam).image)


@pytest.mark.parametrize("head", [b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.", b"PK\x03\x04\x14\x00\x00\x00archive/data.pkl"])
def test_pickle_files_are_refused(tmp_path, head):
    bad = tmp_path / "network.pkl"
    bad.write_bytes(head)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(bad)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(head)
    with pytest.raises(CheckpointError, match="refusing"):
        load_checkpoint(tmp_path / "ckpt")


def test_missing_config_is_an_error(tmp_path):
    save_checkpoint(tmp_path / "c", {"D": Discriminator(DiscriminatorConfig.tiny())})
    (tmp_path / "c" / "model.json").unlink()
    with pytest.raises(CheckpointError, match="JSON config"):
        load_checkpoint(tmp_path / "c")
