"""Throughput of the packed dataset format: shard writing, streaming reads, EG3D export.

Builds a synthetic packed dataset (random images: worst case for PNG size) in a temp dir and prints
images/s for each step. Example: python benchmarks/bench_reader.py --num 2000 --size 128 --workers 0 2
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from balancehead.camera import camera_label
from balancehead.data.conditions import save_conditions
from balancehead.data.export import export_eg3d
from balancehead.data.manifest import CONDITIONS_FILE, MANIFEST_FILE, SHARDS_DIR, write_manifest
from balancehead.data.reader import ShardDataset
from balancehead.data.shards import ShardWriter


def build(root: Path, num: int, size: int, shard_size: int, subjects: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    # Smooth random images compress like real renders; pure noise would exaggerate PNG cost.
    base = rng.integers(0, 256, (64, size // 8, size // 8, 3), dtype=np.uint8)
    rows = []
    t0 = time.perf_counter()
    with ShardWriter(root / SHARDS_DIR, shard_size) as w:
        for i in tqdm(range(num), desc="write", unit="img"):
            image = np.kron(base[i % 64], np.ones((8, 8, 1), dtype=np.uint8))
            mask = np.full((size, size), 255, np.uint8)
            yaw = float(rng.uniform(-180, 180))
            cam = camera_label(yaw, 0.0)
            shard, key = w.add(f"im{i:07d}", image, {"camera": cam, "yaw": yaw}, mask=mask)
            rows.append(dict(image_id=f"im{i:07d}", subject_id=f"s{i % subjects:05d}", role="view",
                             shard=shard, key=key, yaw=yaw, camera=cam))
    t_write = time.perf_counter() - t0
    write_manifest(rows, root / MANIFEST_FILE)
    save_conditions(root / CONDITIONS_FILE, [f"s{i:05d}" for i in range(subjects)],
                    rng.standard_normal((subjects, 512)), {"backend": "bench", "model_id": "none"})
    return t_write


def read(root: Path, workers: int, batch: int, resolution: int | None) -> tuple[float, int]:
    ds = ShardDataset(root, resolution=resolution, buffer_size=512, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers)
    n, t0 = 0, time.perf_counter()
    for b in tqdm(loader, desc=f"read w={workers}", unit="batch"):
        n += b["image"].shape[0]
    return time.perf_counter() - t0, n


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num", type=int, default=2000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--shard-size", type=int, default=500)
    ap.add_argument("--subjects", type=int, default=200)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = build(root, args.num, args.size, args.shard_size, args.subjects, args.seed)
        mb = sum(p.stat().st_size for p in (root / SHARDS_DIR).iterdir()) / 2**20
        print(f"write: {args.num} images {args.size}px in {t:.2f}s = {args.num / t:.0f} img/s, {mb:.1f} MiB of shards")
        for w in args.workers:
            t, n = read(root, w, args.batch, args.resolution)
            print(f"read (num_workers={w}, resolution={args.resolution}): {n} images in {t:.2f}s = {n / t:.0f} img/s")
        t0 = time.perf_counter()
        n = export_eg3d(root, root / "eg3d.zip", include_masks=True)
        t = time.perf_counter() - t0
        print(f"export_eg3d zip: {n} images in {t:.2f}s = {n / t:.0f} img/s")


if __name__ == "__main__":
    main()
