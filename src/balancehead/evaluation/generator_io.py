"""Loading a trained generator and drawing its conditioning labels, the one place that knows how each
conditioning mode builds `c` for the mapping network.

The mode comes from the label spec the checkpoint stores (balancehead.train.conditioning, the one
vocabulary of modes); here each mode draws `c` for sampling:
  none           c has width 0
  view           c = the 25-float camera label of the conditioning camera
  semantic       c = a subject's front CLIP feature (row of conditions.safetensors)
  view_semantic  c = an image's own CLIP feature (row of view_conditions.safetensors)
  view_plus_semantic  c = [conditioning camera | a subject's front CLIP feature]
  identity       c = a subject's front identity feature (row of identity_conditions.safetensors)
  view_identity  c = an image's own identity feature (row of view_identity_conditions.safetensors)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from balancehead.camera import camera_label
from balancehead.models import Generator, load_checkpoint
from balancehead.train.conditioning import LabelSpec

def find_checkpoint(path) -> Path:
    """The checkpoint directory holding G_ema under `path`: `path` itself, else the newest-named
    subdirectory with a model.json naming G_ema (a `final` directory wins)."""
    path = Path(path)
    def has_g(p: Path) -> bool:
        f = p / "model.json"
        return f.exists() and "G_ema" in json.loads(f.read_text(encoding="utf-8")).get("modules", {})
    if has_g(path):
        return path
    if has_g(path / "final"):
        return path / "final"
    found = sorted(p.parent for p in path.rglob("model.json") if has_g(p.parent))
    if not found:
        raise FileNotFoundError(f"no checkpoint with a G_ema module under {path}; run the train stage first, or set "
                                "generator.checkpoint to a directory written by `balancehead import-checkpoint`")
    return found[-1]


def load_generator(path, device: torch.device | str = "cpu") -> tuple[Generator, dict]:
    """G_ema of a trained run or of an imported official checkpoint (meta "imported_from" says which file)."""
    modules, meta = load_checkpoint(find_checkpoint(path), map_location=device)
    g = modules["G_ema"].eval().requires_grad_(False)
    return g, meta


@dataclass
class ConditionSource:
    """Draws mapping-network labels for a generator.

    `subject` rows (front features) serve 'semantic'; `image` rows (per-view features) with their
    yaws serve 'view_semantic' (its front condition is drawn among images with small |yaw|).
    """
    mode: str
    c_dim: int
    subject: Optional[np.ndarray] = None        # (S, D)
    image: Optional[np.ndarray] = None          # (I, D)
    image_yaw: Optional[np.ndarray] = None      # (I,)
    front_max_abs_yaw: float = 22.5
    image_camera: Optional[np.ndarray] = None   # (I, 25) each image row's camera (NaN where unknown)

    def image_rows(self, index: np.ndarray) -> np.ndarray:
        """'view_semantic' labels of given image rows: each image's own CLIP feature (FID-view)."""
        if self.image is None:
            raise ValueError("no per-image condition table (view_conditions.safetensors) in the dataset")
        return self.image[np.asarray(index)].astype(np.float32)

    def _rows(self, table, rng, n, idx=None) -> tuple[np.ndarray, np.ndarray]:
        if table is None or len(table) == 0:
            raise ValueError(f"conditioning mode {self.mode!r} needs a condition table; none was found in the dataset")
        pool = np.arange(len(table)) if idx is None else idx
        if len(pool) == 0:
            pool = np.arange(len(table))
        pick = pool[rng.integers(0, len(pool), n)]
        return table[pick].astype(np.float32), pick

    def draw(self, rng: np.random.Generator, n: int, cond_cameras: Optional[np.ndarray] = None,
             front: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """-> (c (n, c_dim) float32, index of the table row used (-1 for none/view)).

        cond_cameras: (n, 25) conditioning cameras for camera-conditioned modes (default: front).
        front: for 'view_semantic', draw features of front images.
        """
        if cond_cameras is None:
            cond_cameras = np.repeat(camera_label(0.0, 0.0)[None], n, axis=0)
        index = np.full(n, -1, dtype=np.int64)
        if self.mode == "none":
            c = np.zeros((n, 0), np.float32)
        elif self.mode == "view":
            c = np.asarray(cond_cameras, np.float32)
        elif self.mode in ("semantic", "identity"):
            c, index = self._rows(self.subject, rng, n)
        elif self.mode == "view_plus_semantic":
            sem, index = self._rows(self.subject, rng, n)
            c = np.concatenate([np.asarray(cond_cameras, np.float32), sem], axis=1)
        elif self.mode in ("view_semantic", "view_identity"):
            sel = None
            if front and self.image_yaw is not None:
                sel = np.flatnonzero(np.abs(self.image_yaw) <= self.front_max_abs_yaw)
            c, index = self._rows(self.image, rng, n, sel)
        else:
            raise ValueError(f"unknown conditioning mode {self.mode!r}")
        if c.shape[1] != self.c_dim:
            raise ValueError(f"conditioning {self.mode!r} built labels of width {c.shape[1]}, the generator expects {self.c_dim}")
        return c, index


def condition_source(g: Generator, meta: dict, dataset_dir=None, front_max_abs_yaw: float = 22.5) -> ConditionSource:
    """Condition source for `g`, reading the dataset's condition tables when the mode needs them."""
    from balancehead.data.conditions import load_conditions
    from balancehead.data.manifest import (CONDITIONS_FILE, IDENTITY_CONDITIONS_FILE, MANIFEST_FILE,
                                           VIEW_CONDITIONS_FILE, VIEW_IDENTITY_CONDITIONS_FILE, read_manifest)

    subject = image = image_yaw = image_camera = None
    mode = LabelSpec.from_meta(meta, g.cfg.c_dim).mode
    identity = mode in ("identity", "view_identity")       # BalanceHead A.6.10: identity tables instead of CLIP
    subject_file = IDENTITY_CONDITIONS_FILE if identity else CONDITIONS_FILE
    image_file = VIEW_IDENTITY_CONDITIONS_FILE if identity else VIEW_CONDITIONS_FILE
    if dataset_dir is not None and (Path(dataset_dir) / subject_file).exists():
        _, subject, _ = load_conditions(Path(dataset_dir) / subject_file)
    if mode in ("view_semantic", "view_identity") and dataset_dir is not None and (Path(dataset_dir) / image_file).exists():
        ids, image, _ = load_conditions(Path(dataset_dir) / image_file)
        rows = {r["image_id"]: r for r in read_manifest(Path(dataset_dir) / MANIFEST_FILE, ["image_id", "yaw", "camera"])}
        yaw_of = {i: r["yaw"] for i, r in rows.items()}
        image_yaw = np.array([yaw_of.get(i) if yaw_of.get(i) is not None else 180.0 for i in ids], np.float64)
        image_camera = np.full((len(ids), 25), np.nan, np.float32)
        for k, i in enumerate(ids):
            cam = rows.get(i, {}).get("camera")
            if cam is not None and len(cam) == 25:
                image_camera[k] = np.asarray(cam, np.float32)
    return ConditionSource(mode, g.cfg.c_dim, subject, image, image_yaw, front_max_abs_yaw, image_camera)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def composite_white(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Foreground over a white backdrop (images in [-1, 1], mask in [0, 1])."""
    return image * mask + (1 - mask)


@torch.no_grad()
def render(g: Generator, ws: torch.Tensor, cameras, z: Optional[torch.Tensor] = None, resolution=None,
           white_background: bool = True, batch_size: int = 16):
    """Render latents `ws` (B, num_ws, w_dim) at `cameras` (B, 25) -> dict of numpy arrays:
    image (B,H,W,3) uint8, mask (B,H,W) uint8, depth (B,r,r) float32, camera (B,25) (after self-adaptation)."""
    dev = ws.device
    cams = torch.as_tensor(np.asarray(cameras, np.float32), device=dev)
    out = {"image": [], "mask": [], "depth": [], "camera": []}
    for s in range(0, len(ws), batch_size):
        zz = None if z is None else z[s:s + batch_size]
        o = g(zz, None, cams[s:s + batch_size], ws=ws[s:s + batch_size], output_resolution=resolution)
        img = composite_white(o.image, o.mask) if white_background else o.image
        out["image"].append(to_uint8(img))
        out["mask"].append((o.mask[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())
        out["depth"].append(o.depth[:, 0].float().cpu().numpy())
        out["camera"].append(o.camera.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}
