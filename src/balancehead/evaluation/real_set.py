"""Real images of a packed dataset for FID: features of every packed image (or a seeded subset)
computed in one streaming pass, kept with their yaw and camera so each FID variant selects its
real set by yaw without decoding twice."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from balancehead.progress import Progress, stage_log

from .features import extract


@dataclass
class RealSet:
    features: np.ndarray     # (N, F)
    yaw: np.ndarray          # (N,)
    cameras: np.ndarray      # (N, 25)
    resolution: int

    def select(self, mask: np.ndarray) -> "RealSet":
        return RealSet(self.features[mask], self.yaw[mask], self.cameras[mask], self.resolution)

    def __len__(self) -> int:
        return len(self.yaw)


def load_real_set(dataset_dir, extractor, max_reals: Optional[int], seed: int, batch_size: int = 64,
                  roles=("front", "view")) -> RealSet:
    from balancehead.data.manifest import MANIFEST_FILE, SHARDS_DIR, packed_rows, read_manifest
    from balancehead.data.shards import iter_shard

    dataset_dir = Path(dataset_dir)
    rows = [r for r in packed_rows(read_manifest(dataset_dir / MANIFEST_FILE), roles=set(roles))
            if r["yaw"] is not None and r["camera"] is not None]
    if len(rows) < 2:
        raise ValueError(f"{dataset_dir}: fewer than two packed images with yaw and camera; nothing to compare against")
    if max_reals is not None and len(rows) > max_reals:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), max_reals, replace=False))
        rows = [rows[i] for i in keep]
    by_shard: dict[str, list[dict]] = {}
    for r in rows:
        by_shard.setdefault(r["shard"], []).append(r)
    feats, yaws, cams, pending = [], [], [], []
    res = None
    bar = Progress(stage_log(), "real features", len(rows), "img")
    for shard, rs in by_shard.items():
        want = {r["key"]: r for r in rs}
        for s in iter_shard(dataset_dir / SHARDS_DIR / shard, keys=set(want)):
            res = res or s.image.shape[0]
            pending.append(s.image if s.image.shape[0] == res else _resize(s.image, res))
            yaws.append(float(want[s.key]["yaw"]))
            cams.append(np.asarray(want[s.key]["camera"], np.float32))
            if len(pending) == batch_size:
                feats.append(extract(extractor, np.stack(pending), batch_size))
                bar.update(len(pending))
                pending = []
    if pending:
        feats.append(extract(extractor, np.stack(pending), batch_size))
        bar.update(len(pending))
    bar.close()
    return RealSet(np.concatenate(feats), np.asarray(yaws), np.stack(cams), res)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS))
