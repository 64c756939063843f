"""The `train` section of params.yaml: everything the training stage reads, validated up front.

Defaults are the embedded tiny CPU preset (32 px, a fraction of a kimg per minute on two cores);
README "Training" gives the overrides of the paper's run. Model choices whose reference value (EG3D /
PanoHead) does not train in a couple of kimg at 32 px default to null and are resolved per
`model.preset` in one place, `PRESET_DEFAULTS`.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from balancehead.params_base import Section



# model.<key>: null -> the value for model.preset. `paper` = the reference (PanoHead): a background
# StyleGAN whose unbounded raw output starts around black with std ~1.5, and a t_mapping whose camera
# translation starts at |delta| ~ 1-6 world units (the head leaves the 0.9-unit frame). Both need far more
# than the tiny preset's 2 kimg to settle; `tiny` keeps this project's former variants, which start as a
# grey backdrop and a camera within 0.03 units of its label (tests/test_train_quality.py).
PRESET_DEFAULTS: dict[str, dict[str, str]] = {
    "tiny": {"background_kind": "own_mapping", "camera_adapt_kind": "mlp"},
    "paper": {"background_kind": "panohead", "camera_adapt_kind": "panohead"},
}


class ModelParams(Section):
    """Generator / discriminator shape. `preset` picks GeneratorConfig.tiny()/.paper(); the other
    keys override single fields of that preset (null = keep the preset's value)."""
    preset: Literal["tiny", "paper"] = "tiny"
    representation: Literal["triplane", "trigrid", "sphere", "sphere_dual", "hyplane"] = "triplane"
    output_resolution: int = Field(32, ge=8, le=1024)
    neural_resolution: int = Field(16, ge=4, le=256, description="final neural rendering resolution")
    n_coarse: Optional[int] = Field(8, ge=2, le=256)
    n_importance: Optional[int] = Field(8, ge=0, le=256)
    discriminator: Literal["dual", "tri", "mask"] = Field("tri", description=(
        "dual: EG3D (I+, I); tri: PanoHead V2 (I+, I, mask concatenated); mask: PanoHead's default "
        "MaskDualDiscriminator (separate mask branch)"))
    camera_adapt: bool = True
    background: bool = Field(True, description="PanoHead's separate background generator (use_background); false = none")
    background_kind: Optional[Literal["panohead", "own_mapping"]] = Field(None, description=(
        "panohead = PanoHead's bcg synthesis on the main ws, raw output (reference); own_mapping = own z mapping, "
        "sigmoid to the decoder's colour range (former variant); null = the preset's (tiny: own_mapping, paper: panohead)"))
    camera_adapt_kind: Optional[Literal["panohead", "mlp"]] = Field(None, description=(
        "panohead = PanoHead's t_mapping (z, c) -> translation, unscaled (reference); mlp = MLP on (z, camera), "
        "output x 0.01 (former variant); null = the preset's (tiny: mlp, paper: panohead)"))
    g_num_fp16_res: int = Field(0, ge=0, le=16, description=(
        "EG3D --g_num_fp16_res: float16 in the N highest-resolution synthesis blocks (and the background's), "
        "CUDA only, with conv clamp 256; 0 = float32 (EG3D default)"))
    sr_num_fp16_res: int = Field(0, ge=0, le=16, description=(
        "EG3D --sr_num_fp16_res: > 0 = every super-resolution block in float16, CUDA only (EG3D default 4)"))
    d_num_fp16_res: int = Field(0, ge=0, le=16, description=(
        "EG3D --d_num_fp16_res: float16 in the N highest-resolution discriminator blocks, CUDA only (EG3D default 4)"))

    def resolved(self, key: str):
        """This key's value, a null replaced by `PRESET_DEFAULTS[preset]`."""
        value = getattr(self, key)
        return PRESET_DEFAULTS[self.preset][key] if value is None else value

    @property
    def uses_fp16(self) -> bool:
        return self.g_num_fp16_res > 0 or self.sr_num_fp16_res > 0 or self.d_num_fp16_res > 0

    @model_validator(mode="after")
    def _sizes(self):
        for name in ("output_resolution", "neural_resolution"):
            v = getattr(self, name)
            if v & (v - 1):
                raise ValueError(f"model.{name} must be a power of two, got {v}")
        if self.neural_resolution > self.output_resolution:
            raise ValueError("model.neural_resolution must be <= model.output_resolution")
        return self


class ConditioningParams(Section):
    """What G's mapping network and D's projection head are conditioned on (BalanceHead Table 1)."""
    # exactly balancehead.train.conditioning.MODES (the table there says what G and D see in each)
    mode: Literal["none", "view", "view_semantic", "semantic", "view_plus_semantic", "identity",
                  "view_identity"] = "semantic"
    swap_prob: float = Field(0.7, ge=0.0, le=1.0, description=(
        "view modes: final probability that G's camera label is swapped for another real one (EG3D c-swap; PanoHead 0.7)"))
    swap_fade_kimg: float = Field(1000.0, ge=0.0, le=1e6, description=(
        "swap probability fades linearly from 1 to swap_prob over this many kimg (PanoHead gpc_reg_fade_kimg); 0 = swap_prob throughout"))
    swap_with: Literal["roll", "random"] = Field("roll", description=(
        "camera swapped in: roll = the previous row's (PanoHead torch.roll(c, 1, 0)); random = a random real camera of the batch"))
    swap_to_one_kimg: Optional[float] = Field(None, ge=0.0, le=1e6, description=(
        "camera-conditioned G modes: from this kimg on the swap probability is 1, i.e. view conditioning is "
        "switched off mid-training (BalanceHead Fig. 2(b)); null = never"))


class VicicoParams(Section):
    """ViCiCo (BalanceHead eq. 1): real images paired with shuffled (camera, condition) labels are
    negatives for D. `variant: vico` shuffles the camera only (SphereHead's ViCo)."""
    enabled: bool = True
    variant: Literal["vicico", "vico"] = "vicico"
    p_camera: float = Field(1 / 3, ge=0.0, le=1.0, description="share of negatives with only the camera shuffled")
    p_semantic: float = Field(1 / 3, ge=0.0, le=1.0, description="share with only the semantic condition shuffled")
    p_both: float = Field(1 / 3, ge=0.0, le=1.0, description="share with both shuffled")
    weight: float = Field(1.0, ge=0.0, le=100.0)

    @model_validator(mode="after")
    def _probs(self):
        total = self.p_camera + self.p_semantic + self.p_both
        if self.enabled and self.variant == "vicico" and total <= 0:
            raise ValueError("vicico: p_camera + p_semantic + p_both must be > 0")
        return self


class LossParams(Section):
    r1_gamma: float = Field(1.0, ge=0.0, le=1000.0, description="R1 weight on real images")
    r1_gamma_mask: float = Field(1.0, ge=0.0, le=1e5, description=(
        "R1 weight on the tri discriminator's mask input (PanoHead gamma_seg); 0 = images only"))
    r1_wrt: Literal["d_input", "real"] = Field("d_input", description=(
        "R1 gradients w.r.t. d_input = D's blurred/augmented input (EG3D/PanoHead); real = the real images before them"))
    r1_interval: int = Field(4, ge=1, le=1000, description="lazy regularisation: R1 every n D steps (0 = off via gamma)")
    density_reg: float = Field(0.25, ge=0.0, le=100.0, description="EG3D density smoothness weight")
    density_reg_every: int = Field(4, ge=1, le=1000)
    density_reg_p_dist: float = Field(0.004, gt=0.0, le=1.0, description="perturbation of the paired point")
    camera_adapt_weight: float = Field(1.0, ge=0.0, le=1000.0, description="weight of the camera-offset penalty (PanoHead trans_reg)")
    camera_adapt_penalty: Literal["batch_mean", "per_sample"] = Field("batch_mean", description=(
        "batch_mean = PanoHead's |mean_b delta_b|^2 over a round; per_sample = mean_b |delta_b|^2"))
    blur_init_sigma: float = Field(2.0, ge=0.0, le=20.0, description="blur of real+fake images at kimg 0")
    blur_fade_kimg: float = Field(0.5, ge=0.0, le=1e5, description="blur fades to 0 over this many kimg")
    blur_kernel: Literal["eg3d", "gaussian"] = Field("eg3d", description=(
        "eg3d = taps 2^-(x/sigma)^2, |x| <= floor(3 sigma), zero padding, on I+ and the real I; "
        "gaussian = Gaussian of std sigma, reflect padding, on I+ and I of real and fake"))


class ScheduleParams(Section):
    """Neural rendering resolution ramp (EG3D): initial -> model.neural_resolution over these kimg."""
    neural_resolution_initial: int = Field(16, ge=4, le=256)
    neural_resolution_fade_kimg: float = Field(0.0, ge=0.0, le=1e5, description="0 = final resolution from the start")
    neural_resolution_mode: Literal["linear", "pow2"] = Field("linear", description=(
        "linear = EG3D/PanoHead rint(initial*(1-a) + final*a); pow2 = linear in log2, floored to a power of two"))

    @field_validator("neural_resolution_initial")
    @classmethod
    def _pow2(cls, v):
        if v & (v - 1):
            raise ValueError(f"neural_resolution_initial must be a power of two, got {v}")
        return v


class AugmentParams(Section):
    """ADA-style differentiable augmentation of every image D sees (balancehead.train.augment)."""
    enabled: bool = False
    p_init: float = Field(0.0, ge=0.0, le=1.0)
    target: float = Field(0.6, ge=0.0, le=1.0, description="ADA target of E[sign(D(real))]")
    speed_kimg: float = Field(100.0, gt=0.0, le=1e5, description="kimg for p to move by 1")
    adjust_every: int = Field(4, ge=1, le=10000, description="steps between adjustments of p")
    fixed: bool = Field(False, description="keep p at p_init (no adaptation)")


class OptimParams(Section):
    g_lr: float = Field(0.0025, gt=0.0, le=1.0)
    d_lr: float = Field(0.002, gt=0.0, le=1.0)
    betas: tuple[float, float] = (0.0, 0.99)
    grad_clip: float = Field(10.0, ge=0.0, le=1e6, description="max global grad norm per module (0 = off)")
    ema_kimg: float = Field(0.5, ge=0.0, le=1e4, description="half-life of G_ema in kimg")
    ema_rampup: Optional[float] = Field(0.05, ge=0.0, le=10.0, description="ramp: half-life <= kimg * rampup (null = off)")


class DataParams(Section):
    resolution: Optional[int] = Field(None, ge=8, le=1024, description="load size; null = model.output_resolution")
    num_workers: int = Field(0, ge=0, le=64, description="data-loader worker processes (never changes results)")
    window: int = Field(256, ge=1, le=1_000_000, description="samples shuffled together (a shard-local window)")
    yaw_bin_weights: Optional[list[float]] = Field(None, description="8 target shares per 45° yaw bin; null = as packed")

    @field_validator("yaw_bin_weights")
    @classmethod
    def _bins(cls, v):
        if v is not None and (len(v) != 8 or any(w < 0 for w in v) or sum(v) <= 0):
            raise ValueError("yaw_bin_weights must be 8 non-negative numbers with a positive sum")
        return v


class DistributedParams(Section):
    nproc_per_node: int = Field(1, ge=1, le=64, description="> 1: `balancehead run train` relaunches itself under torchrun")
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description=(
        "auto = bf16 autocast on GPU, fp32 on CPU; with any model.*_num_fp16_res > 0, auto = no autocast "
        "(EG3D's per-block float16 instead)"))
    compile: Literal["none", "rendering"] = Field("none", description=(
        "rendering: torch.compile the decoder MLP and the ray march of G (Generator.compile_rendering); "
        "the same functions, fused; each new shape compiles once"))
    cudnn_benchmark: bool = Field(True, description=(
        "CUDA: cuDNN times its convolution algorithms for each new shape and keeps the fastest (EG3D's "
        "training default); false = cuDNN's heuristics. No effect on a CPU"))
    tf32: bool = Field(False, description=(
        "CUDA: TF32 tensor cores in convolutions and matmuls (faster, 10-bit mantissa products); false as in "
        "EG3D's training loop, whose numbers the papers report (torch alone would use TF32 in convolutions). "
        "No effect on a CPU"))


