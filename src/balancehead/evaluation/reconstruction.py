"""Feed-forward head reconstruction: one photo -> 3D Gaussians, its exports, and the PanoLAM Table 2 / 3 protocol.

* `reconstruct`: a reconstructor (recon.model) on one white-background head image (+ its person mask) ->
  one Gaussian head and the seconds the forward pass took (median of `repeats`, PanoLAM Table 3 "Recon.(s)");
* `render_head` / `export_head`: renders at given cameras; the standard 3DGS `.ply` (recon/ply.py) and a
  360-degree turntable (GIF always, MP4 when an ffmpeg writer exists);
* `view_metrics` / `summarise`: PanoLAM §4.1 "Evaluation Metrics" and Table 2 -- PSNR, SSIM, LPIPS on the
  front / back / left / right views, identity similarity (CSIM) on the front view only, and APD.

APD (Average Pose Distance, PanoLAM Table 2 after Deng et al. 2019): the pose estimator is run on the
rendered and on the ground-truth view, and APD is the mean L2 distance of the two (yaw, pitch, roll)
vectors in radians (yaw difference wrapped to [-pi, pi]), averaged over views and targets. With the offline
pose backend (a template bank of procedural renders, roll always 0) it is labelled offline wherever shown.

Images are uint8 (H, W, 3) in and out; PSNR/SSIM are on [0, 1], the LPIPS-slot distance on [-1, 1] (the
convention of evaluation/perceptual.py). The same functions score the reconstructor and PTI, so both rows of
the table are measured alike.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from balancehead import fileio
from balancehead.camera import camera_label, wrap_yaw
from balancehead.recon.gaussians import Gaussians
from balancehead.recon.ply import encode
from balancehead.recon.rasterize import render_views, turntable

from .image_metrics import psnr, ssim
from .inversion import NOVEL_VIEWS
from .turntable import gif_bytes, mp4_bytes

WHITE = (1.0, 1.0, 1.0)
METRICS = ("psnr", "ssim", "lpips", "apd", "csim")


def to_unit(img: np.ndarray, device="cpu") -> torch.Tensor:
    """uint8 (H, W, C) -> float (1, C, H, W) in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(img)).float().div(255.0)
    x = x[..., None] if x.dim() == 2 else x
    return x.permute(2, 0, 1)[None].to(device)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (..., C, H, W) in [0, 1] -> uint8 (..., H, W, C)."""
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()


def resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size and img.shape[1] == size:
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS))


def whiten(img: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Composite a photo on white with its person mask (uint8, 255 = person), as the prior samples are."""
    if mask is None:
        return img
    a = (np.asarray(mask, np.float32) / 255.0)[..., None]
    return (img.astype(np.float32) * a + 255.0 * (1 - a)).round().astype(np.uint8)


