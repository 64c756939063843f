"""params.yaml sections of the four closing stages: generator (shared), sample_prior, invert, evaluate, report.

Defaults are the fast embedded CPU preset (tiny model, a handful of identities, few steps); the
paper-scale values are given in each field's description ("paper: ...") and in the README.
"""
from __future__ import annotations

import posixpath
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from balancehead.backends.production.params import ArcFaceParams, HeadPoseParams, PersonSegParams
from balancehead.params_base import Section

Device = Literal["auto", "cpu", "cuda"]
IdentityBackend = Literal["offline", "arcface"]
IDENTITY_HELP = ("offline: appearance embedder from pixels (labelled, not a face-recognition model); "
                 "arcface: the ArcFace ONNX model at arcface.model (BalanceHead A.6.11 MKNND space)")


def _require_arcface(section: str, backend: str, arcface: ArcFaceParams) -> None:
    if backend == "arcface" and not arcface.model:
        raise ValueError(f"{section}.identity_backend 'arcface' needs {section}.arcface.model (a local .onnx path); "
                         f"or set {section}.identity_backend: offline")


TRAINED = "data/train"


class GeneratorParams(Section):
    """The generator sample_prior, invert and evaluate use; a DVC dependency of those three stages.

    `data/train` (the default) is this workflow's trained run (its final checkpoint). Any other path is a
    checkpoint directory written by `balancehead import-checkpoint` from an official EG3D / PanoHead /
    SphereHead network pickle -- PanoLAM §3.4 samples its 360° data from pretrained PanoHead / SphereHead;
    the same path puts an official model through invert and evaluate (metrics, FID-by-yaw bias curve).
    """
    checkpoint: str = Field(TRAINED, min_length=1,
                            description="data/train (the trained run) or an imported checkpoint directory")

    @field_validator("checkpoint")
    @classmethod
    def _path(cls, v: str) -> str:
        if "${" in v or any(ch in v for ch in "\n\r\t") or v != v.strip() or posixpath.normpath(v) == ".":
            raise ValueError(f"not a plain path: {v!r}")
        return posixpath.normpath(v)       # that it is no other stage's output is checked with the stage list


class SamplePriorParams(Section):
    """PanoLAM appendix E: N identities x 32 views from a trained generator."""
    protocol: Literal["front", "360"] = Field("360", description="front: EG3D-style 72° window; 360: 8 equator + random")
    num_identities: int = Field(8, ge=1, le=10_000_000, description="paper: 10000+ per prior model")
    views_per_identity: int = Field(32, ge=1, le=1024, description="front protocol: views per identity (paper 32)")
    equator_views: int = Field(8, ge=0, le=360, description="360 protocol: evenly spaced equator views (paper 8)")
    random_views: int = Field(24, ge=0, le=1024, description="360 protocol: extra random-angle views (paper 24)")
    front_max_abs_yaw_deg: float = Field(36.0, ge=0.0, le=180.0)
    front_max_abs_pitch_deg: float = Field(26.0, ge=0.0, le=89.0)
    random_max_abs_pitch_deg: float = Field(26.0, ge=0.0, le=89.0, description="pitch window of the 360 random views")
    radius_mean: float = Field(2.7, gt=0.0, le=100.0)
    radius_std: float = Field(0.1, ge=0.0, le=10.0)
    fov_mean_deg: float = Field(18.83, gt=1.0, lt=120.0)
    fov_std_deg: float = Field(1.0, ge=0.0, le=20.0)
    psi: float = Field(0.7, ge=0.0, le=1.0, description="truncation ψ")
    resolution: Optional[int] = Field(None, ge=8, le=4096, description="output size (None = the model's)")
    white_background: bool = Field(True, description="composite on white with the rendered mask (as the data engine)")
    holdout_identities: int = Field(2, ge=0, description="identities reserved as inversion targets (novel views have ground truth)")
    quality_gate: bool = Field(False, description="drop renders the offline judge calls severe artifacts (every drop recorded)")
    batch_size: int = Field(16, ge=1, le=4096)
    shard_size: int = Field(1000, ge=1, le=1_000_000)
    device: Device = "auto"

    @model_validator(mode="after")
    def _check(self):
        if self.protocol == "360" and self.equator_views + self.random_views < 1:
            raise ValueError("sample_prior: protocol '360' needs equator_views + random_views >= 1")
        if self.holdout_identities >= self.num_identities:
            raise ValueError(f"sample_prior.holdout_identities ({self.holdout_identities}) must be < "
                             f"num_identities ({self.num_identities}); some identities must stay in the prior set")
        return self


