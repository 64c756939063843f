"""Compiled vs reference op speed (forward + backward) at model-like sizes.

    BALANCEHEAD_OPS_DIR=<build_ops out dir> python benchmarks/bench_ops.py [--ops-dir DIR] [--device cpu|cuda]
                                                                          [--dtype float32,float16,bfloat16]

grid_sample is timed with both compiled backwards: "direct" (atomics on CUDA) and "gather" (sorted
corner keys, per-texel sums, no atomics). Where torch has the same operator (grid_sample -- what
EG3D's grid_sample_gradfix calls --, conv2d, bias + leaky ReLU) its time is printed too.
"""
import math
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

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


def _grid_sample_case(mode):
    return lambda x, p, **k: ops.grid_sample(x, p, **k, **({"backward": mode} if "module" in k else {}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops-dir", default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dtype", default="float32", help="comma list of float32,float16,bfloat16")
    args = ap.parse_args()
    module = loader.load_built_ops(args.ops_dir)
    if module is None:
        raise SystemExit("no compiled ops: run the build_ops stage and pass --ops-dir or set BALANCEHEAD_OPS_DIR")
    dev = torch.device(args.device)
    for dtype_name in args.dtype.split(","):
        run_cases(module, dev, getattr(torch, dtype_name), args.reps)


def run_cases(module, dev, dtype, reps):
    g = torch.Generator().manual_seed(0)

    def randn(*s):
        return torch.randn(*s, generator=g).to(dev, dtype)

    f = ops.make_filter(device=dev)
    planes = randn(12, 32, 256, 256) if dev.type == "cuda" else randn(6, 32, 256, 256)
    points = torch.rand(planes.shape[0], 1, 400000 if dev.type == "cuda" else 40000, 2, generator=g).to(dev) * 2 - 1
    cases = {
        "bias_act lrelu (8,128,64,64)": (lambda x, b, **k: ops.bias_act(x, b, act="lrelu", clamp=256, **k),
                                         [randn(8, 128, 64, 64), randn(128)]),
        "upsample2d (8,64,64,64)": (lambda x, **k: ops.upsample2d(x, f, **k), [randn(8, 64, 64, 64)]),
        "downsample2d (8,64,128,128)": (lambda x, **k: ops.downsample2d(x, f, **k), [randn(8, 64, 128, 128)]),
        "conv2d 3x3 (8,64,64,64)": (lambda x, w, **k: ops.conv2d(x, w, padding=1, **k), [randn(8, 64, 64, 64), randn(64, 64, 3, 3)]),
        f"grid_sample direct {tuple(planes.shape)} x {points.shape[2]} pts": (_grid_sample_case("direct"), [planes, points]),
        f"grid_sample gather {tuple(planes.shape)} x {points.shape[2]} pts": (_grid_sample_case("gather"), [planes, points]),
    }
    native = {
        "bias_act lrelu (8,128,64,64)": lambda x, b: (F.leaky_relu(x + b.reshape(1, -1, 1, 1), 0.2) * math.sqrt(2)).clamp(-256, 256),
        "conv2d 3x3 (8,64,64,64)": lambda x, w: F.conv2d(x, w, padding=1),
        f"grid_sample direct {tuple(planes.shape)} x {points.shape[2]} pts":
            lambda x, p: F.grid_sample(x, p, mode="bilinear", padding_mode="zeros", align_corners=False),
    }
    print(f"device {dev}, threads {torch.get_num_threads()}; seconds per forward+backward ({dtype})")
    for name, (fn, inputs) in cases.items():
        ref = _time(lambda *a: fn(*a, impl="ref"), inputs, reps)
        cmp = _time(lambda *a: fn(*a, module=module), inputs, reps)
        torch_s = f" | torch {_time(native[name], inputs, reps) * 1e3:9.2f} ms" if name in native else ""
        print(f"{name:55s} reference {ref * 1e3:9.2f} ms | compiled {cmp * 1e3:9.2f} ms | speed-up {ref / cmp:6.2f}x"
              f"{torch_s}", flush=True)

if __name__ == "__main__":
    main()
