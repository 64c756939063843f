"""Feed-forward Gaussian head reconstruction: seconds per reconstruction, milliseconds per rendered view and
training throughput (img/s: forward, render of the supervision views, backward) for the recon presets.

    python benchmarks/bench_recon.py [--preset panolam_tiny|perchead_tiny|panolam|perchead|tiny|paper]
                                     [--device cpu|cuda] [--batch N] [--iters N] [--render-size N]

The paper presets use a random-initialised DINOv2 of the papers' sizes (ViT-L/14 for PanoLAM, ViT-g/14 for
PercHead) built from its config -- timing only, no weights needed. Renders use gsplat when it is importable
on CUDA; otherwise the dense PyTorch rasteriser, whose memory grows with pixels x Gaussians, so paper presets
then render at --render-size (default 128) and say so.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from balancehead.camera import camera_label
from balancehead.recon.config import preset
from balancehead.recon.losses import reconstruction_loss
from balancehead.recon.model import build_model
from balancehead.recon.rasterize import gsplat_available, render_views

DINOV2_SIZES = {"panolam": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
                "perchead": dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, intermediate_size=4096,
                                 use_swiglu_ffn=True)}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, iters, device):
    fn()
    _sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / iters


def bench(name: str, device: torch.device, batch: int, iters: int, render_size: int | None):
    cfg = preset(name)
    backbone = None
    if cfg.encoder.kind == "dinov2":
        from transformers import Dinov2Config, Dinov2Model

        backbone = Dinov2Model(Dinov2Config(image_size=cfg.encoder.image_size, patch_size=14, **DINOV2_SIZES[name]))
    backend = "gsplat" if device.type == "cuda" and gsplat_available() else "torch"
    size = cfg.render_size if backend == "gsplat" or not cfg.encoder.kind == "dinov2" else (render_size or 128)
    size = render_size or size
    cfg = dataclasses.replace(cfg, render_size=size)
    t0 = time.perf_counter()
    model = build_model(cfg, backbone=backbone).to(device)
    setup = time.perf_counter() - t0
    views = cfg.views
    cams = torch.from_numpy(np.stack([camera_label(y, 0.0) for y in np.linspace(0, 360, views, endpoint=False)]))
    cams = cams[None].expand(batch, -1, -1).contiguous().to(device)
    image = torch.rand(batch, 3, 256, 256, device=device)
    target = torch.rand(batch, views, 3, size, size, device=device)
    mask = torch.ones(batch, views, 1, size, size, device=device)
    bg = (1.0, 1.0, 1.0)
    weights = dataclasses.replace(cfg.loss, perceptual=0.0, lpips=0.0)

    with torch.no_grad():
        recon = _timed(lambda: model(image[:1]), iters, device)
        out = model(image[:1])
        render = _timed(lambda: render_views(out.gaussians, cams[:1, :1], size, bg, backend), iters, device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        loss, _ = reconstruction_loss(weights, model(image), target, mask, cams, size, bg,
                                      sharpen=getattr(model, "sharpen", None), backend=backend)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train = _timed(step, iters, device)
    print(f"{name:14s} {device.type:4s} backend={backend:6s} gaussians={model.num_gaussians:6d} render={size}px "
          f"views={views} setup={setup:.2f}s recon={recon:.4f}s/img render={render * 1e3:.1f}ms/view "
          f"train={batch / train:.2f} img/s (batch {batch})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--render-size", type=int, default=None)
    args = ap.parse_args()
    names = {"tiny": ["panolam_tiny", "perchead_tiny"], "paper": ["panolam", "perchead"]}.get(args.preset, [args.preset])
    for name in names:
        bench(name, torch.device(args.device), args.batch, args.iters, args.render_size)


if __name__ == "__main__":
    main()
