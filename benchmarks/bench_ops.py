"""Compiled vs reference op speed (forward + backward) at model-like sizes.

    BALANCEHEAD_OPS_DIR=<build_ops out dir> python benchmarks/bench_ops.py [--ops-dir DIR] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import time

import torch

from balancehead import ops
from balancehead.ops import loader


def _time(fn, inputs, reps):
    def step():
        xs = [t.detach().requires_grad_(True) for t in inputs]
        fn(*xs).square().mean().backward()

    step()
    t = time.perf_counter()
    for _ in range(reps):
        step()
    if inputs[0].is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops-dir", default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    module = loader.load_built_ops(args.ops_dir)
    if module is None:
        raise SystemExit("no compiled ops: run the build_ops stage and pass --ops-dir or set BALANCEHEAD_OPS_DIR")
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)

    def randn(*s):
        return torch.randn(*s, generator=g).to(dev)

    f = ops.make_filter(device=dev)
    cases = {
        "bias_act lrelu (8,128,64,64)": (lambda x, b, **k: ops.bias_act(x, b, act="lrelu", clamp=256, **k),
                                         [randn(8, 128, 64, 64), randn(128)]),
        "upsample2d (8,64,64,64)": (lambda x, **k: ops.upsample2d(x, f, **k), [randn(8, 64, 64, 64)]),
        "downsample2d (8,64,128,128)": (lambda x, **k: ops.downsample2d(x, f, **k), [randn(8, 64, 128, 128)]),
        "conv2d 3x3 (8,64,64,64)": (lambda x, w, **k: ops.conv2d(x, w, padding=1, **k), [randn(8, 64, 64, 64), randn(64, 64, 3, 3)]),
        "grid_sample planes (6,32,256,256) x 40k pts": (lambda x, p, **k: ops.grid_sample(x, p, **k),
                                                        [randn(6, 32, 256, 256), torch.rand(6, 1, 40000, 2, generator=g).to(dev) * 2 - 1]),
    }
    print(f"device {dev}, threads {torch.get_num_threads()}; seconds per forward+backward (float32)")
    for name, (fn, inputs) in cases.items():
        ref = _time(lambda *a: fn(*a, impl="ref"), inputs, args.reps)
        cmp = _time(lambda *a: fn(*a, module=module), inputs, args.reps)
        print(f"{name:45s} reference {ref * 1e3:9.2f} ms | compiled {cmp * 1e3:9.2f} ms | speed-up {ref / cmp:6.2f}x", flush=True)


if __name__ == "__main__":
    main()
