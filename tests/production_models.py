"""Tiny models of the production backends' real architectures and tensor contracts, built locally
with no network, shared by the backend unit tests (tests/test_production_*.py) and the end-to-end
pipeline test (tests/test_production_pipeline.py).

Every random initialisation runs inside `torch.random.fork_rng` with an explicit seed, so building a
model neither depends on nor disturbs the global RNG state.

Two kinds of ONNX fixtures:

* unit-test graphs whose outputs the tests can predict from the input (`TinyHeadPose` reads its
  "pose" from the channel means, `TinySeg` marks dark pixels, `TinyIQA` scores edge energy);
* pipeline graphs whose outputs are *plausible* for our white-background heads, so that items flow
  through every stage (`CentredHeadPose`: one confident centred head at yaw 0; `NonWhiteSeg`: person
  probability high wherever a pixel is not white).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

# ------------------------------------------------------------------------------------------------
# FLUX.1 Kontext (diffusers)
# ------------------------------------------------------------------------------------------------

FLUX_WORDS = "a photo of person front view left right side back rear profile pure white background blurry multiple people"


def build_tiny_flux(root) -> Path:
    """A tiny FluxKontextPipeline (FluxTransformer2DModel, AutoencoderKL, CLIP + T5 text encoders, a
    character-level CLIP BPE tokenizer and a sentencepiece T5 tokenizer trained here) saved with
    save_pretrained under `root/pipe`; returns that folder."""
    import sentencepiece as spm
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

    root = Path(root)
    tok_dir = root / "src"
    tok_dir.mkdir(parents=True)
    # CLIP: character-level BPE (no merges) over a tiny vocabulary.
    vocab = {}
    for ch in sorted(set(FLUX_WORDS.replace(" ", ""))):
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    clip_tok = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
    # T5: a sentencepiece unigram model trained here.
    (tok_dir / "corpus.txt").write_text("\n".join([FLUX_WORDS, "a photo of a person facing forward"] * 20))
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
    return root / "pipe"


# ------------------------------------------------------------------------------------------------
# Qwen2.5-VL (transformers)
# ------------------------------------------------------------------------------------------------

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
QWEN_PIXELS = 56 * 56  # the tiny image processor's fixed pixel budget (one 2x2 merge of 28 px patches)


def build_tiny_qwen(path) -> Path:
    """A tiny Qwen2.5-VL (real architecture) with a byte-level BPE tokenizer trained here and the
    image/video processors, saved with save_pretrained into `path`; returns it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2TokenizerFast, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=QWEN_SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["Standard Image, Non-standard Image. severe artifacts, normal. YES NO same person"] * 4, trainer)
    tokenizer = Qwen2TokenizerFast(tokenizer_object=tok, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = tokenizer.convert_tokens_to_ids(QWEN_SPECIAL)
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=QWEN_PIXELS, max_pixels=QWEN_PIXELS),
                                    tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
                                    chat_template=QWEN_CHAT_TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
                         bos_token_id=ids[0], eos_token_id=ids[2], pad_token_id=ids[0]),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1]),
        image_token_id=ids[5], video_token_id=ids[6], vision_start_token_id=ids[3], vision_end_token_id=ids[4])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids[2]
    model.generation_config.pad_token_id = ids[0]
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


# ------------------------------------------------------------------------------------------------
# ONNX graphs (onnxruntime backends)
# ------------------------------------------------------------------------------------------------

def export(module: torch.nn.Module, path, size: int, outputs: list[str]) -> str:
    """torch.onnx.export with a (N, 3, size, size) input named 'input' and a dynamic batch axis."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = module.eval()
        torch.onnx.export(module, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, input_names=["input"],
                          output_names=outputs, dynamic_axes={"input": {0: "n"}, **{o: {0: "n"} for o in outputs}})
    return str(path)


class TinyArcFace(torch.nn.Module):
    """ArcFace contract: (N, 3, 112, 112) -> (N, dim) embedding (random weights; the real models: 512)."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, 2, 1),
                                        torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(128, dim))

    def forward(self, x):
        return self.body(x)


def tiny_arcface(seed: int = 0, dim: int = 16) -> TinyArcFace:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyArcFace(dim)


class TinyHeadPose(torch.nn.Module):
    """One head per image: a fixed box (input pixels) with score 0.9, and a 'pose' read from the
    mean of each colour channel, so the test knows the answer."""

    def __init__(self):
        super().__init__()
        self.register_buffer("box", torch.tensor([[8.0, 16.0, 40.0, 48.0, 0.9]]))

    def forward(self, x):
        boxes = self.box.expand(x.shape[0], 1, 5)
        pose = (x.mean(dim=(2, 3)) * 100.0).unsqueeze(1)  # (N, 1, 3): yaw, pitch, roll
        return boxes, pose


class CentredHeadPose(torch.nn.Module):
    """Pipeline fixture of the head-pose contract: every image has one confident (0.95) head box in
    the upper centre of the `size` x `size` input, at yaw = pitch = roll = 0."""

    def __init__(self, size: int):
        super().__init__()
        s = float(size)
        self.register_buffer("box", torch.tensor([[0.3 * s, 0.15 * s, 0.7 * s, 0.6 * s, 0.95]]))

    def forward(self, x):
        return self.box.expand(x.shape[0], 1, 5), (x[:, :, 0, 0] * 0.0).unsqueeze(1)


class TinySeg(torch.nn.Module):
    """Probability of foreground = dark pixels (input normalised to [-1, 1])."""

    def forward(self, x):
        return torch.sigmoid(-12.0 * (x.mean(dim=1, keepdim=True) - 0.6))


class NonWhiteSeg(torch.nn.Module):
    """Pipeline fixture of the segmentation contract (input RGB normalised to [-1, 1]): person
    probability near 1 wherever the darkest channel is below ~240/255, near 0 on white."""

    def forward(self, x):
        darkest = torch.amin(x, dim=1, keepdim=True)
        return torch.sigmoid(-60.0 * (darkest - 0.88))


class TinyIQA(torch.nn.Module):
    """Hyper-IQA contract: quality ~ mean absolute horizontal gradient of the normalised crop, (N, 1)."""

    def forward(self, x):
        g = (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3))
        return (g * 100.0).unsqueeze(1)


def export_iqa(path, size: int = 32) -> str:
    return export(TinyIQA(), path, size, ["score"])


# ------------------------------------------------------------------------------------------------
# Swin2SR (transformers) and open_clip
# ------------------------------------------------------------------------------------------------

def build_tiny_swin2sr(path) -> Path:
    """A tiny x2 Swin2SRForImageSuperResolution (random init) saved with save_pretrained."""
    from transformers import Swin2SRConfig, Swin2SRForImageSuperResolution

    cfg = Swin2SRConfig(image_size=16, patch_size=1, embed_dim=8, depths=[1], num_heads=[2], window_size=4,
                        upscale=2, upsampler="pixelshuffle", mlp_ratio=2.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        Swin2SRForImageSuperResolution(cfg).eval().save_pretrained(path)
    return Path(path)


def build_random_open_clip(path, model_name: str = "ViT-B-32", seed: int = 0) -> Path:
    """An open_clip model of the real architecture with seeded random weights, as one .safetensors file
    (what `label_clip.pretrained` points at)."""
    import open_clip
    from safetensors.torch import save_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(model_name, pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return Path(path)
