"""Op speed (forward + backward) at the shapes of EG3D's FFHQ-512 training step, side by side: the
project's compiled kernels, its PyTorch references, torch's own operator where there is one, and EG3D's
CUDA plugins when a checkout of the official code is given.

    BALANCEHEAD_OPS_DIR=<build_ops out dir> python benchmarks/bench_ops.py [--ops-dir DIR] [--eg3d PATH]
        [--device cpu|cuda] [--dtype float32,float16,bfloat16] [--shapes 512|small] [--reps N] [--json FILE]

Shapes "512" are the largest tensors of one FFHQ-512 step at batch 4: the 512-px discriminator block
(64 channels) blurs before its stride-2 convolution (upfirdn2d 4x4, up 1, down 1), downsamples its skip
path (down 2; the backward is the up-2 kernel) and applies bias + leaky ReLU; the tri-plane lookups read
3 x 4 planes of 32 x 256^2 at 128^2 rays x 48 samples, the samples of a ray consecutive and along a
line as the renderer lays them out (neighbouring samples share texels: that decides cache hits and atomic
contention). "small" runs the same cases in a second (tests, CPU). grid_sample is timed with both
compiled backwards, "direct" (atomics on CUDA) and "gather" (sorted corner keys, per-texel sums, no
atomics), each in both layouts of the planes: "compiled" is the default channels-last one (which
includes copying the planes to it), "compiled nchw" the planes as they are. Each figure is the median
over --reps timed calls.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from balancehead import ops
from balancehead.fileio import write_json
from balancehead.ops import loader

SHAPES = {  # name -> (activation NCHW, planes NCHW, points per plane)
    "512": ((4, 64, 512, 512), (12, 32, 256, 256), 128 * 128 * 48),
    "small": ((2, 8, 32, 32), (6, 8, 32, 32), 2000),
}


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time(fn, inputs, reps) -> float:
    """Median seconds of one forward + backward (inputs fresh leaves each call; one untimed warm-up)."""
    dev = inputs[0].device

    def step():
        xs = [t.detach().requires_grad_(True) for t in inputs]
        fn(*xs).square().mean().backward()

    step()
    times = []
    for _ in range(reps):
        _sync(dev)
        t = time.perf_counter()
        step()
        _sync(dev)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ray_points(planes: int, n_points: int, g: torch.Generator, samples: int = 48) -> torch.Tensor:
    """(planes, 1, n_points, 2) in [-1, 1]: rays of `samples` consecutive points along a line through the
    plane (a ray's projection: from a point for a plane facing the camera to a long segment for one seen
    edge-on), ray starts on a jittered grid over the central 80 % of the plane."""
    rays = max(n_points // samples, 1)
    side = math.ceil(math.sqrt(rays))
    cells = (torch.arange(rays) + 0.5) / side
    start = torch.stack([cells % 1, (cells // 1) / side], -1) * 1.6 - 0.8
    start = start + (torch.rand(planes, rays, 2, generator=g) - 0.5) * (1.6 / side)
    direction = torch.nn.functional.normalize(torch.randn(planes, rays, 2, generator=g), dim=-1)
    length = torch.rand(planes, rays, 1, generator=g) * 0.5
    t = torch.linspace(-0.5, 0.5, samples).reshape(1, 1, samples, 1)
    points = (start[:, :, None] + t * (direction * length)[:, :, None]).clamp(-1, 1).reshape(planes, 1, -1, 2)
    return points[:, :, :n_points] if points.shape[2] >= n_points else torch.cat(
        [points, points[:, :, : n_points - points.shape[2]]], 2)


def cases(dev, dtype, shapes: str, eg3d=None) -> dict:
    """name -> (inputs, {column: fn(*inputs)}); every fn computes the same function of the inputs."""
    g = torch.Generator().manual_seed(0)

    def randn(*s):
        return torch.randn(*s, generator=g).to(dev, dtype)

    act, plane_shape, n_points = SHAPES[shapes]
    n, c = act[:2]
    f = ops.make_filter(device=dev)
    x = randn(*act)
    planes = randn(*plane_shape)
    points = ray_points(plane_shape[0], n_points, g).to(dev)
    module = loader.load_built_ops()

    def ours(fn):
        """The project's columns of fn(*inputs, **how): its reference, and its compiled kernels if built."""
        cols = {"reference": lambda *a: fn(*a, impl="ref")}
        if module is not None:
            cols["compiled"] = lambda *a: fn(*a, module=module)
        return cols

    def theirs(fn):
        return {"eg3d": fn} if eg3d is not None else {}

    table = {
        f"bias_act lrelu clamp {tuple(act)}": ([x, randn(c)], {
            **ours(lambda x, b, **how: ops.bias_act(x, b, act="lrelu", clamp=256, **how)),
            "torch": lambda x, b: (F.leaky_relu(x + b.reshape(1, -1, 1, 1), 0.2) * math.sqrt(2)).clamp(-256, 256),
            **theirs(lambda x, b: eg3d.bias_act.bias_act(x, b, act="lrelu", clamp=256, impl="cuda")),
        }),
        f"upfirdn2d 4x4 blur pad 2 {tuple(act)}": ([x], {
            **ours(lambda x, **how: ops.upfirdn2d(x, f, padding=2, **how)),
            **theirs(lambda x: eg3d.upfirdn2d.upfirdn2d(x, f, padding=2, impl="cuda")),
        }),
        f"downsample2d {tuple(act)}": ([x], {
            **ours(lambda x, **how: ops.downsample2d(x, f, **how)),
            **theirs(lambda x: eg3d.upfirdn2d.downsample2d(x, f, impl="cuda")),
        }),
        f"conv2d 3x3 {c}->{c} {tuple(act)}": ([x, randn(c, c, 3, 3)], {
            "torch": lambda x, w: F.conv2d(x, w, padding=1),
        }),
    }
    for mode in ("direct", "gather"):
        def sample(p, q, mode=mode, layout="channels_last", **how):
            return ops.grid_sample(p, q, **how, **({"backward": mode, "layout": layout} if "module" in how else {}))

        table[f"grid_sample {mode} {tuple(plane_shape)} x {n_points} pts"] = ([planes, points], {
            **ours(sample),
            **({"compiled nchw": lambda p, q, sample=sample: sample(p, q, layout="nchw", module=module)}
               if module is not None else {}),
            **({"torch": lambda p, q: F.grid_sample(p, q, mode="bilinear", padding_mode="zeros", align_corners=False)}
               if mode == "direct" else {}),
        })
    return table