@torch.no_grad()
def reconstruct(model: torch.nn.Module, image: np.ndarray, mask: np.ndarray | None = None,
                repeats: int = 1) -> tuple[Gaussians, float]:
    """One head from one uint8 image (H, W, 3) (+ mask (H, W) uint8) -> (Gaussians (N, ...), seconds): the
    median wall time of `repeats` forward passes after one untimed warm-up (CUDA synchronised)."""
    device = next(model.parameters()).device
    x = to_unit(image, device)
    m = None if mask is None else to_unit(mask, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = model(x, m)
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = model(x, m)
        sync()
        times.append(time.perf_counter() - t0)
    return out.gaussians.select(0).detach(), float(statistics.median(times))


def target_mask(prior_dir, target) -> np.ndarray | None:
    """The person mask packed with a prior target's image (targets.prior_targets: source "prior:<shard>:<key>")."""
    from balancehead.data.manifest import SHARDS_DIR
    from balancehead.data.shards import iter_shard

    kind, shard, key = target.source.split(":", 2)
    if kind != "prior":
        return None
    sample = next(iter_shard(Path(prior_dir) / SHARDS_DIR / shard, keys={key}), None)
    return None if sample is None else sample.mask


def mean_images(images: list[np.ndarray]) -> np.ndarray:
    """Pixel-wise mean of uint8 images of one size (the mean head at one view)."""
    return np.mean(np.stack(images).astype(np.float64), axis=0).round().astype(np.uint8)


def mean_head_views(prior_dir, views, size: int, max_angle_deg: float = 22.5) -> dict:
    """The mean-head baseline at each named view: the mean of the prior's *training* identities' packed images
    nearest that view (yaw gap and pitch combined, within `max_angle_deg`; one per identity), resized to `size`.
    The best guess that ignores the input photo -- a reconstructor must beat it on held-out identities (the
    baseline train_recon's held-out check also reports)."""
    import json

    from balancehead.camera import yaw_distance
    from balancehead.data.manifest import MANIFEST_FILE, SHARDS_DIR, packed_rows, read_manifest
    from balancehead.data.shards import iter_shard

    prior_dir = Path(prior_dir)
    train = set(json.loads((prior_dir / "splits.json").read_text())["prior"])
    rows = [r for r in packed_rows(read_manifest(prior_dir / MANIFEST_FILE)) if r["subject_id"] in train]
    chosen: dict[str, list[dict]] = {}
    for v in views:
        for sid in sorted({r["subject_id"] for r in rows}):
            gap = lambda r: float(np.hypot(yaw_distance(r["yaw"], NOVEL_VIEWS[v]), r["pitch"]))  # noqa: E731
            best = min((r for r in rows if r["subject_id"] == sid), key=lambda r: (gap(r), r["image_id"]))
            if gap(best) <= max_angle_deg:
                chosen.setdefault(v, []).append(best)
    wanted: dict[str, set] = {}
    for rs in chosen.values():
        for r in rs:
            wanted.setdefault(r["shard"], set()).add(r["key"])
    pixels = {(shard, s.key): resize(s.image, size) for shard, keys in sorted(wanted.items())
              for s in iter_shard(prior_dir / SHARDS_DIR / shard, keys=keys)}
    return {v: mean_images([pixels[(r["shard"], r["key"])] for r in rs]) for v, rs in chosen.items()}


def view_cameras(views, pitch_deg: float = 0.0) -> np.ndarray:
    """(V, 25) labels of the named views (NOVEL_VIEWS yaws; the default camera, as invert renders its ground
    truth -- without self-adaptation the label is the rendering camera)."""
    return np.stack([camera_label(NOVEL_VIEWS[v], pitch_deg) for v in views])


@torch.no_grad()
def render_head(g: Gaussians, cameras: np.ndarray, size: int, backend: str = "auto") -> np.ndarray:
    """One head at cameras (V, 25) -> (V, size, size, 3) uint8 on white."""
    batched = Gaussians(*(t[None] for t in (g.means, g.quats, g.scales, g.opacities, g.colors)))
    cams = torch.from_numpy(np.asarray(cameras, np.float32))[None]
    return to_uint8(render_views(batched, cams, size, WHITE, backend)[0][0])


def turntable_uint8(g: Gaussians, frames: int, size: int, pitch_deg: float = 0.0, backend: str = "auto") -> np.ndarray:
    """(frames, size, size, 3) uint8: yaw 0 (front) first, evenly around the head -- as PTI's turntable."""
    return to_uint8(turntable(g, frames, size, WHITE, pitch_deg, backend))


def export_head(g: Gaussians, directory, frames: int, size: int, frame_ms: int = 80, mp4: bool = False,
                pitch_deg: float = 0.0, backend: str = "auto", log=None) -> list[str]:
    """Write `head.ply` (standard 3DGS) and `turntable.gif` (+ `turntable.mp4` when asked and possible) into
    `directory`; -> the names written."""
    directory = Path(directory)
    fileio.write_bytes(directory / "head.ply", encode(g))
    tt = turntable_uint8(g, frames, size, pitch_deg, backend)
    fileio.write_bytes(directory / "turntable.gif", gif_bytes(tt, frame_ms))
    written = ["head.ply", "turntable.gif"]
    if mp4:
        data = mp4_bytes(tt, fps=max(1, 1000 // frame_ms))
        if data is None:
            if log is not None:
                log.warning("no MP4 writer (imageio-ffmpeg) installed; wrote the GIF only")
        else:
            fileio.write_bytes(directory / "turntable.mp4", data)
            written.append("turntable.mp4")
    return written


def pose_distance(a: dict, b: dict) -> float:
    """L2 distance (radians) of two (yaw, pitch, roll) estimates in degrees, the yaw difference wrapped."""
    d = np.radians([float(wrap_yaw(a["yaw"] - b["yaw"])), a["pitch"] - b["pitch"], a.get("roll", 0.0) - b.get("roll", 0.0)])
    return float(np.linalg.norm(d))


@dataclass
class Scorers:
    """What the metrics run through: the LPIPS-slot distance (perceptual.PerceptualLoss of one term), the
    identity embedder (`embed_one`), the pose estimator (`estimate`) or None (no APD)."""
    lpips: torch.nn.Module
    embedder: object
    pose: object | None
    device: str | torch.device = "cpu"

    @torch.no_grad()
    def view(self, pred: np.ndarray, gt: np.ndarray, identity: bool) -> dict:
        """Metrics of one rendered view against its ground truth (uint8 images of equal size)."""
        from balancehead.backends.identity import cosine

        a, b = to_unit(pred, self.device), to_unit(gt, self.device)
        out = {"psnr": float(psnr(a, b)[0]), "ssim": float(ssim(a, b)[0]),
               "lpips": float(self.lpips(a * 2 - 1, b * 2 - 1)[0])}
        if self.pose is not None:
            out["apd"] = pose_distance(self.pose.estimate(pred), self.pose.estimate(gt))
        if identity:
            out["csim"] = float(cosine(self.embedder.embed_one(pred), self.embedder.embed_one(gt)))
        return out


def score_views(scorers: Scorers, preds: dict, gts: dict) -> dict:
    """{view: metrics} for the views present in both; CSIM on the front view only (PanoLAM §4.2)."""
    return {v: scorers.view(preds[v], gts[v], identity=(v == "front")) for v in gts if v in preds}


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def summarise(per_target: list[dict], seconds: list[float]) -> dict:
    """Table 2 row: each metric averaged over targets and views (CSIM: front only), per-view means, and the
    median seconds per reconstruction (Table 3). `per_target` holds {view: metrics} dicts."""
    row: dict = {"targets": len(per_target)}
    for k in METRICS:
        row[k] = _mean([m.get(k) for t in per_target for m in t.values()])
    views = sorted({v for t in per_target for v in t})
    for v in views:
        for k in METRICS:
            val = _mean([t[v].get(k) for t in per_target if v in t])
            if val is not None:
                row[f"{v}_{k}"] = val
    row["seconds_per_reconstruction"] = float(np.median(seconds)) if seconds else None
    return row
