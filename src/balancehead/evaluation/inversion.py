"""One inversion end to end: PTI on a target, renders at the input view and a turntable, and the
per-target metrics (BalanceHead A.6.12 input-view distance; PanoLAM Table 2 novel views at front / back /
left / right when the target is a prior sample whose latent gives ground truth)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from balancehead.camera import camera_label

from .generator_io import render, to_uint8
from .image_metrics import psnr, ssim
from .pti import PTIResult, pti, render_white, weight_delta
from .targets import Target
from .turntable import turntable_frames

NOVEL_VIEWS = {"front": 0.0, "left": 90.0, "back": 180.0, "right": -90.0}


def to_tensor(img: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(device)


@dataclass
class InversionOutput:
    result: PTIResult
    delta: dict
    images: dict          # name -> (H, W, 3) uint8
    turntable: np.ndarray
    metrics: dict
    seconds: float = 0.0  # wall time of PTI itself (pivot + tuning): PanoLAM Table 3 "Recon.(s)"


def _pair_metrics(pred: torch.Tensor, gt: torch.Tensor, metric_lpips, embedder) -> dict:
    with torch.no_grad():
        out = {"psnr": float(psnr((pred + 1) / 2, (gt + 1) / 2)[0]),
               "ssim": float(ssim((pred + 1) / 2, (gt + 1) / 2)[0]),
               "lpips": float(metric_lpips(pred, gt)[0]),
               "l2": float((pred - gt).square().mean())}
    if embedder is not None:
        from balancehead.backends.identity import cosine
        e = embedder.embed([to_uint8(pred)[0], to_uint8(gt)[0]])     # the offline or the ArcFace backend
        out["id_sim"] = float(cosine(e[0], e[1]))
    return out


def invert_target(g, target: Target, camera: np.ndarray, p, perceptual, metric_lpips, embedder=None, cond=None,
                  seed: int = 0, device="cpu", progress: bool = False) -> InversionOutput:
    res = g.cfg.output_resolution if p.resolution is None else p.resolution
    img = target.image
    if img.shape[0] != res:
        from PIL import Image
        img = np.asarray(Image.fromarray(img).resize((res, res), Image.Resampling.LANCZOS))
    tgt = to_tensor(img, device)
    cam = torch.from_numpy(np.asarray(camera, np.float32))[None].to(device)
    with torch.no_grad():
        start = render_white(g, g.mapping.w_avg.view(1, 1, -1).expand(1, g.synthesis.num_ws, -1), cam, res)
    t0 = time.perf_counter()
    result = pti(g, tgt, cam, p, perceptual, cond, seed, res, progress)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        pivot_only = render_white(g, result.ws, cam, res)
        final = render_white(result.generator, result.ws, cam, res)
    metrics = {"target_id": target.target_id, "source": target.source, "input_yaw": target.yaw,
               "start": _pair_metrics(start, tgt, metric_lpips, None),
               "pivot": _pair_metrics(pivot_only, tgt, metric_lpips, None),
               "input_view": _pair_metrics(final, tgt, metric_lpips, embedder),
               "loss_pivot_first": result.history["pivot"][0] if result.history["pivot"] else None,
               "loss_pivot_last": result.history["pivot"][-1] if result.history["pivot"] else None,
               "loss_tuning_last": result.history["tuning"][-1] if result.history["tuning"] else None}
    images = {"target": img, "input_view": to_uint8(final)[0], "start": to_uint8(start)[0]}
    if target.ws is not None:
        gt_ws = torch.from_numpy(np.asarray(target.ws, np.float32))[None].to(device)
        novel = {}
        for name, yaw in NOVEL_VIEWS.items():
            c = np.asarray(camera_label(yaw, 0.0), np.float32)[None]
            gt = render(g, gt_ws, c, resolution=res)["image"]
            pred = render(result.generator, result.ws, c, resolution=res)["image"]
            images[f"novel_{name}"], images[f"gt_{name}"] = pred[0], gt[0]
            novel[name] = _pair_metrics(to_tensor(pred[0], device), to_tensor(gt[0], device), metric_lpips, embedder)
        metrics["novel_views"] = novel
    frames = turntable_frames(result.generator, result.ws, p.turntable_frames, p.turntable_pitch_deg, resolution=res)
    return InversionOutput(result, weight_delta(g, result.generator), images, frames, metrics, seconds)
