"""Side by side, in one process: the project's G+D training step vs the official EG3D code.

    python benchmarks/bench_vs_eg3d.py [--eg3d PATH] [--config 512|128|tiny ...] [--precision fp32,mixed,bf16]
                                       [--g-num-fp16-res N] [--iters N] [--warmup N] [--json OUT.json]
                                       [--device cpu|cuda] [--profile DIR] [--compile]

Without --eg3d only the project side runs (`make bench`). With --eg3d PATH (a checkout of
NVlabs/eg3d, the folder holding `training/` and `torch_utils/`; never vendored here) the official
TriPlaneGenerator + DualDiscriminator are built at the same config and the two sides alternate,
one step each, so both see the same machine state. On a GPU EG3D's own `torch_utils.custom_ops`
builds its CUDA plugins (bias_act, upfirdn2d) at first use; on a CPU it runs its reference ops.

The step (identical on both sides): G forward -> D(fake) -> softplus(-logits) backward (G main);
D(fake.detach()) and D(real) -> softplus(fake) + softplus(-real) backward (D main). Gradients are
dropped (set to None) between steps; no optimiser, no regularisers.

Configs (EG3D FFHQ, train.py defaults: mapping depth 2, channel base 32768, max 512, 48+48 samples,
tri-plane 3 x 32 x 256^2, batch 4, camera-conditioned G and D (c = 25-d camera label)):
  512: 512 px out, neural 128 (SuperresolutionHybrid8XDC);  128: 128 px out, neural 64 (Hybrid2X);
  tiny: 128 px out, neural 16, channel base 1024, 6+6 samples, batch 2 (a CPU smoke test).
Precisions: fp32 (no fp16 layers, no conv clamp); mixed = EG3D's scheme on both sides (float16 in every
SR block (sr_num_fp16_res 4) and the 4 highest-resolution D blocks, conv clamp 256, weights float32; the
backbone in float16 only with --g-num-fp16-res N > 0, EG3D FFHQ's default being 0) — the project's
side through its config fields (GeneratorConfig.num_fp16_res / sr_num_fp16_res,
DiscriminatorConfig.num_fp16_res), no autocast; bf16 = torch.autocast(bfloat16) on the project's side
only (EG3D's plugins have no bf16 kernels). Prints parameter counts per part, FLOPs per step
(torch.utils.flop_counter: matmuls and convolutions), medians, the ratio, peak memory
(torch.cuda.max_memory_allocated, reset before each side's step; on a CPU, from one more step under
torch.profiler: the side's parameters and the batch plus the step's highest allocation above its start)
and, on any device, the bytes autograd saves for the backward of the G-main forward (G, then D on the
fakes; each storage once), where a step's memory peaks.

--eg3d-cuda-path (CPU, with the project's compiled ops): EG3D's CUDA-path autograd functions run on the
CPU, their bias_act / upfirdn2d kernels served by the project's C++ twin (same arguments). EG3D then keeps
and allocates on a CPU what it does on a GPU with its plugins, as the project's compiled ops do on its
side: a CPU measure of the two GPU paths' memory (no cuDNN workspaces, no caching-allocator rounding).

--compile: a third side, the project's models with G's decoder and ray march compiled
(Generator.compile_rendering, `train.distributed.compile: rendering`); its compile happens in warm-up.

--profile DIR: after the timed steps, one more step per side under torch.profiler. Printed: the time
per kind of work (convolutions, matrix products, feature sampling, resampling, bias+activation,
elementwise, reductions, copies, sort/scan/gather, other), the kernels launched per step, and the
top operators side by side -- on a GPU the device time of each kernel, on a CPU the operators' self
time. Written to DIR: each side's table (profile_<config>_<precision>_<side>.txt) and the category
figures of both (profile_<config>_<precision>.json).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import os
import re
import statistics
import sys
import time
import types
import weakref
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from balancehead.camera import camera_label
from balancehead.devices import configure_cuda
from balancehead.fileio import write_json, write_text
from balancehead.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from balancehead.ops import loader

CONFIGS = {
    "512": dict(out=512, neural=128, channel_base=32768, channel_max=512, samples=(48, 48), batch=4),
    "128": dict(out=128, neural=64, channel_base=32768, channel_max=512, samples=(48, 48), batch=4),
    "tiny": dict(out=128, neural=16, channel_base=1024, channel_max=32, samples=(6, 6), batch=2),
}
SR_MODULES = {512: "training.superresolution.SuperresolutionHybrid8XDC",
              256: "training.superresolution.SuperresolutionHybrid4X",
              128: "training.superresolution.SuperresolutionHybrid2X"}
MIXED_FP16_RES = 4
MIXED_CLAMP = 256.0


# ---------------------------------------------------------------- the project's side

def our_models(spec: dict, precision: str, device) -> tuple[torch.nn.Module, torch.nn.Module, str]:
    coarse, fine = spec["samples"]
    mixed = precision == "mixed"
    g_values = dict(z_dim=512, c_dim=25, w_dim=512, c_scale=1.0, mapping_layers=2, representation="triplane",
                    plane_channels=32, plane_resolution=256, channel_base=spec["channel_base"],
                    channel_max=spec["channel_max"], feature_channels=32, decoder_hidden=64,
                    neural_resolution=spec["neural"], output_resolution=spec["out"], n_coarse=coarse,
                    n_importance=fine, ray_start=2.25, ray_end=3.3, box_warp=1.0, background=False,
                    camera_adapt=False, conv_clamp=None, sr_conv_clamp=None, sr_noise_mode="none")
    d_values = dict(resolution=spec["out"], mode="dual", c_dim=25, cmap_dim=min(spec["channel_base"] // 4,
                                                                                spec["channel_max"]),
                    mapping_layers=8, channel_base=spec["channel_base"], channel_max=spec["channel_max"],
                    mbstd_group=4, mbstd_channels=1, conv_clamp=None)
    how = {"fp32": "fp32", "bf16": "autocast-bf16"}.get(precision, "")
    if mixed:  # EG3D's per-block float16, expressed by the configs (train.model.*_num_fp16_res)
        g_fp16 = spec.get("g_num_fp16_res", 0)
        g_values.update(num_fp16_res=g_fp16, conv_clamp=MIXED_CLAMP if g_fp16 else None,
                        sr_num_fp16_res=MIXED_FP16_RES, sr_conv_clamp=MIXED_CLAMP)
        d_values.update(num_fp16_res=MIXED_FP16_RES, conv_clamp=MIXED_CLAMP)
        how = f"config fp16 blocks (G {g_fp16}, SR {MIXED_FP16_RES}, D {MIXED_FP16_RES})"
    g_cfg = GeneratorConfig(**g_values)
    d_cfg = DiscriminatorConfig(**d_values)
    return Generator(g_cfg).to(device), Discriminator(d_cfg).to(device), how


def our_step(G, D, batch: dict, precision: str, how: str, g_main=contextlib.nullcontext) -> None:
    """`g_main`: a context manager around the G-main forward (G, then D on the fakes), e.g. SavedBytes."""
    ctx = contextlib.nullcontext()
    if how.startswith("autocast"):
        ctx = torch.autocast(batch["z"].device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    c = batch["c"]
    with ctx:
        with g_main():
            out = G(batch["z"], c, c)
            fake = out.as_discriminator_input()
            loss = F.softplus(-D(fake, c)).mean()
        loss.backward()
        fake = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in fake.items()}
        real = {k: batch["real"][k] for k in fake}
        loss = F.softplus(D(fake, c)).mean() + F.softplus(-D(real, c)).mean()
    loss.backward()


# ---------------------------------------------------------------- EG3D's side

def import_eg3d(path: Path):
    """Import TriPlaneGenerator and DualDiscriminator from a checkout at `path` (its own modules).

    dnnlib imports `distutils.util.strtobool`, gone from Python 3.12 without setuptools' shim: a
    minimal stand-in is registered only when no distutils can be found."""
    path = Path(path).resolve()
    if not (path / "training" / "triplane.py").exists():
        raise SystemExit(f"--eg3d {path}: no training/triplane.py (give the folder holding training/ and torch_utils/)")
    if importlib.util.find_spec("distutils") is None:
        util = types.ModuleType("distutils.util")
        util.strtobool = lambda v: {"y": 1, "yes": 1, "t": 1, "true": 1, "on": 1, "1": 1}.get(str(v).lower(), 0)
        sys.modules.setdefault("distutils", types.ModuleType("distutils")).util = util
        sys.modules["distutils.util"] = util
    sys.path.insert(0, str(path))
    from training.dual_discriminator import DualDiscriminator
    from training.triplane import TriPlaneGenerator
    from torch_utils.ops import bias_act, conv2d_gradfix, grid_sample_gradfix, upfirdn2d

    conv2d_gradfix.enabled = grid_sample_gradfix.enabled = True  # as EG3D's training_loop sets them
    return types.SimpleNamespace(TriPlaneGenerator=TriPlaneGenerator, DualDiscriminator=DualDiscriminator,
                                 bias_act=bias_act, upfirdn2d=upfirdn2d)


def eg3d_models(eg3d, spec: dict, precision: str, device):
    out, mixed = spec["out"], precision == "mixed"
    g_fp16 = spec.get("g_num_fp16_res", 0) if mixed else 0
    coarse, fine = spec["samples"]
    rendering = dict(image_resolution=out, disparity_space_sampling=False, clamp_mode="softplus",
                     superresolution_module=SR_MODULES[out], c_gen_conditioning_zero=False, gpc_reg_prob=0.5,
                     c_scale=1.0, superresolution_noise_mode="none", density_reg=0.25, density_reg_p_dist=0.004,
                     reg_type="l1", decoder_lr_mul=1.0, sr_antialias=True, depth_resolution=coarse,
                     depth_resolution_importance=fine, ray_start=2.25, ray_end=3.3, box_warp=1,
                     avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0.2])
    cb, cm = spec["channel_base"], spec["channel_max"]
    G = eg3d.TriPlaneGenerator(
        z_dim=512, c_dim=25, w_dim=512, img_resolution=out, img_channels=3,
        sr_num_fp16_res=MIXED_FP16_RES if mixed else 0, mapping_kwargs={"num_layers": 2}, rendering_kwargs=rendering,
        sr_kwargs={"channel_base": cb, "channel_max": cm, "fused_modconv_default": "inference_only"},
        channel_base=cb, channel_max=cm, fused_modconv_default="inference_only", num_fp16_res=g_fp16,
        conv_clamp=MIXED_CLAMP if g_fp16 else None)  # EG3D train.py: conv_clamp 256 iff g_num_fp16_res > 0
    G.neural_rendering_resolution = spec["neural"]
    # Upstream quirk: when the neural resolution equals the SR input resolution (the 128-px config) no
    # interpolation copies `rgb`, which is then a view of the feature image that the SR block adds into in
    # place (`img.add_`), and autograd refuses the backward. Handing the SR a copy of rgb (3 channels at
    # the neural resolution: negligible) lets EG3D's own code run unchanged.
    sr_forward = G.superresolution.forward
    G.superresolution.forward = lambda rgb, x, ws, **kw: sr_forward(rgb.clone(), x, ws, **kw)
    D = eg3d.DualDiscriminator(
        c_dim=25, img_resolution=out, img_channels=3, channel_base=cb, channel_max=cm,
        num_fp16_res=MIXED_FP16_RES if mixed else 0, conv_clamp=MIXED_CLAMP if mixed else None,
        block_kwargs={"freeze_layers": 0}, mapping_kwargs={}, epilogue_kwargs={"mbstd_group_size": 4})
    return G.to(device), D.to(device), (f"EG3D fp16 blocks (G {g_fp16}, SR {MIXED_FP16_RES}, D {MIXED_FP16_RES})"
                                        if mixed else "fp32")


def eg3d_step(G, D, batch: dict, neural: int, g_main=contextlib.nullcontext) -> None:
    c = batch["c"]
    with g_main():
        out = G(batch["z"], c, neural_rendering_resolution=neural)
        fake = {"image": out["image"], "image_raw": out["image_raw"]}
        loss = F.softplus(-D(fake, c)).mean()
    loss.backward()
    fake = {k: v.detach() for k, v in fake.items()}
    real = {k: batch["real"][k] for k in fake}
    (F.softplus(D(fake, c)).mean() + F.softplus(-D(real, c)).mean()).backward()


def build_eg3d_plugins(eg3d) -> None:
    """Build EG3D's CUDA plugins now (its own custom_ops, cached under $TORCH_EXTENSIONS_DIR). A plugin
    that fails to build is switched to EG3D's reference op, and the failure is printed.

    EG3D's custom_ops imports the built module by name after `cpp_extension.load`; current torch loads
    it from its file without registering that name, so the import fails although the build succeeded.
    The harness registers what `load` returns (EG3D's code stays untouched)."""
    from torch.utils import cpp_extension

    if not getattr(cpp_extension.load, "_registers_module", False):
        plain_load = cpp_extension.load

        def load_and_register(*args, **kwargs):
            module = plain_load(*args, **kwargs)
            sys.modules.setdefault(kwargs.get("name") or args[0], module)
            return module

        load_and_register._registers_module = True
        cpp_extension.load = load_and_register
    for name in ("bias_act", "upfirdn2d"):
        mod = getattr(eg3d, name)
        try:
            mod._init()
        except Exception as exc:  # noqa: BLE001 - report and measure EG3D with its reference op
            print(f"EG3D {name} plugin failed to build ({type(exc).__name__}: {str(exc)[-400:]}); using its reference op")
            mod._init = lambda: False


def eg3d_plugins(eg3d) -> str:
    def kind(mod):
        plugin = getattr(mod, "_plugin", None)
        return "reference" if plugin is None else getattr(plugin, "label", "CUDA plugin")

    return ", ".join(f"{name} {kind(getattr(eg3d, name))}" for name in ("bias_act", "upfirdn2d"))


class TwinPlugin:
    """EG3D's plugin interface (`_plugin.bias_act`, `_plugin.upfirdn2d`) served by the project's compiled
    C++ twin: the arguments of EG3D's CUDA kernels map one to one onto it (same padding/flip/gain
    conventions; bias_act's activations by name). Only what EG3D's fast path calls is served: forward
    and first-order backward (from y) of linear and lrelu."""

    label = "CUDA-path autograd on the project's CPU twin"

    def __init__(self, module, eg3d):
        from balancehead.ops.bias_act import ACTIVATIONS

        self.module = module
        self.codes = {spec.cuda_idx: (name, ACTIVATIONS[name][0])
                      for name, spec in eg3d.bias_act.activation_funcs.items() if name in ("linear", "lrelu")}

    def upfirdn2d(self, x, f, *args):
        return self.module.upfirdn2d(x, f, *args)

    def bias_act(self, x, b, xref, yref, dy, grad, dim, cuda_idx, alpha, gain, clamp):
        if cuda_idx not in self.codes or grad > 1:
            raise NotImplementedError(f"EG3D bias_act kernel {cuda_idx} (grad {grad}) has no twin here")
        name, code = self.codes[cuda_idx]
        if grad == 0:
            return self.module.bias_act_forward(x, b, dim, code, alpha, gain, clamp)
        if name == "linear":      # EG3D keeps no reference for linear: dx = dy * gain
            return x * gain
        return self.module.bias_act_backward(x, yref, yref.new_zeros([0]), dim, code, alpha, gain, clamp, True)


def eg3d_cuda_path_on_cpu(eg3d, module) -> None:
    """Run EG3D's CUDA-path autograd functions (`_bias_act_cuda`, `_upfirdn2d_cuda`: what its plugins
    keep for the backward and allocate) on a CPU, their kernels served by TwinPlugin. EG3D's entry points
    pick that path on CUDA tensors only, so the harness points the module-level names at it (EG3D's files
    stay untouched): on a CPU, EG3D then holds the memory it holds on a GPU."""
    plugin = TwinPlugin(module, eg3d)
    ba, ud = eg3d.bias_act, eg3d.upfirdn2d
    ba._plugin = ud._plugin = plugin
    ba.bias_act = (lambda x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None, impl="cuda":
                   ba._bias_act_cuda(dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp).apply(x, b))
    ud.upfirdn2d = (lambda x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl="cuda":
                    ud._upfirdn2d_cuda(up=up, down=down, padding=padding, flip_filter=flip_filter,
                                       gain=gain).apply(x, f))


# ---------------------------------------------------------------- profiling

# Kinds of work, matched in order against an operator's or a kernel's name (lower case).
CATEGORIES = (
    ("convolution", r"conv|cudnn|implicit_|xmma|fprop|dgrad|wgrad|winograd|mkldnn"),
    ("matrix product", r"gemm|\bmm\b|addmm|aten::mm|aten::bmm|matmul|cublas|cutlass|linear"),
    ("feature sampling", r"grid_sample|grid_sampler"),
    ("resampling (upfirdn2d)", r"upfirdn|upsample|interpolate|conv_transpose"),
    ("bias + activation", r"bias_act|leaky_relu|softplus|sigmoid|lrelu"),
    ("sort / scan / gather", r"sort|cumsum|cumprod|scan|searchsorted|gather|scatter|index"),
    ("copy / cat / cast", r"copy|cat|_to_copy|contiguous|clone|memcpy|memset|fill"),
    ("reduction", r"reduce|sum|mean|norm|max|min|softmax"),
    ("elementwise", r"elementwise|mul|add|sub|div|exp|pow|rsqrt|where|clamp|lerp|neg|abs"),
)


def categorise(name: str) -> str:
    low = name.lower()
    for label, pattern in CATEGORIES:
        if re.search(pattern, low):
            return label
    return "other"


def profile_step(step, G, D, device) -> dict:
    """One step under torch.profiler -> {"unit", "total_ms", "kernels", "categories": {..: ms}, "top": [(name, ms, calls)]}.

    On a GPU: device kernels only (each kernel's own time; launches = kernels per step). On a CPU:
    every ATen operator's self time (nothing is double counted)."""
    from torch.profiler import ProfilerActivity, profile

    gpu = device.type == "cuda"
    _drop_grads(G, D)
    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    with profile(activities=activities) as prof:
        step()
        _sync(device)
    per_name, calls = collections.Counter(), collections.Counter()
    for ev in prof.events():
        if gpu:
            if (ev.device_type != torch.autograd.DeviceType.CUDA or getattr(ev, "is_user_annotation", False)
                    or ev.device_time_total <= 0):
                continue
            us = ev.device_time_total
        else:
            if not ev.name.startswith("aten::") or ev.self_cpu_time_total <= 0:
                continue
            us = ev.self_cpu_time_total
        per_name[ev.name] += us
        calls[ev.name] += 1
    categories = collections.Counter()
    for name, us in per_name.items():
        categories[categorise(name)] += us / 1e3
    top = [(name, us / 1e3, calls[name]) for name, us in per_name.most_common(25)]
    return {"unit": "device ms (kernels)" if gpu else "CPU ms (operators' self time)",
            "total_ms": sum(per_name.values()) / 1e3, "kernels": sum(calls.values()) if gpu else None,
            "operators": sum(calls.values()), "categories": dict(categories), "top": top,
            "table": prof.key_averages().table(sort_by="self_cuda_time_total" if gpu else "self_cpu_time_total",
                                               row_limit=60)}


def report_profile(name: str, precision: str, profiles: dict, out_dir: Path) -> None:
    sides = list(profiles)
    unit = profiles[sides[0]]["unit"]
    print(f"  profile ({unit}), one step each:")
    print("    " + f"{'kind of work':28s}" + "".join(f"{s:>14s}" for s in sides))
    labels = [label for label, _ in CATEGORIES] + ["other"]
    for label in labels:
        row = [profiles[s]["categories"].get(label, 0.0) for s in sides]
        if any(v > 0 for v in row):
            print("    " + f"{label:28s}" + "".join(f"{v:14.1f}" for v in row))
    print("    " + f"{'total':28s}" + "".join(f"{profiles[s]['total_ms']:14.1f}" for s in sides))
    key = "kernels" if profiles[sides[0]]["kernels"] is not None else "operators"
    print("    " + f"{key + ' per step':28s}" + "".join(f"{profiles[s][key]:14d}" for s in sides))
    for s in sides:
        print(f"    top of {s}:")
        for op, ms, n in profiles[s]["top"][:12]:
            print(f"      {ms:9.2f} ms {n:6d}x  {op[:100]}")
    for s in sides:
        write_text(out_dir / f"profile_{name}_{precision}_{s}.txt", profiles[s]["table"])
    write_json(out_dir / f"profile_{name}_{precision}.json",
               {s: {k: v for k, v in p.items() if k != "table"} for s, p in profiles.items()})


# ---------------------------------------------------------------- measuring

def make_batch(spec: dict, device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    n, out = spec["batch"], spec["out"]
    yaws = np.linspace(-40, 40, n)
    c = torch.from_numpy(np.stack([camera_label(y, 0.0) for y in yaws])).float()
    real = {"image": torch.randn(n, 3, out, out, generator=g), "image_raw": torch.randn(n, 3, spec["neural"], spec["neural"],
                                                                                           generator=g),
            "mask": torch.rand(n, 1, out, out, generator=g)}
    return {"z": torch.randn(n, 512, generator=g).to(device), "c": c.to(device),
            "real": {k: v.to(device) for k, v in real.items()}}


def part_params(module: torch.nn.Module) -> dict:
    """Parameter count (millions) per top-level part; EG3D's `backbone` is split into mapping/synthesis."""
    parts = {}
    for name, child in module.named_children():
        if name == "backbone":
            for sub, m in child.named_children():
                parts[f"backbone.{sub}"] = sum(p.numel() for p in m.parameters()) / 1e6
        else:
            n = sum(p.numel() for p in child.parameters())
            if n:
                parts[name] = n / 1e6
    parts["total"] = sum(p.numel() for p in module.parameters()) / 1e6
    return parts


class SavedBytes:
    """Bytes autograd keeps for the backward, counted once per storage (a tensor saved by two ops, or a
    view of a saved tensor, counts once) and only while a graph still holds it (a graph dropped during the
    forward, e.g. EG3D's coarse ray march, frees its tensors): the activation memory of a graph, on any
    device."""

    def __init__(self):
        self.entries = []

    def __call__(self):
        return torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t):
        st = t.untyped_storage()
        self.entries.append(((st.device, st.data_ptr()), st.nbytes(), weakref.ref(t)))
        return t

    @property
    def gib(self) -> float:
        alive = {key: nbytes for key, nbytes, ref in self.entries if ref() is not None}
        return sum(alive.values()) / 2**30


def allocation_peak(events) -> int:
    """Highest sum of the CPU allocator's allocations minus frees, in time order, from torch.profiler's
    memory events (kineto `[memory]` records): a step's peak above what it started with."""
    from torch._C._autograd import DeviceType

    live = peak = 0
    for e in sorted((e for e in events if e.name() == "[memory]" and e.device_type() == DeviceType.CPU),
                    key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def memory_pass(side: dict, batch: dict, device) -> tuple[float, float]:
    """One more step -> (GiB saved for the backward of the G-main forward (G, D on the fakes): where a
    step's memory peaks; on a CPU the step's peak bytes, else NaN). The CPU peak is the side's parameters
    and the batch plus the step's highest allocation above its start (the allocator's events under
    torch.profiler); a GPU's peak is torch.cuda.max_memory_allocated over the timed steps."""
    _drop_grads(side["G"], side["D"])
    counter, seen = SavedBytes(), []

    @contextlib.contextmanager
    def g_main():
        with counter():
            yield
        seen.append(counter.gib)    # before the backward frees the graph

    if device.type != "cpu":
        side["step"](g_main=g_main)
        return seen[0], float("nan")
    from torch.profiler import ProfilerActivity, profile
    from torch.utils._pytree import tree_leaves

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        side["step"](g_main=g_main)
    resident = [p for m in (side["G"], side["D"]) for p in m.parameters()]
    resident += [t for t in tree_leaves(batch) if torch.is_tensor(t)]
    return seen[0], sum(t.numel() * t.element_size() for t in resident) + allocation_peak(
        prof.profiler.kineto_results.events())


def count_flops(step) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def _drop_grads(G, D) -> None:
    for p in list(G.parameters()) + list(D.parameters()):
        p.grad = None


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, G, D, device) -> tuple[float, float]:
    """-> (seconds, peak bytes) of one step; gradients dropped first, peak counter reset."""
    _drop_grads(G, D)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    step()
    _sync(device)
    dt = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else float("nan")
    return dt, peak


def run_config(name: str, spec: dict, precision: str, args, eg3d, device) -> dict:
    torch.manual_seed(0)
    batch = make_batch(spec, device)
    sides = {}
    G, D, how = our_models(spec, precision, device)
    sides["ours"] = dict(G=G, D=D, how=how, step=lambda G=G, D=D, how=how, **k: our_step(G, D, batch, precision, how, **k))
    if args.compile:  # a third side: the same models with G's rendering compiled (Generator.compile_rendering)
        G, D, how = our_models(spec, precision, device)
        G.compile_rendering()
        sides["ours_compiled"] = dict(G=G, D=D, how=how + " + compiled rendering",
                                      step=lambda G=G, D=D, how=how, **k: our_step(G, D, batch, precision, how, **k))
    if eg3d is not None and precision != "bf16":
        torch.manual_seed(0)
        G, D, how = eg3d_models(eg3d, spec, precision, device)
        sides["eg3d"] = dict(G=G, D=D, how=how, step=lambda G=G, D=D, **k: eg3d_step(G, D, batch, spec["neural"], **k))
    for key, side in list(sides.items()):
        try:
            for _ in range(max(args.warmup, 1 if key == "ours_compiled" else 0)):   # the compile happens here
                timed(side["step"], side["G"], side["D"], device)
        except Exception as exc:  # noqa: BLE001 -- e.g. no Triton/compiler on this machine: drop that side only
            if key != "ours_compiled":
                raise
            print(f"  compiled rendering unavailable here ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
            del sides[key]
            continue
        side["flops"] = count_flops(side["step"]) if args.flops else float("nan")
        side["saved_gib"], cpu_peak = memory_pass(side, batch, device)
        side["times"] = []
        side["peaks"] = [] if device.type == "cuda" else [cpu_peak]
    for _ in range(args.iters):  # alternate: one step per side per round
        for side in sides.values():
            dt, peak = timed(side["step"], side["G"], side["D"], device)
            side["times"].append(dt)
            if device.type == "cuda":       # a CPU's peak comes from the memory pass
                side["peaks"].append(peak)
    result = {"config": name, "precision": precision, **{k: v for k, v in spec.items() if k != "samples"},
              "samples": list(spec["samples"]), "sides": {}}
    for key, side in sides.items():
        result["sides"][key] = {
            "mode": side["how"], "median_s": statistics.median(side["times"]), "times_s": side["times"],
            "peak_gib": max(side["peaks"]) / 2**30, "saved_g_main_gib": side["saved_gib"], "flops_per_step": side["flops"],
            "params_G_M": part_params(side["G"]), "params_D_M": part_params(side["D"])["total"]}
    if "eg3d" in sides:
        result["ratio_eg3d_over_ours"] = result["sides"]["eg3d"]["median_s"] / result["sides"]["ours"]["median_s"]
        if "ours_compiled" in sides:
            result["ratio_eg3d_over_ours_compiled"] = (result["sides"]["eg3d"]["median_s"]
                                                       / result["sides"]["ours_compiled"]["median_s"])
        result["eg3d_ops"] = eg3d_plugins(eg3d)
    if args.profile is not None:
        result["profiles"] = {key: profile_step(side["step"], side["G"], side["D"], device) for key, side in sides.items()}
    return result


def _print_ratio(label: str, ratio: float) -> None:
    print(f"  {label} = {ratio:.3f} ({'ours faster' if ratio > 1 else 'ours slower'} by {max(ratio, 1 / ratio):.2f}x)",
          flush=True)


def report(r: dict, out_dir: Path | None = None) -> None:
    print(f"\n== config {r['config']} ({r['out']} px, neural {r['neural']}, samples {r['samples'][0]}+{r['samples'][1]}, "
          f"batch {r['batch']}, channel base {r['channel_base']}, max {r['channel_max']}) precision {r['precision']}")
    for key, s in r["sides"].items():
        parts = ", ".join(f"{k} {v:.2f}" for k, v in s["params_G_M"].items())
        print(f"  {key:5s} params (M): G [{parts}] | D {s['params_D_M']:.2f}")
    for key, s in r["sides"].items():
        times = ", ".join(f"{t:.3f}" for t in s["times_s"])
        print(f"  {key:5s} [{s['mode']}] step median {s['median_s']:.4f} s over {len(s['times_s'])} ({times}) | "
              f"{s['flops_per_step'] / 1e12:.3f} TFLOP/step | peak {s['peak_gib']:.2f} GiB | "
              f"saved for G-main backward {s['saved_g_main_gib']:.2f} GiB")
    if "ratio_eg3d_over_ours" in r:
        ratio = r["ratio_eg3d_over_ours"]
        print(f"  EG3D ops: {r['eg3d_ops']}")
        _print_ratio("ratio EG3D/ours", ratio)
    if "ratio_eg3d_over_ours_compiled" in r:
        _print_ratio("ratio EG3D/ours with compiled rendering", r["ratio_eg3d_over_ours_compiled"])
    if "profiles" in r:
        report_profile(r["config"], r["precision"], r["profiles"], out_dir)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eg3d", type=Path, default=None, help="path to the official eg3d/ folder (with training/)")
    ap.add_argument("--config", default=None, help="comma list of 512,128,tiny (default: 128 on CPU, 512,128 on GPU)")
    ap.add_argument("--precision", default=None, help="comma list of fp32,mixed,bf16 (default: fp32 on CPU, all on GPU)")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=None, help="override the config's batch")
    ap.add_argument("--g-num-fp16-res", type=int, default=0,
                    help="mixed: float16 synthesis-backbone blocks on both sides (EG3D --g_num_fp16_res, default 0)")
    ap.add_argument("--no-flops", dest="flops", action="store_false")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path, default=None, help="also write all figures here")
    ap.add_argument("--compile", action="store_true",
                    help="also time the project's models with G's rendering compiled (train.distributed.compile)")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="profile one more step per side; tables and figures to DIR")
    ap.add_argument("--eg3d-cuda-path", action="store_true",
                    help="on a CPU: EG3D's plugin autograd on the project's compiled CPU twin (what it keeps on a GPU)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    configs = (args.config or ("512,128" if gpu else "128")).split(",")
    precisions = (args.precision or ("fp32,mixed,bf16" if gpu else "fp32")).split(",")
    for p in precisions:
        if p not in ("fp32", "mixed", "bf16"):
            raise SystemExit(f"unknown precision {p!r}")
    configure_cuda(device, cudnn_benchmark=True, tf32=False)  # EG3D's training_loop settings, for both sides
    eg3d = import_eg3d(args.eg3d) if args.eg3d else None
    if eg3d is not None and gpu:
        build_eg3d_plugins(eg3d)
    ops_module = loader.load_built_ops()
    if args.eg3d_cuda_path:
        if eg3d is None or gpu or ops_module is None:
            raise SystemExit("--eg3d-cuda-path needs --eg3d, a CPU device and the compiled ops "
                             f"({loader.ENV_VAR}: a build_ops output such as data/build_ops)")
        eg3d_cuda_path_on_cpu(eg3d, ops_module)
    print(f"device {device} ({torch.cuda.get_device_name(device) if gpu else 'cpu'}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, project ops "
          f"{'compiled' if ops_module is not None else 'reference'} ({loader.ENV_VAR}={os.environ.get(loader.ENV_VAR, '')}), "
          f"EG3D {'at ' + str(args.eg3d) if eg3d else 'not given (project side only)'}")
    results = []
    for name in configs:
        spec = dict(CONFIGS[name])
        if args.batch:
            spec["batch"] = args.batch
        spec["g_num_fp16_res"] = args.g_num_fp16_res
        for precision in precisions:
            if precision != "fp32" and not gpu:
                print(f"  ({name}/{precision}: mixed precision is measured on a GPU only; skipped)")
                continue
            try:
                r = run_config(name, spec, precision, args, eg3d, device)
            except torch.OutOfMemoryError as exc:
                print(f"  {name}/{precision}: out of memory ({str(exc).splitlines()[0]})", flush=True)
                torch.cuda.empty_cache()
                continue
            report(r, args.profile)
            r.pop("profiles", None)      # tables are in DIR; the JSON keeps the timings
            results.append(r)
            if gpu:
                torch.cuda.empty_cache()
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