class PerceptualTerm(Section):
    """One perceptual loss term. Weights are local paths; nothing is downloaded.

    kind: lpips   - LPIPS-VGG: `path` = torchvision vgg16 weights (safetensors/pt), `lin_path` = LPIPS linear heads
          dinov2  - DINOv2 hidden states (transformers Dinov2Model directory at `path`), layers `layers`
          sam2    - SAM 2.1 image-encoder features (transformers Sam2VisionModel directory at `path`)
          offline - seeded random conv features + multi-scale SSIM; needs no weights, NOT a published metric
    """
    kind: Literal["lpips", "dinov2", "sam2", "offline"] = "offline"
    weight: float = Field(1.0, ge=0.0, le=1e6)
    path: Optional[str] = None
    lin_path: Optional[str] = None
    layers: tuple[int, ...] = Field((4, 8, 11), description="dinov2: hidden-state indices (mid to late layers)")

    @model_validator(mode="after")
    def _check(self):
        if self.kind in ("lpips", "dinov2", "sam2") and not self.path:
            raise ValueError(f"perceptual kind {self.kind!r} needs 'path' (local weights); use kind 'offline' without weights")
        if self.kind == "lpips" and not self.lin_path:
            raise ValueError("perceptual kind 'lpips' needs 'lin_path' (the LPIPS linear-head weights file)")
        return self


class InvertParams(Section):
    """Pivotal Tuning Inversion (Roich et al.; BalanceHead §5.2, A.6.2)."""
    targets: Literal["prior_holdout", "folder"] = "prior_holdout"
    folder: Optional[str] = Field(None, description="targets='folder': directory of PNG/JPEG images (white background)")
    max_targets: int = Field(2, ge=1, le=100_000)
    input_yaw_deg: float = Field(0.0, ge=-180.0, le=180.0, description="prior targets: invert the view nearest this yaw")
    pose: Literal["known", "offline", "production"] = Field(
        "known", description="known: prior targets' camera; offline: template pose estimator on the image; "
                             "production: the data engine's ONNX head pose + person mask and its head crop (A.6.12)")
    head_pose: HeadPoseParams = Field(HeadPoseParams(), description="pose 'production': head detector + pose ONNX "
                                                                    "(the contract of preprocess.head_pose)")
    person_seg: PersonSegParams = Field(PersonSegParams(), description="pose 'production': person mask ONNX "
                                                                       "(the contract of preprocess.person_seg)")
    crop_margin: float = Field(0.1, ge=0.0, le=1.0, description="pose 'production': head-crop margin; keep it equal "
                                                               "to preprocess.crop_margin (the data engine's crop)")
    identity_backend: IdentityBackend = Field("offline", description=IDENTITY_HELP)
    arcface: ArcFaceParams = Field(ArcFaceParams(), description="identity_backend 'arcface': the ONNX recogniser")
    latent_space: Literal["w", "w+"] = "w"
    w_steps: int = Field(60, ge=0, le=100_000, description="paper (PTI): 450-500")
    w_lr: float = Field(0.02, gt=0.0, le=10.0, description="paper (PTI): 5e-3")
    g_steps: int = Field(40, ge=0, le=100_000, description="paper (PTI): 350")
    g_lr: float = Field(1e-3, gt=0.0, le=1.0, description="paper (PTI): 3e-4")
    l2_weight: float = Field(1.0, ge=0.0, le=1e6)
    perceptual: tuple[PerceptualTerm, ...] = (PerceptualTerm(),)
    optimize_noise: bool = True
    noise_reg_weight: float = Field(1e5, ge=0.0, le=1e9, description="StyleGAN2 projector noise regulariser")
    locality_weight: float = Field(0.0, ge=0.0, le=1e6, description="PTI locality regulariser (paper 0.1; 0 = off)")
    locality_alpha: float = Field(30.0, gt=0.0, le=1e4)
    metric_lpips: PerceptualTerm = Field(PerceptualTerm(), description="distance reported as 'lpips' in metrics")
    turntable_frames: int = Field(24, ge=2, le=3600, description="paper: 120")
    turntable_pitch_deg: float = Field(0.0, ge=-89.0, le=89.0)
    frame_ms: int = Field(80, ge=10, le=5000)
    mp4: bool = Field(False, description="also write an MP4 (needs imageio-ffmpeg; skipped with a note otherwise)")
    resolution: Optional[int] = Field(None, ge=8, le=4096)
    device: Device = "auto"

    @model_validator(mode="after")
    def _check(self):
        if self.targets == "folder" and not self.folder:
            raise ValueError("invert.targets='folder' needs invert.folder (a directory of images)")
        if self.targets == "folder" and self.pose == "known":
            raise ValueError("invert.pose='known' only works for prior_holdout targets; "
                             "use pose: offline or production for a folder")
        if self.pose == "production" and self.targets != "folder":
            raise ValueError("invert.pose 'production' is for targets: folder (in-the-wild photos); "
                             "prior_holdout targets have known cameras (pose: known)")
        if self.pose == "production" and not (self.head_pose.model and self.person_seg.model):
            raise ValueError("invert.pose 'production' needs invert.head_pose.model and invert.person_seg.model "
                             "(local .onnx paths, as preprocess.head_pose / person_seg); or set invert.pose: offline")
        _require_arcface("invert", self.identity_backend, self.arcface)
        if self.w_steps + self.g_steps == 0:
            raise ValueError("invert: w_steps + g_steps must be > 0")
        return self


