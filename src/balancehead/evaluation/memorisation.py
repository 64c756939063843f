"""Memorisation check (BalanceHead A.6.13, Fig. 17): for generated samples, the nearest real training
images in CLIP space.

Each sample is conditioned on and rendered from the front (its "frontal view"), embedded with the
label_clip backend's embedder -- the one that produced the dataset's per-image CLIP features -- and
compared (cosine) with every packed training image's feature in `view_conditions.safetensors`. A
nearest neighbour at cosine ~1 that also looks the same means the generator reproduces a training
image; the strip shows each sample beside its neighbours so a reader can judge. With the offline
embedder the features are not semantic, so the neighbours are only as meaningful as that embedder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fid_suite import render_fakes
from .identity_metrics import front_request


@dataclass
class MemorisationResult:
    table: dict            # JSON-ready: samples with their neighbours (image id, subject, yaw, cosine)
    strip: np.ndarray      # (rows * H, (1 + k) * W, 3) uint8: generated | nearest | 2nd | ...
    nearest_cosine: float  # mean over samples of the cosine to the nearest training image


def nearest_training(generated: np.ndarray, training: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(G, D), (T, D) -> indices (G, k) of the k most cosine-similar training rows, best first, and
    their cosines (G, k). Ties go to the lower training index."""
    a = np.asarray(generated, np.float64)
    b = np.asarray(training, np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    sims = a @ b.T
    k = min(k, b.shape[0])
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(sims, idx, axis=1)


def _training_images(dataset_dir: Path, image_ids: list[str], size: int) -> dict[str, np.ndarray]:
    from PIL import Image

    from balancehead.data.manifest import MANIFEST_FILE, SHARDS_DIR, packed_rows, read_manifest
    from balancehead.data.shards import iter_shard

    want = set(image_ids)
    rows = [r for r in packed_rows(read_manifest(dataset_dir / MANIFEST_FILE)) if r["image_id"] in want]
    by_shard: dict[str, dict[str, str]] = {}
    for r in rows:
        by_shard.setdefault(r["shard"], {})[r["key"]] = r["image_id"]
    out = {}
    for shard, keys in by_shard.items():
        for s in iter_shard(dataset_dir / SHARDS_DIR / shard, keys=set(keys)):
            img = s.image if s.image.shape[0] == size else np.asarray(
                Image.fromarray(s.image).resize((size, size), Image.Resampling.LANCZOS))
            out[keys[s.key]] = img
    return out


def strip_image(generated: np.ndarray, neighbours: list[list[np.ndarray]], gap: int = 2) -> np.ndarray:
    """One row per sample: the generated image, then its neighbours, on white with `gap` px between."""
    n, h, w = generated.shape[:3]
    cols = 1 + max((len(r) for r in neighbours), default=0)
    out = np.full((n * h + (n - 1) * gap, cols * w + (cols - 1) * gap + 2 * gap, 3), 255, np.uint8)
    for i in range(n):
        y = i * (h + gap)
        out[y:y + h, :w] = generated[i]
        for j, img in enumerate(neighbours[i]):
            x = (j + 1) * (w + gap) + 2 * gap          # a wider gap after the generated column
            out[y:y + h, x:x + w] = img
    return out


def memorisation_check(g, cond, clip_embedder, dataset_dir, n: int, k: int, seed: int, psi: float,
                       batch_size: int, device) -> MemorisationResult:
    from balancehead.data.conditions import load_conditions
    from balancehead.data.manifest import MANIFEST_FILE, VIEW_CONDITIONS_FILE, read_manifest

    dataset_dir = Path(dataset_dir)
    ids, feats, meta = load_conditions(dataset_dir / VIEW_CONDITIONS_FILE)
    if not len(ids):
        raise ValueError(f"{dataset_dir / VIEW_CONDITIONS_FILE} holds no training features")
    fakes = render_fakes(g, cond, front_request(n), seed, psi, batch_size, device, white_background=True)
    gen = clip_embedder.embed(fakes["image"], batch_size=batch_size)
    if gen.shape[1] != feats.shape[1]:
        raise ValueError(f"the label_clip embedder gives {gen.shape[1]}-d features, the dataset's are "
                         f"{feats.shape[1]}-d: evaluate with the label_clip params the dataset was built with")
    idx, sims = nearest_training(gen, feats.astype(np.float32), k)
    info = {r["image_id"]: r for r in read_manifest(dataset_dir / MANIFEST_FILE, ["image_id", "subject_id", "yaw"])}
    chosen = sorted({ids[j] for j in idx.ravel()})
    images = _training_images(dataset_dir, chosen, fakes["image"].shape[1])
    samples = []
    for i in range(len(idx)):
        samples.append({"sample": i, "neighbours": [
            {"image_id": ids[j], "subject_id": info.get(ids[j], {}).get("subject_id"),
             "yaw": info.get(ids[j], {}).get("yaw"), "cosine": round(float(c), 6)}
            for j, c in zip(idx[i], sims[i])]})
    embedder_name = getattr(clip_embedder, "name", type(clip_embedder).__name__)
    table = {"embedder": embedder_name, "training_features": {"backend": meta.get("backend"),
                                                               "model_id": meta.get("model_id"),
                                                               "offline": meta.get("offline")},
             "same_embedder": meta.get("backend") == embedder_name, "n_training": len(ids),
             "render": "conditioned on and rendered from the front (yaw 0, pitch 0), white background",
             "samples": samples}
    strip = strip_image(fakes["image"], [[images[ids[j]] for j in row if ids[j] in images] for row in idx])
    return MemorisationResult(table, strip, float(sims[:, 0].mean()))