class EvalParams(Section):
    """'It learns': a Fréchet distance in the feature space of a fixed, seeded random conv net."""
    num_images: int = Field(128, ge=8, le=100_000)
    feature_seed: int = Field(1234, ge=0)


class TrainParams(Section):
    model: ModelParams = ModelParams()
    conditioning: ConditioningParams = ConditioningParams()
    vicico: VicicoParams = VicicoParams()
    loss: LossParams = LossParams()
    schedule: ScheduleParams = ScheduleParams()
    augment: AugmentParams = AugmentParams()
    optim: OptimParams = OptimParams()
    data: DataParams = DataParams()
    distributed: DistributedParams = DistributedParams()
    eval: EvalParams = EvalParams()
    batch: int = Field(8, ge=1, le=65536, description="total batch over all processes")
    batch_gpu: int = Field(8, ge=1, le=4096, description="batch per process (gradient accumulation when less than batch / processes)")
    total_kimg: float = Field(0.6, gt=0.0, le=1e6)
    kimg_per_tick: float = Field(0.1, gt=0.0, le=1e4)
    checkpoint_ticks: int = Field(1, ge=1, le=100000, description="resumable checkpoint every n ticks")
    keep_checkpoints: int = Field(2, ge=1, le=1000)
    fakes_ticks: int = Field(0, ge=0, le=100000, description="fakes grid every n ticks (0 = only at the end)")
    requeue_exit_code: int = Field(3, ge=1, le=255, description="exit code after a SIGTERM/SIGUSR1 checkpoint")

    @model_validator(mode="after")
    def _cross(self):
        if self.batch % self.batch_gpu:
            raise ValueError(f"batch ({self.batch}) must be a multiple of batch_gpu ({self.batch_gpu})")
        if self.schedule.neural_resolution_initial > self.model.neural_resolution:
            raise ValueError("schedule.neural_resolution_initial must be <= model.neural_resolution")
        if self.model.uses_fp16 and self.distributed.precision == "bf16":
            raise ValueError("distributed.precision bf16 (autocast) cannot be combined with model.*_num_fp16_res > 0 "
                             "(EG3D's float16 blocks); pick one")
        return self