class EvaluateParams(Section):
    """FID variants, KID, MKNND, ID consistency, inversion metrics and the per-yaw-bin FID curve."""
    feature_extractor: Literal["inception", "offline"] = Field(
        "offline", description="inception: torchvision InceptionV3 with FID weights at inception_path; "
                               "offline: seeded random conv net (not comparable to published numbers)")
    inception_path: Optional[str] = None
    num_fakes: int = Field(64, ge=2, le=10_000_000, description="fakes per FID metric (paper: 50000)")
    max_reals: Optional[int] = Field(None, ge=2, description="cap on real images per real set (None = all)")
    psi: float = Field(1.0, ge=0.0, le=1.0)
    kid_subsets: int = Field(100, ge=1, le=10_000)
    kid_subset_size: int = Field(1000, ge=2, le=100_000)
    mknnd_k: int = Field(5, ge=1, le=1000)
    mknnd_samples: int = Field(64, ge=2, le=10_000_000, description="paper: 1000s of identities")
    id_identities: int = Field(8, ge=1, le=1_000_000)
    id_view_yaws_deg: tuple[float, ...] = Field((-60.0, -30.0, 0.0, 30.0, 60.0))
    identity_backend: IdentityBackend = Field("offline", description="MKNND and ID consistency: " + IDENTITY_HELP)
    arcface: ArcFaceParams = Field(ArcFaceParams(), description="identity_backend 'arcface': the ONNX recogniser")
    panohead_front_max_abs_yaw_deg: float = Field(90.0, gt=0.0, le=180.0,
                                                  description="fid_panohead_front: |yaw| < this (PanoHead §4.3: 90)")
    memorisation_samples: int = Field(4, ge=0, le=10_000, description="generated fronts checked for their nearest "
                                                                      "training images in CLIP space (A.6.13; 0 = off)")
    memorisation_neighbours: int = Field(3, ge=1, le=16, description="nearest training images shown per sample")
    front_max_abs_yaw_deg: float = Field(22.5, ge=0.0, le=90.0, description="real images counted as 'front'")
    back_min_abs_yaw_deg: float = Field(90.0, ge=0.0, le=180.0, description="FID-back render window (PanoHead: 90)")
    fakes_per_yaw_bin: int = Field(32, ge=2, le=10_000_000, description="fakes per 45° bin of the bias curve (paper: 10000)")
    min_reals_per_bin: int = Field(2, ge=2, description="yaw bins with fewer real images get FID null")
    fid_bootstrap: int = Field(10, ge=0, le=1000, description="bootstrap resamples for the per-yaw-bin FID error bars (0 or 1 = off)")
    grid_size: int = Field(4, ge=1, le=32)
    turntable_samples: int = Field(2, ge=0, le=64)
    turntable_frames: int = Field(24, ge=2, le=3600)
    frame_ms: int = Field(80, ge=10, le=5000)
    batch_size: int = Field(16, ge=1, le=4096)
    device: Device = "auto"

    @model_validator(mode="after")
    def _check(self):
        if self.feature_extractor == "inception" and not self.inception_path:
            raise ValueError("evaluate.feature_extractor 'inception' needs evaluate.inception_path "
                             "(local InceptionV3 FID weights, safetensors or a weights-only .pt)")
        if self.mknnd_k >= self.mknnd_samples:
            raise ValueError(f"evaluate.mknnd_k ({self.mknnd_k}) must be < mknnd_samples ({self.mknnd_samples})")
        if len(self.id_view_yaws_deg) < 2:
            raise ValueError("evaluate.id_view_yaws_deg needs at least two views")
        _require_arcface("evaluate", self.identity_backend, self.arcface)
        return self

    @field_validator("id_view_yaws_deg")
    @classmethod
    def _yaws(cls, v):
        if any(not -180.0 <= y <= 180.0 for y in v):
            raise ValueError(f"id_view_yaws_deg must lie in [-180, 180], got {list(v)}")
        return v


