"""The conditioning vocabulary, in one place: the modes, the label spec a checkpoint stores, and the
labels of the generator and the discriminator for each mode (BalanceHead Table 1, A.6.10). Training
builds labels here; evaluation reads the spec back from the checkpoint (`LabelSpec.from_meta`).

A real batch carries a camera (25 floats), the subject's front CLIP feature (`condition`, shared by
all views — BalanceHead's semantic label) and the per-view CLIP feature (`view_condition`). The mode
decides what G's mapping network sees and what D's projection head sees:

| mode          | G label                    | D label                          |
|---------------|----------------------------|----------------------------------|
| none          | —                          | —                                |
| view          | camera (c-swap with p)     | camera                           |
| view_semantic | per-view CLIP              | camera + per-view CLIP           |
| semantic      | front CLIP (subject)       | camera + front CLIP              |

D's label always starts with the 25 camera floats when it has one, so ViCiCo can shuffle the camera
part (columns 0:25) and the semantic part (25:) independently.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..camera import CAMERA_LABEL_SIZE as CAMERA_DIM

# The modes a packed dataset can train (train.conditioning.mode lists the same names).
MODES = ("none", "view", "view_semantic", "semantic")
SEMANTIC_KEY = {"view_semantic": "view_condition", "semantic": "condition"}


@dataclass(frozen=True)
class LabelSpec:
    mode: str
    semantic_dim: int           # width of the semantic part (0 for none/view)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"conditioning mode {self.mode!r} is not one of {MODES}")

    @property
    def g_dim(self) -> int:
        if self.mode == "none":
            return 0
        if self.mode == "view":
            return CAMERA_DIM
        return self.semantic_dim

    @property
    def d_dim(self) -> int:
        if self.mode == "none":
            return 0
        return CAMERA_DIM + (0 if self.mode == "view" else self.semantic_dim)

    @property
    def has_semantic(self) -> bool:
        return self.mode in SEMANTIC_KEY

    def to_meta(self) -> dict:
        """What a checkpoint stores (model.json meta `label_spec`)."""
        return {"mode": self.mode, "semantic_dim": self.semantic_dim, "camera_dim": CAMERA_DIM}

    @classmethod
    def from_meta(cls, meta: dict, c_dim: int) -> "LabelSpec":
        """The spec of a checkpoint: its stored `label_spec`, else (a checkpoint imported from elsewhere)
        its `conditioning` mode with the semantic width taken from G's label width `c_dim`."""
        stored = meta.get("label_spec")
        if stored is not None:
            spec = cls(stored["mode"], int(stored["semantic_dim"]))
        elif "conditioning" in meta:
            mode = meta["conditioning"]
            spec = cls(mode, 0 if mode in ("none", "view") else int(c_dim))
        else:
            raise ValueError("checkpoint meta has neither 'label_spec' nor 'conditioning'")
        if spec.g_dim != c_dim:
            raise ValueError(f"checkpoint label spec {spec} gives G labels of width {spec.g_dim}, "
                             f"but the generator expects {c_dim}")
        return spec


def semantic_of(batch: dict, mode: str) -> torch.Tensor | None:
    """The semantic part of a real batch for this mode, with a clear error when it was not packed."""
    key = SEMANTIC_KEY.get(mode)
    if key is None:
        return None
    if key not in batch:
        what = {"view_condition": "per-view CLIP features (view_conditions.safetensors)"}.get(key, key)
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
    if spec.mode == "view" and swap_prob > 0:
        swap = torch.rand(b, generator=generator, device=generator.device) < swap_prob
        cam = torch.where(swap[:, None].to(camera.device), swap_camera, camera)
    if spec.mode == "view":
        return cam
    return semantic


def d_label(spec: LabelSpec, camera: torch.Tensor, semantic: torch.Tensor | None) -> torch.Tensor:
    """D's label: camera (+ semantic part)."""
    if spec.mode == "none":
        return camera.new_zeros(camera.shape[0], 0)
    if spec.mode == "view":
        return camera
    return torch.cat([camera, semantic], dim=1)
