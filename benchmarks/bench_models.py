"""Generator forward and G+D forward+backward throughput (img/s) at the tiny and paper config shapes.

    python benchmarks/bench_models.py [--config tiny|paper|both] [--batch N] [--iters N] [--device cpu|cuda]

On CPU the paper config is slow: it runs batch 1 for one iteration unless told otherwise.
Set BALANCEHEAD_OPS_DIR to time the compiled ops instead of the references.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from balancehead.camera import camera_label
from balancehead.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from balancehead.ops import loader


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(name, gcfg, dcfg, batch, iters, device):
    G, D = Generator(gcfg).to(device), Discriminator(dcfg).to(device)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(batch, gcfg.z_dim, generator=g).to(device)
    yaws = np.linspace(-180, 180, batch, endpoint=False)
    cam = torch.from_numpy(np.stack([camera_label(y, 0.0) for y in yaws])).to(device)
    c = torch.randn(batch, gcfg.c_dim, generator=g).to(device) if gcfg.c_dim else None
    dc = torch.randn(batch, dcfg.c_dim, generator=g).to(device) if dcfg.c_dim else None

    with torch.no_grad():
        G(z, c, cam)  # warm-up
        _sync(device)
        t = time.perf_counter()
        for _ in range(iters):
            G(z, c, cam)
        _sync(device)
        fwd = batch * iters / (time.perf_counter() - t)

    t = time.perf_counter()
    for _ in range(iters):
        out = G(z, c, cam)
        loss = torch.nn.functional.softplus(-D(out.as_discriminator_input(), dc)).mean()
        loss.backward()
    _sync(device)
    step = batch * iters / (time.perf_counter() - t)
    params = sum(p.numel() for p in G.parameters()) / 1e6
    print(f"{name:6s} {gcfg.representation:8s} out {gcfg.output_resolution:4d} neural {gcfg.neural_resolution:3d} "
          f"samples {gcfg.n_coarse}+{gcfg.n_importance} batch {batch} iters {iters} | G {params:.2f}M params | "
          f"G forward {fwd:8.3f} img/s | G+D fwd+bwd {step:8.3f} img/s", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="both", choices=["tiny", "paper", "both"])
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    ops_module = loader.load_built_ops()
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"ops {'compiled' if ops_module is not None else 'reference'}")
    if args.config in ("tiny", "both"):
        bench("tiny", GeneratorConfig.tiny(), DiscriminatorConfig.tiny(), args.batch or 8, args.iters or 5, device)
    if args.config in ("paper", "both"):
        slow = device.type == "cpu"
        if slow:
            print("paper config on CPU: batch 1, one iteration (slow)")
        bench("paper", GeneratorConfig.paper(), DiscriminatorConfig.paper(), args.batch or (1 if slow else 4),
              args.iters or (1 if slow else 5), device)


if __name__ == "__main__":
    main()
