"""Inversion targets: held-out prior identities (their latents give ground truth at any view) or a
folder of photos: white-background head crops whose camera comes from the pose backend, or in-the-wild
photos (BalanceHead A.6.12) put through the data engine's own preprocessing (`wild_targets`)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from safetensors import safe_open

from balancehead.camera import camera_label, yaw_distance
from balancehead.fileio import read_safetensors_meta

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class Target:
    target_id: str
    image: np.ndarray                # (H, W, 3) uint8, white background
    camera: Optional[np.ndarray]     # (25,) known camera, or None (estimate it)
    yaw: Optional[float] = None
    ws: Optional[np.ndarray] = None  # ground-truth latent (prior targets)
    source: str = ""
    pose: Optional[dict] = None      # wild targets: what the pose backend found (yaw, pitch, confidence, crop box)


def read_latents(prior_dir) -> tuple[list[str], dict[str, np.ndarray], dict]:
    with safe_open(str(Path(prior_dir) / "latents.safetensors"), framework="numpy") as f:
        meta = read_safetensors_meta(f)
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return meta["ids"], tensors, meta


def prior_targets(prior_dir, max_targets: int, input_yaw: float) -> list[Target]:
    """One target per held-out identity: its packed view nearest `input_yaw`."""
    from balancehead.data.manifest import MANIFEST_FILE, SHARDS_DIR, packed_rows, read_manifest
    from balancehead.data.shards import iter_shard

    prior_dir = Path(prior_dir)
    holdout = json.loads((prior_dir / "splits.json").read_text())["holdout"][:max_targets]
    if not holdout:
        raise ValueError(f"{prior_dir}: no held-out identities; set sample_prior.holdout_identities >= 1")
    ids, lat, _ = read_latents(prior_dir)
    row_of = {s: i for i, s in enumerate(ids)}
    rows = packed_rows(read_manifest(prior_dir / MANIFEST_FILE))
    out = []
    for sid in holdout:
        mine = [r for r in rows if r["subject_id"] == sid]
        if not mine:
            continue
        best = min(mine, key=lambda r: (yaw_distance(r["yaw"], input_yaw), r["image_id"]))
        sample = next(iter_shard(prior_dir / SHARDS_DIR / best["shard"], keys={best["key"]}))
        out.append(Target(best["image_id"], sample.image, np.asarray(best["camera"], np.float32), float(best["yaw"]),
                          lat["ws"][row_of[sid]], source=f"prior:{best['shard']}:{best['key']}"))
    return out


def _folder_images(folder, max_targets: int):
    """(target id, RGB uint8 at full size, path) of the first `max_targets` images under `folder`."""
    from PIL import Image

    from ..imageload import DECODER_FORMATS

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:max_targets]
    if not files:
        raise FileNotFoundError(f"invert.folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    for f in files:
        with Image.open(f, formats=DECODER_FORMATS) as im:     # no EPS/PS (Ghostscript) whatever the name
            rgb = np.asarray(im.convert("RGB"))
        yield "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f.stem), rgb, f


def folder_targets(folder, max_targets: int, size: int) -> list[Target]:
    from PIL import Image

    return [Target(tid, np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.LANCZOS)), None,
                   source=str(f))
            for tid, rgb, f in _folder_images(folder, max_targets)]


def wild_targets(folder, max_targets: int, segmenter, pose_estimator, camera_params=None) -> list[Target]:
    """In-the-wild photos through the data engine's preprocessing (stages/preprocess.py), so a photo is
    cropped and posed exactly as training images were: person mask of the whole frame, head-centred square
    crop from that mask (`segmenter.crop`, the data engine's crop), head pose estimated on the whole frame
    with the background masked out, camera label from that pose. The background outside the mask is then
    made white, as the generator renders (the data engine's images are on white by construction). The crop
    has the segmenter's output size. A photo in which no head is detected gets `pose['detected'] = False`."""
    out = []
    for tid, rgb, f in _folder_images(folder, max_targets):
        mask = segmenter.mask(rgb)
        crop, crop_mask, box = segmenter.crop(rgb, mask)
        est = pose_estimator.estimate(rgb, mask)
        white = np.where(crop_mask[..., None] > 127, crop, 255).astype(np.uint8)
        yaw, pitch = float(est["yaw"]), float(est["pitch"])
        info = {"yaw": yaw, "pitch": pitch, "confidence": float(est.get("confidence", 0.0)),
                "detected": bool(est.get("detected", True)), "crop_box": box}
        out.append(Target(tid, white, _camera(yaw, pitch, camera_params), yaw, source=str(f), pose=info))
    return out


def _camera(yaw: float, pitch: float, camera_params=None) -> np.ndarray:
    kw = {}
    if camera_params is not None:
        kw = dict(radius=camera_params.radius, fov_deg=camera_params.fov_deg, pivot=camera_params.pivot)
    return camera_label(yaw, pitch, **kw)


def estimate_camera(target: Target, estimator, camera_params=None) -> np.ndarray:
    """Camera of a white-background image from the pose backend (yaw, pitch at the default radius/FOV)."""
    pose = estimator.estimate(target.image)
    target.yaw = float(pose["yaw"])
    return _camera(pose["yaw"], pose["pitch"], camera_params)