def run(dev, dtype, shapes: str, reps: int, eg3d=None) -> list[dict]:
    rows = []
    print(f"device {dev}, threads {torch.get_num_threads()}; median time of one forward+backward ({dtype}, "
          f"shapes {shapes}); 'x/ours' = x's time / ours (compiled, else reference): above 1, ours is faster",
          flush=True)
    for name, (inputs, fns) in cases(dev, dtype, shapes, eg3d).items():
        row = {"case": name, "dtype": str(dtype).removeprefix("torch."), "ms": {}}
        for column, fn in fns.items():
            try:
                row["ms"][column] = _time(fn, inputs, reps) * 1e3
            except (RuntimeError, NotImplementedError) as exc:  # e.g. an EG3D plugin without this dtype
                row["ms"][column] = None
                row.setdefault("errors", {})[column] = str(exc).splitlines()[0][:200]
        cells = " | ".join(f"{k} {v:9.3f} ms" if v is not None else f"{k} {'n/a':>9s}   " for k, v in row["ms"].items())
        base = row["ms"].get("compiled") or row["ms"].get("reference")
        ratio = " | ".join(f"{k}/ours {row['ms'][k] / base:5.2f}x" for k in ("eg3d", "torch")
                           if base and row["ms"].get(k))
        print(f"{name:58s} {cells}{' | ' + ratio if ratio else ''}", flush=True)
        rows.append(row)
        del inputs
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops-dir", default=None, help=f"build_ops output (default ${loader.ENV_VAR})")
    ap.add_argument("--eg3d", type=Path, default=None, help="official eg3d/ folder: adds its CUDA plugins' column")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--shapes", choices=sorted(SHAPES), default=None, help="default: 512 on a GPU, small on a CPU")
    ap.add_argument("--dtype", default="float32", help="comma list of float32,float16,bfloat16")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    if args.ops_dir:
        loader.use_built(args.ops_dir, cpu=True)
    if loader.load_built_ops() is None:
        print(f"no compiled ops ({loader.ENV_VAR} unset or not a build): reference and torch columns only")
    eg3d = None
    if args.eg3d is not None:
        if dev.type != "cuda":
            raise SystemExit("--eg3d: EG3D's plugins are CUDA kernels; run with a GPU")
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_vs_eg3d import build_eg3d_plugins, eg3d_plugins, import_eg3d

        eg3d = import_eg3d(args.eg3d)
        build_eg3d_plugins(eg3d)
        print(f"EG3D ops: {eg3d_plugins(eg3d)}")
    shapes = args.shapes or ("512" if dev.type == "cuda" else "small")
    rows = [r for name in args.dtype.split(",") for r in run(dev, getattr(torch, name), shapes, args.reps, eg3d)]
    if args.json:
        write_json(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
