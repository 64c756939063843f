"""params.yaml sections of the production backends (the lead nests them under each stage's section,
e.g. `filter_views.qwen_vl`, `synthesizer.flux_kontext`).

Two families:

* `HFModelParams` — a transformers/diffusers `save_pretrained` folder (or, only with
  `allow_download: true` and `local_files_only: false`, a hub id + pinned revision);
* `OnnxModelParams` — one .onnx file run by onnxruntime, plus the tensor contract the backend
  assumes (input name, size, normalisation, output layout), so that an equivalent model exported
  from another project can be dropped in by editing params, not code.

`expected_sha256` optionally pins the weights (the digest `provenance()` reports).
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from balancehead.params_base import Section

DType = Literal["bf16", "fp16", "fp32"]


class HFModelParams(Section):
    model: Optional[str] = Field(None, description="local save_pretrained folder (or hub id if downloads are allowed)")
    revision: Optional[str] = Field(None, description="hub revision (commit) pinned when downloading")
    dtype: DType = "bf16"
    device: str = "cuda"
    batch_size: int = Field(4, ge=1, le=1024)
    local_files_only: bool = True
    allow_download: bool = False
    expected_sha256: Optional[str] = Field(None, description="pin: digest reported by provenance()['weights_sha256']")
    progress: bool = True


class OnnxModelParams(Section):
    model: Optional[str] = Field(None, description="local .onnx file (or 'owner/repo::file.onnx' if downloads are allowed)")
    revision: Optional[str] = None
    providers: list[str] = Field(default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
                                 description="onnxruntime providers in preference order; unavailable ones are skipped")
    intra_op_threads: int = Field(0, ge=0, le=256, description="0 = onnxruntime default")
    batch_size: int = Field(16, ge=1, le=4096)
    input_name: Optional[str] = Field(None, description="graph input to feed; None = the first input")
    local_files_only: bool = True
    allow_download: bool = False
    expected_sha256: Optional[str] = None
    progress: bool = True


# ------------------------------------------------------------------------------------------------
# Synthesis (synth_front, synth_views)
# ------------------------------------------------------------------------------------------------

class FluxKontextParams(HFModelParams):
    """FLUX.1 Kontext [dev] image editing (BalanceHead §3.1, A.2: 20 steps, CFG 1.0, 512x512).

    How the paper's "CFG scale 1.0" maps onto diffusers' two knobs:

    * `guidance_scale` is FLUX's *distilled* guidance: a number fed to the transformer as a
      conditioning input (no extra forward pass). Kontext [dev] was distilled around 2.5; the
      paper's value is read here as this knob at 1.0 (weak guidance, close to the input image);
    * `true_cfg_scale` is real classifier-free guidance with the negative prompt (a second forward
      pass per step). Diffusers runs it only when it is > 1 *and* a negative prompt is given. At 1.0
      (the paper's value) the negative prompt has no effect on the output — which is also what a
      CFG of 1.0 means mathematically (uncond + 1.0 * (cond - uncond) = cond).

    The preset therefore sets both to 1.0. Raising `true_cfg_scale` (e.g. 1.5-4) activates Fig. 7's
    negative prompt at twice the cost per step.
    """

    steps: int = Field(20, ge=1, le=200)
    guidance_scale: float = Field(1.0, ge=0.0, le=30.0)
    true_cfg_scale: float = Field(1.0, ge=1.0, le=30.0)
    width: int = Field(512, ge=16, le=2048)
    height: int = Field(512, ge=16, le=2048)
    input_fit: Literal["pad", "crop", "stretch"] = Field(
        "pad", description="how a non-square source is brought to width x height (pad = white borders)")
    auto_resize_input: bool = Field(False, description="let diffusers snap the input to Kontext's ~1 MP preset sizes")
    max_sequence_length: int = Field(512, ge=16, le=512, description="T5 prompt tokens")
    cpu_offload: Literal["none", "model", "sequential"] = Field(
        "none", description="diffusers CPU offload (needs the accelerate package)")
    generator_device: Literal["cpu", "device"] = Field(
        "cpu", description="where the per-item torch.Generator lives; cpu = same noise on any GPU")

    @model_validator(mode="after")
    def _multiple_of_16(self):
        for k in ("width", "height"):
            if getattr(self, k) % 16:
                raise ValueError(f"{k} must be a multiple of 16 (VAE factor 8 x latent packing 2)")
        return self


# ------------------------------------------------------------------------------------------------
# VLM judge (filter_views)
# ------------------------------------------------------------------------------------------------

DEFAULT_ATTRIBUTE_PROMPT = (
    "Describe the person in this image as a single line of 'key: value' pairs separated by "
    "semicolons, with exactly these keys: hair (colour and length), glasses (yes/no), hat (yes/no), "
    "gender, skin tone, clothing (colour and type). Reply with the line only."
)


class QwenVLJudgeParams(HFModelParams):
    """Qwen2.5-VL filtering agent (BalanceHead A.2, Figs. 8-10); prompts stay in filter_views.prompts.

    Attribute query for the matching prompt's {attrs1}/{attrs2} (`attributes`):

    * `vlm` (default): the same model is first asked `attribute_prompt` about each image (greedy,
      `attribute_max_new_tokens`); the first line of its reply, cleaned and cut to
      `attribute_max_chars`, fills the placeholder ("unknown" if empty). Front attributes are
      cached per front image, so a front with ten views is described once;
    * `heuristic`: `backends.judge.estimate_attributes` + `format_attributes` (pixels only, cheap);
    * `none`: both placeholders become "not provided" (the images alone decide).
    """

    dtype: DType = "bf16"
    max_new_tokens: int = Field(48, ge=1, le=1024, description="verdict replies: a label + one sentence")
    attributes: Literal["vlm", "heuristic", "none"] = "vlm"
    attribute_prompt: str = DEFAULT_ATTRIBUTE_PROMPT
    attribute_max_new_tokens: int = Field(64, ge=1, le=1024)
    attribute_max_chars: int = Field(300, ge=16, le=4000)
    min_pixels: int = Field(256 * 28 * 28, ge=28 * 28, description="Qwen2-VL image processor pixel budget")
    max_pixels: int = Field(512 * 512, ge=28 * 28)
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"

    @model_validator(mode="after")
    def _pixels(self):
        if self.min_pixels > self.max_pixels:
            raise ValueError("min_pixels must be <= max_pixels")
        return self


# ------------------------------------------------------------------------------------------------
# Identity (select_front, metrics)
# ------------------------------------------------------------------------------------------------

class ArcFaceParams(OnnxModelParams):
    """ArcFace-class recogniser (e.g. insightface's `w600k_r50.onnx`/`glintr100.onnx`).

    Contract: input float32 (N, 3, 112, 112), RGB, (pixel - mean) / std per channel (insightface:
    127.5 / 127.5); output (N, D) embedding (D = 512 for the usual models), normalised here.
    """

    input_size: int = Field(112, ge=16, le=512)
    mean: float = 127.5
    std: float = 127.5
    channel_order: Literal["rgb", "bgr"] = "rgb"
    fallback_crop: float = Field(
        0.75, gt=0.0, le=1.0,
        description="no landmarks: centre square of this fraction of the head box (or image) side")


# ------------------------------------------------------------------------------------------------
# Pose, crop, mask (preprocess)
# ------------------------------------------------------------------------------------------------

class HeadPoseParams(OnnxModelParams):
    """Head detector + pose regressor (VGGHeads-class) run on the whole frame.

    Contract: input float32 (N, 3, S, S) RGB in [0, 1] then (x - mean) / std, S = `input_size`, the
    image letterboxed (white padding, aspect kept). Outputs, by name:
    `boxes_output` (N, K, 5): x0, y0, x1, y1 in input pixels + score; `pose_output` (N, K, 3): yaw,
    pitch, roll in degrees in the convention of `pose_convention`. The highest-score head is used.
    A VGGHeads export whose decoder emits other names is mapped by setting the two names.
    """

    input_size: int = Field(640, ge=32, le=4096)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    boxes_output: str = "boxes"
    pose_output: str = "pose"
    min_score: float = Field(0.3, ge=0.0, le=1.0)
    # Our camera convention: +yaw = camera on the subject's left (balancehead.camera); a model
    # whose +yaw turns the head to *its* left from the viewer's side has the opposite sign.
    yaw_sign: Literal[1, -1] = 1
    pitch_sign: Literal[1, -1] = 1


class PersonSegParams(OnnxModelParams):
    """Person segmentation / matting (DAViD-class foreground model).

    Contract: input float32 (N, 3, S, S) RGB in [0, 1] then (x - mean) / std (letterboxed as for
    pose); output (N, 1, S, S) or (N, S, S): `output_kind` logits (sigmoid applied) or probabilities
    in [0, 1]; the mask is the letterbox region resized back, thresholded at `threshold`.
    """

    input_size: int = Field(512, ge=32, le=4096)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    output_kind: Literal["logits", "probability"] = "probability"
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    keep_largest_component: bool = True


# ------------------------------------------------------------------------------------------------
# Quality gate (assess_quality)
# ------------------------------------------------------------------------------------------------

class HyperIQAParams(OnnxModelParams):
    """Hyper-IQA-class no-reference scorer exported to ONNX (the hyper-network and the target
    network in one graph).

    Contract: input float32 (N, 3, S, S) RGB, ImageNet mean/std; output (N,) or (N, 1) quality.
    Hyper-IQA averages random 224 crops; we take `n_crops` deterministic crops on a grid (seeded
    layout, no RNG) and average. Score = clip(raw * `score_scale` + `score_offset`, 0, 100):
    the KonIQ-trained Hyper-IQA emits ~0-100 already (scale 1); a model emitting 0-1 (pyiqa's
    normalised output) needs scale 100.
    """

    input_size: int = Field(224, ge=32, le=1024)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    n_crops: int = Field(5, ge=1, le=64, description="1 = centre crop; 5 = centre + four corners")
    resize_short: int = Field(0, ge=0, le=4096, description="resize short side first (0 = keep; crops upsample if smaller)")
    score_scale: float = 1.0
    score_offset: float = 0.0


class Swin2SRParams(HFModelParams):
    """Swin2SR super-resolution (transformers) for the enhance band of assess_quality.

    `output`: `same_size` resamples the SR result back to the input size (Lanczos), so downstream
    stages see the original geometry with restored detail; `upscaled` keeps the x`upscale` image.
    """

    dtype: DType = "fp32"
    output: Literal["same_size", "upscaled"] = "same_size"