class EvalReconParams(Section):
    """PanoLAM Table 2 / Table 3 protocol for the feed-forward reconstructor (issue 13): held-out prior identities
    reconstructed from one view, rendered at the views below, compared with the ground truth and with PTI."""
    max_targets: int = Field(2, ge=1, le=100_000, description="held-out identities evaluated (paper: 100)")
    input_yaw_deg: float = Field(0.0, ge=-180.0, le=180.0, description="the packed view nearest this yaw is the input")
    views: tuple[Literal["front", "back", "left", "right"], ...] = Field(
        ("front", "back", "left", "right"), description="evaluation views: yaw 0 / 180 / 90 / -90 at pitch 0")
    resolution: Optional[int] = Field(None, ge=8, le=4096, description="metric size (None = the ground truth's)")
    metric_lpips: PerceptualTerm = Field(PerceptualTerm(), description="distance reported as 'lpips' (paper: lpips)")
    identity: Literal["offline"] = Field("offline", description="identity embedder of CSIM (front view)")
    pose: Literal["offline", "none"] = Field("offline", description="pose estimator of APD; none = no APD")
    pose_subjects: int = Field(8, ge=8, le=200, description="offline pose bank: procedural subjects")
    pose_views: int = Field(24, ge=12, le=96, description="offline pose bank: views per subject")
    timing_repeats: int = Field(3, ge=1, le=1000, description="forward passes timed per target (median reported)")
    turntable_frames: int = Field(24, ge=2, le=3600, description="paper: 120")
    turntable_size: Optional[int] = Field(None, ge=8, le=4096, description="turntable frame size (None = metric size)")
    turntable_pitch_deg: float = Field(0.0, ge=-89.0, le=89.0)
    frame_ms: int = Field(80, ge=10, le=5000)
    mp4: bool = Field(False, description="also write an MP4 (needs imageio-ffmpeg; skipped with a note otherwise)")
    rasterizer: Literal["auto", "torch", "gsplat"] = Field("auto", description="auto: gsplat on CUDA, else PyTorch")
    device: Device = "auto"

    @field_validator("views")
    @classmethod
    def _views(cls, v):
        if not v or len(set(v)) != len(v):
            raise ValueError(f"views must be a non-empty list without repeats, got {list(v)}")
        return v


class ReportParams(Section):
    title: str = Field("BalanceHead workflow report", min_length=1, max_length=200)
    max_turntables: int = Field(4, ge=0, le=64)
    thumbnail_px: int = Field(128, ge=16, le=1024, description="small images are upscaled (nearest) to this width")
    samples_per_yaw_bin: int = Field(6, ge=0, le=64, description="real packed images shown per 45° yaw bin")
