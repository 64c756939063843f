"""FLUX.1 Kontext synthesiser: a tiny randomly initialised pipeline of the real architecture
(FluxTransformer2DModel, AutoencoderKL, CLIPTextModel, T5EncoderModel, FlowMatchEulerDiscreteScheduler)
with a CLIP BPE tokenizer written from a tiny vocab and a T5 tokenizer from a sentencepiece model
trained in the test, saved with save_pretrained and loaded back through the backend by path."""
from __future__ import annotations

import numpy as np
import pytest

from balancehead.backends.production import weights as W
from balancehead.backends.production.flux_kontext import PARAM, FluxKontextSynthesizer, fit_image
from balancehead.backends.production.params import FluxKontextParams
from balancehead.world.synth import SynthResult
from production_models import build_tiny_flux

POSITIVE = "a photo of a person [view], pure white background"
NEGATIVE = "blurry, multiple people"


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    return build_tiny_flux(tmp_path_factory.mktemp("tiny_flux"))


def _params(path, **kw):
    base = dict(model=str(path), dtype="fp32", device="cpu", steps=2, width=64, height=64, batch_size=2,
                max_sequence_length=32, progress=False)
    base.update(kw)
    return FluxKontextParams(**base)


@pytest.fixture(scope="module")
def synth(flux_dir):
    return FluxKontextSynthesizer(_params(flux_dir), POSITIVE, NEGATIVE)


def _photos():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (80, 60, 3), dtype=np.uint8), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)]


def test_edits_two_images_with_per_item_seeds(synth):
    a, b = _photos()
    out = synth.edit([a, b], [synth.prompt("front view"), synth.prompt("back view")], [1, 2])
    assert len(out) == 2 and all(o.shape == (64, 64, 3) and o.dtype == np.uint8 for o in out)
    assert out[0].std() > 0
    # Same seed, same image; the item's output does not depend on its batch neighbours.
    alone = synth.edit([a], [synth.prompt("front view")], [1])[0]
    assert np.abs(alone.astype(int) - out[0].astype(int)).max() <= 1
    other_seed = synth.edit([a], [synth.prompt("front view")], [3])[0]
    assert np.abs(other_seed.astype(int) - out[0].astype(int)).max() > 10


def test_front_and_view_return_synth_results(synth):
    a, _ = _photos()
    front = synth.front(a, seed=5)
    view = synth.view(front.rgb, "left profile, left side view", seed=6)
    for r in (front, view):
        assert isinstance(r, SynthResult) and r.rgb.shape == (64, 64, 3)
    assert front.truth["view_text"] == "facing forward, front view" and view.truth["seed"] == 6


def test_true_cfg_uses_negative_prompt_only_above_one(flux_dir, synth):
    a, _ = _photos()
    prompt = [synth.prompt("front view")]
    base = synth.edit([a], prompt, [1])[0]
    # At true_cfg_scale 1.0 the negative prompt is inert (CFG 1.0 = conditional prediction).
    inert = synth.edit([a], prompt, [1], negative_prompts=["back rear"])[0]
    assert np.array_equal(base, inert)
    cfg = FluxKontextSynthesizer(_params(flux_dir, true_cfg_scale=4.0), POSITIVE, NEGATIVE)
    assert np.abs(cfg.edit([a], prompt, [1])[0].astype(int) - base.astype(int)).max() > 0


def test_fit_image_modes():
    img = np.zeros((40, 80, 3), np.uint8)
    padded = np.asarray(fit_image(img, 64, 64, "pad"))
    assert padded.shape == (64, 64, 3) and padded[0, 0].tolist() == [255, 255, 255] and padded[32, 32].max() == 0
    assert np.asarray(fit_image(img, 64, 64, "crop")).max() == 0
    assert np.asarray(fit_image(img, 32, 48, "stretch")).shape == (48, 32, 3)


def test_provenance_and_missing_weights(synth, flux_dir, tmp_path):
    prov = synth.provenance()
    assert prov["weights_sha256"] == W.checksum(flux_dir)["sha256"]
    assert "transformer/diffusion_pytorch_model.safetensors" in prov["weight_files"]
    assert prov["steps"] == 2 and prov["true_cfg_scale"] == 1.0
    for model in (None, str(tmp_path / "absent"), "black-forest-labs/FLUX.1-Kontext-dev"):
        with pytest.raises(W.MissingWeightsError, match=PARAM.replace(".", r"\.")):
            FluxKontextSynthesizer(_params(model), POSITIVE)


def test_paper_preset_and_guards():
    p = FluxKontextParams(model="x")
    assert (p.steps, p.guidance_scale, p.true_cfg_scale, p.width, p.height) == (20, 1.0, 1.0, 512, 512)
    with pytest.raises(ValueError, match="multiple of 16"):
        FluxKontextParams(width=500)
    with pytest.raises(ValueError, match=r"\[view\]"):
        FluxKontextSynthesizer(_params("x"), "no placeholder")
