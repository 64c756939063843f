"""FLUX.1 Kontext synthesiser: a tiny randomly initialised pipeline of the real architecture
(FluxTransformer2DModel, AutoencoderKL, CLIPTextModel, T5EncoderModel, FlowMatchEulerDiscreteScheduler)
with a CLIP BPE tokenizer written from a tiny vocab and a T5 tokenizer from a sentencepiece model
trained in the test, saved with save_pretrained and loaded back through the backend by path."""
from __future__ import annotations

import json

import numpy as np
import pytest

from balancehead.backends.production import weights as W
from balancehead.backends.production.flux_kontext import PARAM, FluxKontextSynthesizer, fit_image
from balancehead.backends.production.params import FluxKontextParams
from balancehead.world.synth import SynthResult

POSITIVE = "a photo of a person [view], pure white background"
NEGATIVE = "blurry, multiple people"
WORDS = "a photo of person front view left right side back rear profile pure white background blurry multiple people"


def build_tiny_flux(root) -> None:
    import sentencepiece as spm
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

    tok_dir = root / "src"
    tok_dir.mkdir()
    # CLIP: character-level BPE (no merges) over a tiny vocabulary.
    vocab = {}
    for ch in sorted(set(WORDS.replace(" ", ""))):
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    clip_tok = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
    # T5: a sentencepiece unigram model trained here.
    (tok_dir / "corpus.txt").write_text("\n".join([WORDS, "a photo of a person facing forward"] * 20))
    spm.SentencePieceTrainer.train(input=str(tok_dir / "corpus.txt"), model_prefix=str(tok_dir / "spiece"),
                                   vocab_size=40, hard_vocab_limit=False, model_type="unigram", pad_id=0,
                                   eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, minloglevel=2)
    t5_tok = T5Tokenizer.from_pretrained(str(tok_dir), extra_ids=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(clip_tok), hidden_size=32, intermediate_size=37,
                                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                                            projection_dim=32, bos_token_id=vocab["<|startoftext|>"],
                                            eos_token_id=vocab["<|endoftext|>"]))
        t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=32, d_kv=8, d_ff=37, num_layers=2,
                                     num_heads=4, relative_attention_num_buckets=8))
        transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                             attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                             pooled_projection_dim=32, guidance_embeds=True, axes_dims_rope=[2, 2, 4])
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                            latent_channels=4, norm_num_groups=4, sample_size=64, use_quant_conv=False,
                            use_post_quant_conv=False, shift_factor=0.1, scaling_factor=0.5)
    pipe = FluxKontextPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=clip,
                               tokenizer=clip_tok, text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer)
    pipe.save_pretrained(root / "pipe", safe_serialization=True)


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_flux")
    build_tiny_flux(root)
    return root / "pipe"


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
