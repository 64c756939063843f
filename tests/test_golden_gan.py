"""Golden equivalence with the official EG3D / PanoHead / SphereHead networks (issue 9: items 3-7, G and D).

tests/data/golden/gan_{eg3d,panohead,spherehead}.safetensors hold small official models' state dicts
(15 levels x one scale per tensor, packed 4 bits per value: exactly the values the official code ran
with), their inputs and outputs, written by scripts/golden/make_gan_golden.py from the official
checkouts. Here the state dicts go through models/convert.py and our G / D must reproduce images,
depth, mask and D logits to 1e-4 (fp32).
"""
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from balancehead.models.convert import discriminator_from_official, generator_from_official

DATA = Path(__file__).parent / "data" / "golden"
TOL = 1e-4


def load(kind):
    path = DATA / f"gan_{kind}.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, meta


def unpack(packed, shape):
    """Two 4-bit codes (q + 8) per byte -> q in [-7, 7] of `shape`."""
    hi, lo = (packed >> 4).to(torch.int16) - 8, (packed & 15).to(torch.int16) - 8
    n = int(torch.tensor(shape).prod()) if len(shape) else 1
    return torch.stack([hi, lo], 1).flatten()[:n].reshape(shape)


def state_dict(tensors, prefix):
    out = {}
    for k, v in tensors.items():
        if k.startswith(prefix + "f/"):
            out[k[len(prefix) + 2:]] = v
        elif k.startswith(prefix + "q4/"):
            name = k[len(prefix) + 3:]
            q = unpack(v, tensors[f"{prefix}shape/{name}"].tolist())
            out[name] = q.to(torch.float32) * tensors[f"{prefix}s/{name}"]
    return out


@pytest.fixture(scope="module", params=["eg3d", "panohead", "spherehead"])
def golden(request):
    tensors, meta = load(request.param)
    G = generator_from_official(state_dict(tensors, "G/"), json.loads(meta["g_init_kwargs"]),
                                json.loads(meta["rendering_kwargs"]), request.param)
    c = tensors["in/c"]
    with torch.no_grad():
        out = G(tensors["in/z"], c, c, psi=float(meta["psi"]), noise_mode="const",
                neural_resolution=int(meta["neural_rendering_resolution"]),
                generator=torch.Generator().manual_seed(int(meta["render_seed"])))
    return request.param, tensors, meta, out


def test_generator_matches_official(golden):
    kind, t, _, out = golden
    assert out.image.shape == t["out/image"].shape
    assert (out.image - t["out/image"]).abs().max() <= TOL
    assert (out.image_raw - t["out/image_raw"]).abs().max() <= TOL
    assert (out.depth - t["out/image_depth"]).abs().max() <= TOL
    if kind != "eg3d":  # PanoHead's / SphereHead's image_mask = opacity * (1 + 2e-3) - 1e-3
        assert (out.mask_raw * (1 + 2 * 0.001) - 0.001 - t["out/image_mask"]).abs().max() <= TOL


@pytest.mark.parametrize("kind", ["eg3d", "panohead"])  # SphereHead's D is PanoHead's MaskDualDiscriminator
def test_discriminator_matches_official(kind):
    t, meta = load(kind)
    D = discriminator_from_official(state_dict(t, "D/"), json.loads(meta["d_init_kwargs"]), kind)
    images = {"image": t["out/image"], "image_raw": t["out/image_raw"]}
    if kind == "panohead":
        images["mask"] = t["out/image_mask"]
    with torch.no_grad():
        logits = D(images, t["in/c"])
    assert (logits - t["out/logits"]).abs().max() <= TOL


def test_mask_discriminator_v2_matches_official():
    """PanoHead MaskDualDiscriminatorV2: the mask concatenated as a 7th channel (our mode "tri")."""
    t, meta = load("panohead")
    D = discriminator_from_official(state_dict(t, "D2/"), json.loads(meta["d_init_kwargs"]), "panohead")
    assert D.cfg.mode == "tri"
    images = {"image": t["out/image"], "image_raw": t["out/image_raw"], "mask": t["out/image_mask"]}
    with torch.no_grad():
        logits = D(images, t["in/c"])
    assert (logits - t["out/logits_v2"]).abs().max() <= TOL


def test_conversion_names_missing_and_unexpected_keys():
    tensors, meta = load("eg3d")
    sd = state_dict(tensors, "G/")
    sd["backbone.extra.weight"] = torch.zeros(1)
    del sd["decoder.net.0.bias"]
    with pytest.raises(ValueError, match=r"backbone\.extra\.weight.*decoder\.hidden\.bias"):
        generator_from_official(sd, json.loads(meta["g_init_kwargs"]), json.loads(meta["rendering_kwargs"]), "eg3d")
    with pytest.raises(ValueError, match="kind must be one of"):
        generator_from_official(sd, {}, {}, "stylegan")
