"""FLOPs of one generator forward (batch 4), ours vs the official EG3D code (issue 9, FLOP parity).

    python benchmarks/bench_flops.py [--eg3d /path/to/NVlabs/eg3d/eg3d] [--batch 4]

Counted with torch.utils.flop_counter (matmuls and convolutions, incl. transposed ones; element-wise
ops, grid_sample and upfirdn2d's depthwise FIR are convolutions too where the implementation uses
them) on the meta device, so nothing is computed. Two EG3D configs, noise 'const', 48+48 samples:
* eg3d-128: 128 px output (SuperresolutionHybrid2X), neural 64;
* ffhq-512: 512 px output (SuperresolutionHybrid8XDC), neural 64 (EG3D's FFHQ-512 model).
Both: z/w 512, c 25, tri-plane 256 x 32 ch, channel_base 32768, channel_max 512, 2 mapping layers.
Without --eg3d only our figures are printed; with it the ratio must be within +-2 %.

    python benchmarks/bench_flops.py --step [--eg3d PATH] [--config 128,512,tiny] [--batch 4] [--device meta|cpu]

--step counts one G+D training step exactly as benchmarks/bench_vs_eg3d.py runs it (its models, its
`our_step` / `eg3d_step`, fp32, G and D in training mode) on both sides, in parts: G forward, D forward of
the fakes, the G-main backward (through D into G), D forward of detached fakes + reals, the D backward.
Each part is split into network FLOPs (matmuls, convolutions and their backward) and the resampling FIR
(depthwise 4x4 convolutions of the reference upfirdn2d, which on a GPU both sides run as uncounted
plugins/kernels). The network FLOPs per step must agree within +-2 %. Issue 10's gap (ours 11.5 vs EG3D
8.1 TFLOP/step at 512) was our modulated convs running grouped (groups=batch) in training too: the
counter books a grouped conv's weight gradient as if every group saw all channels (x batch), and the
grouped weight gradient is the slower kernel; EG3D trains with plain convs (fused_modconv
'inference_only'), which the project's layers now do too.
Each part also reports its non-view ATen ops (about the kernels a GPU launches) and the bytes they read
and write (what memory-bound work costs on a GPU). With the reference ops on both sides this compares
everything but the custom kernels (bias_act, upfirdn2d, grid_sample), which a GPU runs compiled.

    python benchmarks/bench_flops.py --step --precision mixed [--gpu h200|h100] [--config 512]

--precision mixed counts the project's side with EG3D's mixed precision (bench_vs_eg3d's `mixed`: float16
in the 4 highest-resolution SR and D blocks), its fp16 blocks booked as on CUDA (off CUDA they run float32,
layers.block_dtype), and splits each part's network FLOPs into float16 and float32. The block-by-block FLOPs
are EG3D's (the fp32 parity above), so the split is EG3D's too; EG3D's own code forces float32 off CUDA and
is not counted here. With the split, a floor for the step on --gpu from its datasheet: float32 FLOPs at the
CUDA cores' rate (training runs without TF32), float16 ones at the dense tensor-core rate, and the bytes at
full memory bandwidth. Nothing reaches a floor; it says what bounds a step (the bench_vs_eg3d medians are
measured against it).

    python benchmarks/bench_flops.py --step --device cpu --gpu-path [--eg3d PATH] [--config 512] [--batch 1]

--gpu-path counts both sides as they run on a GPU, on a CPU, with the project's compiled ops
($BALANCEHEAD_OPS_DIR): the project's custom kernels and, with --eg3d, EG3D's plugin autograd
(bench_vs_eg3d --eg3d-cuda-path) on the same C++ kernels, each custom call booked as one kernel reading
its arguments and writing its outputs. What is then left between the sides is how fast each kernel runs.
Without it, the reference ops run (a build in $BALANCEHEAD_OPS_DIR is ignored).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

CONFIGS = {"eg3d-128": (128, "training.superresolution.SuperresolutionHybrid2X"),
           "ffhq-512": (512, "training.superresolution.SuperresolutionHybrid8XDC")}


def rendering_kwargs(res: int, sr_module: str) -> dict:
    return {"image_resolution": res, "disparity_space_sampling": False, "clamp_mode": "softplus",
            "superresolution_module": sr_module, "c_gen_conditioning_zero": False, "c_scale": 1.0,
            "superresolution_noise_mode": "none", "density_reg": 0.25, "density_reg_p_dist": 0.004,
            "reg_type": "l1", "decoder_lr_mul": 1.0, "sr_antialias": True, "depth_resolution": 48,
            "depth_resolution_importance": 48, "ray_start": 2.25, "ray_end": 3.3, "box_warp": 1}


def g_kwargs(res: int) -> dict:
    return dict(z_dim=512, c_dim=25, w_dim=512, img_resolution=res, img_channels=3, sr_num_fp16_res=0,
                mapping_kwargs={"num_layers": 2}, sr_kwargs={}, channel_base=32768, channel_max=512, num_fp16_res=0,
                conv_clamp=None)


def camera(batch: int) -> torch.Tensor:
    pose = torch.eye(4)
    pose[:3, :3] = torch.diag(torch.tensor([-1.0, 1.0, -1.0]))  # looking at the origin from +z, OpenCV axes
    pose[2, 3] = 2.7
    k = torch.tensor([[4.2647, 0, 0.5], [0, 4.2647, 0.5], [0, 0, 1]])
    return torch.cat([pose.reshape(1, 16), k.reshape(1, 9)], 1).repeat(batch, 1)


def n_params(module: torch.nn.Module, prefix: str) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if n.startswith(prefix))


def count(fn) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def ours(res: int, sr_module: str, batch: int) -> int:
    from balancehead.models import GeneratorConfig
    from balancehead.models.generator import Generator

    cfg = GeneratorConfig(z_dim=512, c_dim=25, w_dim=512, mapping_layers=2, representation="triplane",
                          plane_channels=32, plane_resolution=256, channel_base=32768, channel_max=512,
                          feature_channels=32, neural_resolution=64, output_resolution=res,
                          sr_dc=sr_module.endswith("DC"), n_coarse=48, n_importance=48, background=False,
                          camera_adapt=False)
    G = Generator(cfg).eval().to("meta")
    z, c = torch.zeros(batch, 512, device="meta"), camera(batch).to("meta")
    return count(lambda: G(z, c, c, noise_mode="const")), n_params(G, ""), n_params(G, "superres.")


def official(path: str, res: int, sr_module: str, batch: int) -> int:
    sys.path.insert(0, str(Path(path).resolve()))
    from training.triplane import TriPlaneGenerator

    G = TriPlaneGenerator(**g_kwargs(res), rendering_kwargs=rendering_kwargs(res, sr_module)).eval().to("meta")
    G.neural_rendering_resolution = 64
    z, c = torch.zeros(batch, 512, device="meta"), camera(batch).to("meta")
    flops = count(lambda: G(z, c, noise_mode="const"))
    sys.path.pop(0)
    return flops, n_params(G, ""), n_params(G, "superresolution.")


# ATen ops that only make a view (no kernel on a GPU, no bytes moved)
VIEW_OPS = {"view", "_unsafe_view", "reshape", "expand", "t", "transpose", "permute", "unsqueeze", "squeeze", "select",
            "slice", "detach", "alias", "as_strided", "split", "split_with_sizes", "unbind", "_reshape_alias", "unfold",
            "lift_fresh", "_local_scalar_dense"}
# ATen ops that only allocate (no kernel, no bytes moved)
ALLOC_OPS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"}
# ATen ops that take only a shape and dtype from their tensor argument: they write their output, read nothing
FILL_OPS = {"new_zeros", "new_ones", "new_full", "zeros_like", "ones_like", "full_like"}


def tensor_bytes(tree) -> int:
    from torch.utils._pytree import tree_leaves

    return sum(t.numel() * t.element_size() for t in tree_leaves(tree) if torch.is_tensor(t))


class PartCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """FLOPs by torch.utils.flop_counter's formulas, booked as 'net' or 'fir' (depthwise k x k with one
    input channel per group: the reference upfirdn2d's FIR) under the current part name; and per part
    the number of ATen ops that are not views (about the kernels a GPU launches) and the bytes they
    read and write (their inputs' and outputs' sizes: what a memory-bound op costs on a GPU)."""

    def __init__(self):
        super().__init__()
        self.part, self.flops, self.ops, self.bytes, self.half = "", {}, {}, {}, {}
        self.inside_kernel = False

    def book(self, inputs, outputs) -> None:
        """One kernel of this part, reading `inputs` and writing `outputs`."""
        self.ops[self.part] = self.ops.get(self.part, 0) + 1
        self.bytes[self.part] = self.bytes.get(self.part, 0) + tensor_bytes(inputs) + tensor_bytes(outputs)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from torch.utils.flop_counter import flop_registry

        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.inside_kernel:      # a compiled op's own allocations and set-up: booked with its call (CountedOps)
            return out
        name = func.overloadpacket.__name__
        if name in FILL_OPS:
            if tensor_bytes(out):                   # an empty placeholder launches nothing
                self.book((), out)
        elif name not in VIEW_OPS and name not in ALLOC_OPS and not name.startswith("_record"):
            self.book((args, kwargs), out)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            kind = "net"
            if func._overloadpacket in (torch.ops.aten.convolution, torch.ops.aten.convolution_backward):
                w = args[1] if func._overloadpacket is torch.ops.aten.convolution else args[2]
                groups = args[8] if func._overloadpacket is torch.ops.aten.convolution else args[9]
                if w.shape[1] == 1 and groups == w.shape[0] and groups > 1:
                    kind = "fir"
            key, flops = (self.part, kind), formula(*args, **kwargs, out_val=out)
            self.flops[key] = self.flops.get(key, 0) + flops
            if kind == "net" and args[0].dtype in (torch.float16, torch.bfloat16):   # (grad) input's dtype
                self.half[self.part] = self.half.get(self.part, 0) + flops
        return out


class CountedOps:
    """The project's compiled ops module as a GPU runs it: each call booked by `counter` as one kernel that
    reads its tensor arguments and writes its outputs (what a fused kernel moves at best); the ATen calls
    inside it (allocations, a zeroed accumulator) are not booked apart."""

    def __init__(self, module, counter: PartCounter):
        self._module, self._counter = module, counter

    def __getattr__(self, name):
        fn = getattr(self._module, name)
        if not callable(fn) or name == "has_cuda_kernels":
            return fn

        def call(*args):
            self._counter.inside_kernel = True
            try:
                out = fn(*args)
            finally:
                self._counter.inside_kernel = False
            self._counter.book(args, out)
            return out

        return call


@contextlib.contextmanager
def op_paths(counter: PartCounter, gpu_path: bool, eg3d=None):
    """The ops a counted step runs: the project's reference ops (whatever $BALANCEHEAD_OPS_DIR says), or
    with `gpu_path` both sides as they run on a GPU, on a CPU: the project's compiled ops (its C++ twin,
    booked per call by CountedOps) and, given `eg3d`, EG3D's plugin autograd on the same kernels
    (bench_vs_eg3d.eg3d_cuda_path_on_cpu)."""
    import bench_vs_eg3d as bv
    from balancehead.ops import loader

    ops = None
    if gpu_path:
        module = loader.load_built_ops()
        if module is None:
            raise SystemExit(f"--gpu-path needs the compiled ops (${loader.ENV_VAR}: a build_ops output)")
        ops = CountedOps(module, counter)
        if eg3d is not None:
            bv.eg3d_cuda_path_on_cpu(eg3d, ops)
    resolve = loader._load_from_env
    loader._load_from_env = lambda value: ops
    try:
        yield
    finally:
        loader._load_from_env = resolve


# Datasheet peaks (SXM, dense): float32 on the CUDA cores, float16 on the tensor cores (TFLOP/s); memory TB/s
GPUS = {"h200": {"fp32": 67.0, "fp16": 989.0, "tb_s": 4.8}, "h100": {"fp32": 67.0, "fp16": 989.0, "tb_s": 3.35}}


@contextlib.contextmanager
def fp16_blocks_as_on_cuda():
    """The project's fp16 blocks in float16 on any device (layers.block_dtype runs them in float32 off
    CUDA, as EG3D does): for counting on the meta device, where nothing is computed."""
    from balancehead.models import discriminator, synthesis

    saved = synthesis.block_dtype, discriminator.block_dtype
    synthesis.block_dtype = discriminator.block_dtype = (
        lambda use_fp16, device, param_dtype: torch.float16 if use_fp16 else param_dtype)
    try:
        yield
    finally:
        synthesis.block_dtype, discriminator.block_dtype = saved


def step_parts(side: str, name: str, batch: int | None, device: str, eg3d_path: str | None,
               precision: str = "fp32", gpu_path: bool = False) -> PartCounter:
    """The PartCounter of one training step of `side` ('ours' | 'eg3d') at bench_vs_eg3d's config;
    precision 'mixed' (ours only, on meta): EG3D's fp16 blocks, in float16 as on CUDA; gpu_path (on
    cpu): the compiled ops and EG3D's plugin path, each custom kernel booked as one (op_paths)."""
    import torch.nn.functional as F

    import bench_vs_eg3d as bv

    if precision == "mixed" and (side != "ours" or device != "meta"):
        raise ValueError("--precision mixed counts the project's side on the meta device only")
    if gpu_path and device != "cpu":
        raise ValueError("--gpu-path runs the compiled kernels: --device cpu")
    spec = dict(bv.CONFIGS[name], **({"batch": batch} if batch else {}))
    data = bv.make_batch(spec, torch.device(device))
    c, counter, eg3d = data["c"], PartCounter(), None
    torch.manual_seed(0)
    if side == "ours":
        G, D, _ = bv.our_models(spec, precision, "cpu")
        G, D = G.to(device), D.to(device)
        forward = lambda: G(data["z"], c, c).as_discriminator_input()  # noqa: E731
    else:
        eg3d = bv.import_eg3d(Path(eg3d_path))
        G, D, _ = bv.eg3d_models(eg3d, spec, "fp32", "cpu")
        G, D = G.to(device), D.to(device)
        forward = lambda: {k: v for k, v in G(data["z"], c, neural_rendering_resolution=spec["neural"]).items()  # noqa: E731
                           if k in ("image", "image_raw")}
    with op_paths(counter, gpu_path, eg3d), counter, \
            (fp16_blocks_as_on_cuda() if precision == "mixed" else contextlib.nullcontext()):
        counter.part = "G fwd"
        fake = forward()
        counter.part = "D fwd (fake)"
        loss = F.softplus(-D(fake, c)).mean()
        counter.part = "G-main bwd"
        loss.backward()
        fake = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in fake.items()}
        real = {k: data["real"][k] for k in fake}
        counter.part = "D fwd (fake+real)"
        loss = F.softplus(D(fake, c)).mean() + F.softplus(-D(real, c)).mean()
        counter.part = "D bwd"
        loss.backward()
    return counter


