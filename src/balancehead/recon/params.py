"""The `train_recon` section of params.yaml: training a feed-forward Gaussian head reconstructor (issue 13).

Defaults are the embedded tiny CPU run (PanoLAM's architecture shrunk, offline random encoder, about a
minute on two cores). The paper runs are presets plus weights by path: PanoLAM (`preset: panolam`,
`encoder_weights:` a local DINOv2 ViT-L/14 directory, `views: 6`, an LPIPS term in `perceptual`, 512 px)
and PercHead (`preset: perchead`, DINOv2 ViT-g/14, DINOv2-S layers 8/11 + SAM 2.1 terms in `perceptual`).
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from balancehead.evaluation.params import PerceptualTerm
from balancehead.params_base import Section

PRESET_NAMES = ("panolam_tiny", "perchead_tiny", "panolam", "perchead")


class ReconLossParams(Section):
    """Loss weights over the preset's (null = the preset's value). PanoLAM eqs. 7-8: λ1 L1, λ3 the Gaussian
    renders (coarse and dense), λ5 silhouette; SSIM is PercHead's L1/SSIM baseline; depth is an L1 on the
    prior's depth maps inside the mask (not in the papers). Perceptual terms (λ2 LPIPS; PercHead's DINOv2 /
    SAM 2.1) are listed in `train_recon.perceptual`."""
    l1: Optional[float] = Field(None, ge=0.0, le=1e3)
    ssim: Optional[float] = Field(None, ge=0.0, le=1e3)
    mask: Optional[float] = Field(None, ge=0.0, le=1e3)
    coarse: Optional[float] = Field(None, ge=0.0, le=1e3, description="PanoLAM: weight of the coarse render")
    depth: Optional[float] = Field(None, ge=0.0, le=1e3)


class TrainReconParams(Section):
    preset: Literal["panolam_tiny", "perchead_tiny", "panolam", "perchead"] = "panolam_tiny"
    template: Optional[str] = Field(None, description="a FLAME-like .npz/.obj template; null = the embedded world head")
    encoder_weights: Optional[str] = Field(None, description=(
        "local DINOv2 directory for the paper presets (null = the preset's models/dinov2-*); unused by the tiny presets"))
    steps: int = Field(100, ge=1, le=10_000_000, description="optimizer steps")
    batch_size: int = Field(2, ge=1, le=4096, description="identities per step")
    lr: float = Field(1e-2, gt=0.0, le=1.0, description="Adam learning rate")
    lr_final: float = Field(0.1, ge=0.0, le=1.0, description="cosine decay to lr * lr_final at the last step")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    grad_clip: float = Field(1.0, ge=0.0, le=1e6, description="gradient norm clip (0 = off)")
    views: Optional[int] = Field(None, ge=1, le=64, description="N_v supervision views per sample (null = preset; PanoLAM 6)")
    input_view: Literal["random", "front"] = Field("random", description="which view of an identity is the input")
    resolution: Optional[int] = Field(None, ge=8, le=2048, description="render/supervision size (null = preset)")
    motion_warmup_steps: int = Field(0, ge=0, le=10_000_000, description=(
        "PercHead: Gaussian offsets are held still and released linearly over these steps"))
    loss: ReconLossParams = ReconLossParams()
    perceptual: list[PerceptualTerm] = Field(default_factory=list, description=(
        "perceptual terms on the final render (PanoLAM λ2: lpips; PercHead: dinov2 layers 8/11 + sam2)"))
    mix_dataset: bool = Field(False, description="also train on the packed multi-view dataset (PercHead-style captures)")
    mix_roles: tuple[str, ...] = ("front", "view")
    rasterizer: Literal["auto", "torch", "gsplat"] = "auto"
    holdout_identities: int = Field(2, ge=0, le=100_000, description="held-out prior identities scored at the end")
    checkpoint_steps: int = Field(50, ge=1, le=10_000_000)
    keep_checkpoints: int = Field(2, ge=1, le=100)
    log_steps: int = Field(10, ge=1, le=10_000_000, description="rows of the loss curve")
    requeue_exit_code: int = Field(3, ge=1, le=255)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _check(self):
        if self.preset in ("panolam", "perchead") and self.resolution is not None and self.resolution < 64:
            raise ValueError(f"resolution {self.resolution} is below 64 for the paper preset {self.preset!r}")
        if self.mix_dataset and self.loss.depth:
            raise ValueError("loss.depth needs depth on every view; the packed dataset mixed in (mix_dataset) has none")
        if not set(self.mix_roles) <= {"front", "view"} or not self.mix_roles:
            raise ValueError(f"mix_roles must be a non-empty subset of ['front', 'view'], got {list(self.mix_roles)}")
        return self
