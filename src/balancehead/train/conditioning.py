"""Labels of the generator and the discriminator for each conditioning mode (seed 000 Table 1, A.6.10).

A real batch carries a camera (25 floats), the subject's front CLIP feature (`condition`, shared by
all views — BalanceHead's semantic label), the per-view CLIP feature (`view_condition`) and, when
packed, an identity feature. The mode decides what G's mapping network sees and what D's projection
head sees:

| mode          | G label                    | D label                          |
|---------------|----------------------------|----------------------------------|
| none          | —                          | —                                |
| view          | camera (c-swap with p)     | camera                           |
| view_semantic | per-view CLIP              | camera + per-view CLIP           |
| semantic      | front CLIP (subject)       | camera + front CLIP              |
| identity      | identity                   | camera + identity                |
| view_identity | camera + identity          | camera + identity                |

D's label always starts with the 25 camera floats when it has one, so ViCiCo can shuffle the camera
part (columns 0:25) and the semantic part (25:) independently.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

CAMERA_DIM = 25
SEMANTIC_KEY = {"view_semantic": "view_condition", "semantic": "condition", "identity": "identity",
                "view_identity": "identity"}


@dataclass(frozen=True)
class LabelSpec:
    mode: str
    semantic_dim: int           # width of the semantic part (0 for none/view)

    @property
    def g_dim(self) -> int:
        if self.mode == "none":
            return 0
        if self.mode == "view":
            return CAMERA_DIM
        if self.mode == "view_identity":
            return CAMERA_DIM + self.semantic_dim
        return self.semantic_dim

    @property
    def d_dim(self) -> int:
        if self.mode == "none":
            return 0
        return CAMERA_DIM + (0 if self.mode == "view" else self.semantic_dim)

    @property
    def has_semantic(self) -> bool:
        return self.mode in SEMANTIC_KEY


def semantic_of(batch: dict, mode: str) -> torch.Tensor | None:
    """The semantic part of a real batch for this mode, with a clear error when it was not packed."""
    key = SEMANTIC_KEY.get(mode)
    if key is None:
        return None
    if key not in batch:
        what = {"view_condition": "per-view CLIP features (view_conditions.safetensors)",
                "identity": "an identity feature"}.get(key, key)
        raise ValueError(f"conditioning.mode {mode!r} needs {what}, but the packed dataset has none; "
                         "pick another train.conditioning.mode")
    return batch[key]


def g_label(spec: LabelSpec, camera: torch.Tensor, semantic: torch.Tensor | None, swap_prob: float,
            swap_camera: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """G's mapping label. In view modes each row's camera is replaced, with probability `swap_prob`,
    by `swap_camera` (another real camera): EG3D's c-swap, which keeps G from tying geometry to pose."""
    b = camera.shape[0]
    if spec.mode == "none":
        return camera.new_zeros(b, 0)
    cam = camera
    if spec.mode in ("view", "view_identity") and swap_prob > 0:
        swap = torch.rand(b, generator=generator, device=generator.device) < swap_prob
        cam = torch.where(swap[:, None].to(camera.device), swap_camera, camera)
    if spec.mode == "view":
        return cam
    if spec.mode == "view_identity":
        return torch.cat([cam, semantic], dim=1)
    return semantic


def d_label(spec: LabelSpec, camera: torch.Tensor, semantic: torch.Tensor | None) -> torch.Tensor:
    """D's label: camera (+ semantic part)."""
    if spec.mode == "none":
        return camera.new_zeros(camera.shape[0], 0)
    if spec.mode == "view":
        return camera
    return torch.cat([camera, semantic], dim=1)