def floor_ms(counter: PartCounter, gpu: dict) -> tuple[float, float, float]:
    """(float32 math, float16 math, traffic) of a counted step at `gpu`'s datasheet peaks, in ms."""
    net = sum(v for (_, kind), v in counter.flops.items() if kind == "net")
    half = sum(counter.half.values())
    return ((net - half) / (gpu["fp32"] * 1e9), half / (gpu["fp16"] * 1e9),
            sum(counter.bytes.values()) / (gpu["tb_s"] * 1e9))


def step_main(args) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    ok, gpu = True, GPUS[args.gpu]
    for name in args.config.split(","):
        counters = {"ours": step_parts("ours", name, args.batch, args.device, None, args.precision, args.gpu_path)}
        if args.eg3d and args.precision == "mixed":
            print("  (EG3D's code runs float32 off CUDA: its side is counted in fp32 runs only)")
        elif args.eg3d:
            counters["eg3d"] = step_parts("eg3d", name, args.batch, args.device, args.eg3d, gpu_path=args.gpu_path)
        sides = {k: c.flops for k, c in counters.items()}
        ops = ("the GPU paths: compiled ops / EG3D's plugin autograd, a custom kernel booked as one" if args.gpu_path
               else "reference ops on both sides")
        print(f"== step {name} (batch {args.batch or 'config'}, {args.precision}, training mode, {ops}), "
              f"GFLOP net / fir{' (float16 share of net)' if args.precision == 'mixed' else ''}, "
              "kernels (non-view ATen ops + custom), GiB read + written:")
        parts = dict.fromkeys(part for flops in sides.values() for part, _ in flops)
        for part in parts:
            print(f"  {part:18s} " + " | ".join(
                f"{k} {f.get((part, 'net'), 0) / 1e9:10.3f} / {f.get((part, 'fir'), 0) / 1e9:8.3f}"
                + (f" ({counters[k].half.get(part, 0) / max(f.get((part, 'net'), 0), 1):4.0%})"
                   if args.precision == "mixed" else "")
                + f", {counters[k].ops.get(part, 0):5d} ops, {counters[k].bytes.get(part, 0) / 2 ** 30:7.2f} GiB"
                for k, f in sides.items()))
        print("  ops / GiB in all     " + " | ".join(
            f"{k} {sum(c.ops.values())} ops, {sum(c.bytes.values()) / 2 ** 30:.2f} GiB" for k, c in counters.items()))
        totals = {k: (sum(v for (_, kind), v in f.items() if kind == "net"), sum(f.values())) for k, f in sides.items()}
        line = "  total              " + " | ".join(f"{k} {n / 1e12:.4f} TFLOP net, {a / 1e12:.4f} with FIR"
                                                   for k, (n, a) in totals.items())
        if "eg3d" in totals:
            ratio = totals["ours"][0] / totals["eg3d"][0]
            ok &= math.isclose(ratio, 1.0, abs_tol=0.02)
            line += f"; net ratio ours/EG3D {ratio:.4f}"
        print(line)
        for k, c in counters.items():
            m32, m16, mem = floor_ms(c, gpu)
            print(f"  floor on {args.gpu} ({k}: {gpu['fp32']:g} TFLOP/s float32, {gpu['fp16']:g} float16, "
                  f"{gpu['tb_s']:g} TB/s): math {m32 + m16:.1f} ms (float32 {m32:.1f} + float16 {m16:.1f}), "
                  f"traffic {mem:.1f} ms", flush=True)
    if not ok:
        raise SystemExit("step FLOP parity outside +-2 %")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eg3d", help="path of NVlabs/eg3d's inner eg3d/ directory")
    ap.add_argument("--batch", type=int, default=None, help="batch (default 4; --step: the config's)")
    ap.add_argument("--step", action="store_true", help="count one G+D training step in parts (bench_vs_eg3d's)")
    ap.add_argument("--config", default="128,512", help="--step: bench_vs_eg3d configs (128, 512, tiny)")
    ap.add_argument("--device", default="meta", help="--step: meta (nothing computed) or cpu")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "mixed"),
                    help="--step: fp32, or EG3D's mixed precision (the project's side, on meta)")
    ap.add_argument("--gpu-path", action="store_true",
                    help="--step --device cpu: count the GPU paths (compiled ops, EG3D's plugin autograd)")
    ap.add_argument("--gpu", default="h200", choices=sorted(GPUS), help="--step: the datasheet of the floor")
    args = ap.parse_args()
    if args.step:
        return step_main(args)
    args.batch = args.batch or 4
    ok = True
    for name, (res, sr_module) in CONFIGS.items():
        a, pa, sa = ours(res, sr_module, args.batch)
        line = f"{name}: ours {a / 1e9:.1f} GFLOP per batch of {args.batch}, {pa / 1e6:.3f} M params (SR {sa / 1e6:.3f} M)"
        if args.eg3d:
            b, pb, sb = official(args.eg3d, res, sr_module, args.batch)
            ratio = a / b
            ok &= math.isclose(ratio, 1.0, abs_tol=0.02)
            line += f"; EG3D {b / 1e9:.1f} GFLOP, {pb / 1e6:.3f} M params (SR {sb / 1e6:.3f} M); FLOP ratio {ratio:.4f}"
        print(line, flush=True)
    if not ok:
        raise SystemExit("FLOP parity outside +-2 %")


if __name__ == "__main__":
    main()
