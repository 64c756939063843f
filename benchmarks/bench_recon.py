"""Feed-forward Gaussian head reconstruction: seconds per reconstruction, milliseconds per rendered view and
training throughput (img/s: forward, render of the supervision views, backward) for the recon presets.

    python benchmarks/bench_recon.py [--preset panolam_tiny|perchead_tiny|panolam|perchead|tiny|paper]
                                     [--device cpu|cuda] [--batch N] [--iters N] [--render-size N] [--stage]

--stage also times the `train_recon` loop itself (train.recon_loop.ReconTrainer at params.yaml's
`train_recon` section, on random prior-shaped views) and projects the stage's training seconds.

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


def bench_stage(device: torch.device, iters: int) -> None:
    """The train_recon loop at the repository's params: img/s and the projected seconds of its `steps`."""
    import tempfile
    from pathlib import Path

    from balancehead.params import load_params
    from balancehead.recon.views import MultiViewSet
    from balancehead.train.recon_loop import ReconTrainer, build_config

    p = load_params(Path(__file__).resolve().parent.parent / "params.yaml").train_recon
    size, ids, per = build_config(p).render_size, 6, 8
    g = torch.Generator().manual_seed(0)
    n = ids * per
    data = MultiViewSet([f"s{i}" for i in range(ids)], [f"v{i}" for i in range(n)],
                        torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
                        torch.full((n, 1, size, size), 255, dtype=torch.uint8),
                        torch.from_numpy(np.stack([camera_label(45.0 * (i % per), 0.0) for i in range(n)])).float(),
                        np.array([45.0 * (i % per) for i in range(n)]), [np.arange(i * per, (i + 1) * per) for i in range(ids)])
    with tempfile.TemporaryDirectory() as work:
        trainer = ReconTrainer(p, data, Path(work), 0, device)
        trainer.train_step()
        t, cpu = time.perf_counter(), time.process_time()
        for _ in range(iters):
            trainer.train_step()
        dt, dcpu = (time.perf_counter() - t) / iters, (time.process_time() - cpu) / iters
    per_step = p.batch_size * (1 + trainer.cfg.views)
    # CPU seconds of this process: what the wall time would be on an otherwise idle machine (one thread)
    print(f"train_recon loop ({p.preset}, batch {p.batch_size}, N_v {trainer.cfg.views}, {size}px, "
          f"{torch.get_num_threads()} threads): {dt:.3f} s/step wall ({dcpu:.3f} s CPU), {per_step / dt:.1f} img/s; "
          f"{p.steps} steps ~ {dt * p.steps:.0f} s wall, {dcpu * p.steps:.0f} s CPU", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--render-size", type=int, default=None)
    ap.add_argument("--stage", action="store_true", help="also time the train_recon loop at params.yaml's values")
    args = ap.parse_args()
    names = {"tiny": ["panolam_tiny", "perchead_tiny"], "paper": ["panolam", "perchead"]}.get(args.preset, [args.preset])
    for name in names:
        bench(name, torch.device(args.device), args.batch, args.iters, args.render_size)
    if args.stage:
        bench_stage(torch.device(args.device), max(args.iters, 5))


if __name__ == "__main__":
    main()
