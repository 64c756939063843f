"""Evaluation figures: PTI seconds per target (tiny and paper step counts, tiny model), MKNND time for
50k embeddings, FID feature throughput (offline extractor; InceptionV3 architecture with random weights).

    python benchmarks/bench_eval.py [--quick]

--quick shortens PTI (the paper step count is timed on a prefix of steps and extrapolated; said so).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def bench_pti(w_steps: int, g_steps: int, measure_steps: int | None = None) -> float:
    from balancehead.camera import camera_label
    from balancehead.evaluation.params import InvertParams
    from balancehead.evaluation.perceptual import PerceptualLoss
    from balancehead.evaluation.pti import pti, render_white
    from balancehead.models import Generator, GeneratorConfig

    g = Generator(GeneratorConfig.tiny()).eval()
    cam = torch.from_numpy(camera_label(0.0, 0.0))[None]
    with torch.no_grad():
        target = render_white(g, g.map(torch.randn(1, 32, generator=torch.Generator().manual_seed(0)), cam), cam)
    ws_, gs_ = (w_steps, g_steps) if measure_steps is None else (min(w_steps, measure_steps), min(g_steps, measure_steps))
    p = InvertParams(w_steps=ws_, g_steps=gs_)
    t = time.perf_counter()
    pti(g, target, cam, p, PerceptualLoss(p.perceptual))
    dt = time.perf_counter() - t
    return dt * (w_steps + g_steps) / (ws_ + gs_)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"threads: {torch.get_num_threads()}")

    print(f"PTI tiny model, tiny steps (60+40): {bench_pti(60, 40):.2f} s/target")
    measured = 20 if args.quick else None
    est = bench_pti(500, 350, measured)
    print(f"PTI tiny model, paper steps (500+350): {est:.2f} s/target" + (" (extrapolated from 20+20 steps)" if measured else ""))

    from balancehead.evaluation.diversity import mknnd
    for n in (10_000, 50_000):
        e = np.random.default_rng(0).standard_normal((n, 512)).astype(np.float32)
        t = time.perf_counter()
        v = mknnd(e, 5)
        print(f"MKNND k=5, {n} x 512 embeddings: {time.perf_counter() - t:.1f} s (value {v:.4f})")

    from balancehead.evaluation.features import OfflineFeatures, _fid_inception, extract
    imgs = np.random.default_rng(1).integers(0, 256, (256, 64, 64, 3), dtype=np.uint8)
    ext = OfflineFeatures()
    t = time.perf_counter()
    extract(ext, imgs, 64)
    print(f"offline features: {len(imgs) / (time.perf_counter() - t):.0f} img/s (64 px)")
    from torchvision.models import inception
    net = inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    inc = _fid_inception(net.state_dict())
    x = torch.rand(16 if args.quick else 64, 3, 299, 299)
    with torch.no_grad():
        t = time.perf_counter()
        inc(x)
    print(f"InceptionV3 (FID pooling) features: {len(x) / (time.perf_counter() - t):.1f} img/s at 299 px on CPU")


if __name__ == "__main__":
    main()
