"""The conditioning vocabulary, in one place: the modes, the label spec a checkpoint stores, and the
labels of the generator and the discriminator for each mode (BalanceHead Table 1, A.6.3, A.6.10).
Training builds labels here; evaluation reads the spec back from the checkpoint (`LabelSpec.from_meta`).

A real batch carries a camera (25 floats), the subject's front CLIP feature (`condition`, shared by
all views — BalanceHead's semantic label), the per-view CLIP feature (`view_condition`) and, when
pack_dataset built the identity tables, the identity feature of the subject's selected front
(`identity`) and of the image itself (`view_identity`). The mode decides what G's mapping network
sees and what D's projection head sees:

| mode               | G label                           | D label                          | paper         |
|--------------------|-----------------------------------|----------------------------------|---------------|
| none               | —                                 | —                                | Fig. 2(a)     |
| view               | camera (c-swap with p)            | camera                           | Table 1       |
| view_semantic      | per-view CLIP                     | camera + per-view CLIP           | Table 1       |
| semantic           | front CLIP (subject)              | camera + front CLIP              | Table 1 (ours)|
| view_plus_semantic | camera (c-swap with p) + front CLIP | camera + front CLIP            | A.6.3, 2nd    |
| identity           | front identity feature (subject)  | camera + front identity          | A.6.10, 2nd   |
| view_identity      | per-view identity feature         | camera + per-view identity       | A.6.10, 1st   |

D's label always starts with the 25 camera floats when it has one, so ViCiCo can shuffle the camera
part (columns 0:25) and the semantic part (25:) independently. In the camera-conditioned G modes
(view, view_plus_semantic) the camera part of G's label is c-swapped with the scheduled probability
(`train.schedule.swap_probability`; 1 = the camera part carries no information, Fig. 2(b)).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..camera import CAMERA_LABEL_SIZE as CAMERA_DIM

# The modes a packed dataset can train (train.conditioning.mode lists the same names).
MODES = ("none", "view", "view_semantic", "semantic", "view_plus_semantic", "identity", "view_identity")
# the batch key of each mode's semantic part (reader.ShardDataset yields these keys)
SEMANTIC_KEY = {"view_semantic": "view_condition", "semantic": "condition", "view_plus_semantic": "condition",
                "identity": "identity", "view_identity": "view_identity"}
# modes whose G label starts with the camera (and is c-swapped)
CAMERA_IN_G = ("view", "view_plus_semantic")
# what a missing batch key means, for the error message
WHAT = {"view_condition": "per-view CLIP features (view_conditions.safetensors)",
        "condition": "front CLIP features (conditions.safetensors)",
        "identity": "front identity features (identity_conditions.safetensors; pack_dataset.identity_tables)",
        "view_identity": "per-view identity features (view_identity_conditions.safetensors; "
                         "pack_dataset.identity_tables)"}


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
        if self.mode == "view_plus_semantic":
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
            sem = 0 if mode in ("none", "view") else int(c_dim) - (CAMERA_DIM if mode == "view_plus_semantic" else 0)
            spec = cls(mode, sem)
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
        what = WHAT.get(key, key)
        raise ValueError(f"conditioning.mode {mode!r} needs {what}, but the packed dataset has none; "
                         "pick another train.conditioning.mode")
    return batch[key]


def g_label(spec: LabelSpec, camera: torch.Tensor, semantic: torch.Tensor | None, swap_prob: float,
            swap_camera: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """G's mapping label. In camera-conditioned modes each row's camera is replaced, with probability
    `swap_prob`, by `swap_camera` (another real camera): EG3D's c-swap, which keeps G from tying
    geometry to pose."""
    b = camera.shape[0]
    if spec.mode == "none":
        return camera.new_zeros(b, 0)
    if spec.mode not in CAMERA_IN_G:
        return semantic
    cam = camera
    if swap_prob > 0:
        swap = torch.rand(b, generator=generator, device=generator.device) < swap_prob
        cam = torch.where(swap[:, None].to(camera.device), swap_camera, camera)
    if spec.mode == "view":
        return cam
    return torch.cat([cam, semantic], dim=1)


def d_label(spec: LabelSpec, camera: torch.Tensor, semantic: torch.Tensor | None) -> torch.Tensor:
    """D's label: camera (+ semantic part)."""
    if spec.mode == "none":
        return camera.new_zeros(camera.shape[0], 0)
    if spec.mode == "view":
        return camera
    return torch.cat([camera, semantic], dim=1)
