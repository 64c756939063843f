"""Multi-view training data for the reconstructors: every packed view of each identity, with its camera.

PanoLAM (§3.4) trains on GAN-prior samples: many views of one synthetic identity, rendered with known
cameras, masks and depth (`sample_prior` writes them as a packed dataset with role "prior", `splits.json`
naming the "prior" and "holdout" identities, and `depth.safetensors`). PercHead trains on multi-view
captures; the packed dataset of the data engine (roles "front"/"view", one subject per source photo) has the
same layout, so `load_views` reads both.

The views are decoded once and held in memory as uint8 (depth as float16) at the training resolution: the
embedded default has a few hundred images. A paper-scale prior (10k identities x 32 views) needs a streaming
reader instead; `load_views` refuses more than `max_images` rather than exhausting memory.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from balancehead.camera import yaw_distance
from balancehead.data.manifest import MANIFEST_FILE, SHARDS_DIR, packed_rows, read_manifest
from balancehead.data.shards import iter_shard

SPLITS_FILE = "splits.json"
DEPTH_FILE = "depth.safetensors"


@dataclass
class MultiViewSet:
    """Views of identities: images (N, 3, S, S) uint8, masks (N, 1, S, S) uint8, cameras (N, 25) float32,
    yaws (N,), depth (N, 1, S, S) float16 or None; `views[i]` = the rows of identity `subject_ids[i]`."""
    subject_ids: list[str]
    image_ids: list[str]
    images: torch.Tensor
    masks: torch.Tensor
    cameras: torch.Tensor
    yaws: np.ndarray
    views: list[np.ndarray]
    depth: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.subject_ids)

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    def front(self, identity: int) -> int:
        """The row of the identity's view nearest yaw 0 (ties: the first)."""
        rows = self.views[identity]
        return int(rows[np.argmin([yaw_distance(float(self.yaws[r]), 0.0) for r in rows])])

    def batch(self, rows) -> dict:
        """Rows (any shape) -> float tensors of that leading shape: image/mask in [0, 1], camera, depth."""
        rows = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        out = {"image": self.images[rows].float() / 255.0, "mask": self.masks[rows].float() / 255.0,
               "camera": self.cameras[rows]}
        if self.depth is not None:
            out["depth"] = self.depth[rows].float()
        return out

    def merged(self, other: "MultiViewSet") -> "MultiViewSet":
        """Both sets' identities (identity names prefixed when they collide)."""
        if (self.depth is None) != (other.depth is None):
            raise ValueError("cannot merge a view set with depth and one without")
        offset = self.num_images
        names = set(self.subject_ids)
        extra = [s if s not in names else f"mix:{s}" for s in other.subject_ids]
        return MultiViewSet(self.subject_ids + extra, self.image_ids + other.image_ids,
                            torch.cat([self.images, other.images]), torch.cat([self.masks, other.masks]),
                            torch.cat([self.cameras, other.cameras]), np.concatenate([self.yaws, other.yaws]),
                            self.views + [v + offset for v in other.views],
                            None if self.depth is None else torch.cat([self.depth, other.depth]))


def read_splits(prior_dir) -> dict[str, list[str]]:
    path = Path(prior_dir) / SPLITS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: the prior/holdout split is written by sample_prior")
    return json.loads(path.read_text(encoding="utf-8"))


def _resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if mode == "nearest":
        return torch.nn.functional.interpolate(x, size=(size, size), mode="nearest")
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                           antialias=True)


def _read_depth(root: Path, image_ids: list[str], size: int) -> torch.Tensor:
    with safe_open(str(root / DEPTH_FILE), framework="numpy") as f:
        ids = json.loads(f.metadata()["balancehead"])["ids"]
        depth = f.get_tensor("depth")
    row = {k: i for i, k in enumerate(ids)}
    missing = [i for i in image_ids if i not in row]
    if missing:
        raise KeyError(f"{root / DEPTH_FILE}: no depth for {len(missing)} image(s), e.g. {missing[:3]}")
    d = torch.from_numpy(depth[[row[i] for i in image_ids]].astype(np.float32))[:, None]
    return _resize(d, size, "nearest").to(torch.float16)   # nearest: no depth mixed across silhouettes


def load_views(root, size: int, subjects=None, roles=None, with_depth: bool = False, min_views: int = 2,
               max_images: int = 20_000) -> MultiViewSet:
    """The packed views in `root` (a prior or a packed dataset) of `subjects` (None: all) with `roles`
    (None: all), resized to `size`; identities with fewer than `min_views` views are left out."""
    root = Path(root)
    rows = packed_rows(read_manifest(root / MANIFEST_FILE), roles=None if roles is None else set(roles))
    if subjects is not None:
        wanted = set(subjects)
        rows = [r for r in rows if r["subject_id"] in wanted]
    per_subject = defaultdict(list)
    for r in rows:
        per_subject[r["subject_id"]].append(r)
    keep = sorted(s for s, rs in per_subject.items() if len(rs) >= min_views)
    rows = sorted((r for s in keep for r in per_subject[s]), key=lambda r: r["image_id"])
    if len(rows) > max_images:
        raise ValueError(f"{root}: {len(rows)} views do not fit the in-memory reader (max {max_images})")
    if not rows:
        raise ValueError(f"{root}: no identity with >= {min_views} packed views (roles {roles})")
    by_shard = defaultdict(dict)
    for i, r in enumerate(rows):
        by_shard[r["shard"]][r["key"]] = i
    images = torch.zeros(len(rows), 3, size, size, dtype=torch.uint8)
    masks = torch.zeros(len(rows), 1, size, size, dtype=torch.uint8)
    for shard, keys in sorted(by_shard.items()):
        for s in iter_shard(root / SHARDS_DIR / shard, keys=set(keys)):
            i = keys.pop(s.key)
            img = torch.from_numpy(s.image).permute(2, 0, 1)[None].float()
            mask = (torch.from_numpy(s.mask)[None, None].float() if s.mask is not None
                    else 255.0 * (img.amin(1, keepdim=True) < 250))    # white background: non-white is the head
            images[i] = _resize(img, size, "bilinear")[0].round().clamp(0, 255).to(torch.uint8)
            masks[i] = _resize(mask, size, "bilinear")[0].round().clamp(0, 255).to(torch.uint8)
        if keys:
            raise ValueError(f"{root / SHARDS_DIR / shard}: {len(keys)} sample(s) in the manifest are not in the shard")
    index = {s: k for k, s in enumerate(keep)}
    views = [[] for _ in keep]
    for i, r in enumerate(rows):
        views[index[r["subject_id"]]].append(i)
    image_ids = [r["image_id"] for r in rows]
    cameras = torch.tensor(np.asarray([r["camera"] for r in rows], dtype=np.float32))
    if cameras.shape[1:] != (25,) or not torch.isfinite(cameras).all():
        raise ValueError(f"{root}: every packed view needs a finite 25-number camera label")
    return MultiViewSet(keep, image_ids, images, masks, cameras,
                        np.asarray([float(r["yaw"]) for r in rows], dtype=np.float64),
                        [np.asarray(v, dtype=np.int64) for v in views],
                        _read_depth(root, image_ids, size) if with_depth else None)
