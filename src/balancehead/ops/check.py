"""Numerical check of a compiled op extension against the PyTorch references (forward and
first-order gradients), used by the build_ops stage report and by the tests."""
from __future__ import annotations

from types import ModuleType

import torch

from .bias_act import bias_act
from .conv2d_gradfix import conv2d
from .grid_sample_gradfix import grid_sample
from .upfirdn2d import make_filter, upfirdn2d


def _cases(generator: torch.Generator, device, dtype):
    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device, dtype)

    f = make_filter(device=device)
    f3 = make_filter((1, 2, 1), device=device)
    grid = (torch.rand(2, 5, 7, 2, generator=generator, dtype=torch.float64) * 2.4 - 1.2).to(device, dtype)
    planes = randn(2, 3, 6, 8)
    return {
        "bias_act_lrelu_clamp": (lambda x, b, **k: bias_act(x, b, act="lrelu", clamp=1.0, **k), [randn(3, 4, 5, 6), randn(4)]),
        "bias_act_softplus": (lambda x, b, **k: bias_act(x, b, act="softplus", **k), [randn(3, 4, 5), randn(4)]),
        "upfirdn2d_up2": (lambda x, **k: upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4, **k), [randn(2, 3, 6, 5)]),
        "upfirdn2d_down2": (lambda x, **k: upfirdn2d(x, f, down=2, padding=1, **k), [randn(2, 3, 8, 7)]),
        # the blur after a transposed convolution (up=1, down=1), with a crop on one side
        "upfirdn2d_fir": (lambda x, **k: upfirdn2d(x, f, padding=(1, -1, 2, 1), gain=4, **k), [randn(2, 3, 9, 8)]),
        # a filter the fixed-size kernels do not cover: the general loop
        "upfirdn2d_general": (lambda x, **k: upfirdn2d(x, f3, up=2, down=2, padding=(1, 2, 2, 0), **k), [randn(1, 2, 7, 6)]),
        "conv2d_groups": (lambda x, w, **k: conv2d(x, w, padding=1, groups=2, **k), [randn(2, 4, 6, 6), randn(6, 2, 3, 3)]),
        # the compiled kernels in the default channels-last layout (a CUDA warp per sample, lanes over
        # channels: 40 channels also run the lanes' second round), and in NCHW
        "grid_sample": (lambda x, g, **k: grid_sample(x, g, **k), [planes, grid]),
        "grid_sample_gather": (lambda x, g, **k: grid_sample(x, g, **k, **({"backward": "gather"} if "module" in k else {})),
                               [planes, grid]),
        "grid_sample_wide": (lambda x, g, **k: grid_sample(x, g, **k), [randn(1, 40, 5, 6), grid[:1]]),
        "grid_sample_nchw": (lambda x, g, **k: grid_sample(x, g, **k, layout="nchw"), [planes, grid]),
        "grid_sample_gather_nchw": (lambda x, g, **k: grid_sample(
            x, g, **k, layout="nchw", **({"backward": "gather"} if "module" in k else {})), [planes, grid]),
    }


def _run(fn, inputs, kwargs):
    xs = [t.clone().requires_grad_(True) for t in inputs]
    y = fn(*xs, **kwargs)
    weight = torch.linspace(-1, 1, y.numel(), dtype=torch.float64, device=y.device).reshape(y.shape).to(y.dtype)
    grads = torch.autograd.grad((y * weight).sum(), xs)
    return y.detach(), [g.detach() for g in grads]


def compare_with_reference(module: ModuleType, device="cpu", dtype=torch.float64, seed: int = 0) -> dict:
    """-> {case: {"forward": max abs error, "grad": max abs error over inputs}}, both sides in `dtype`."""
    generator = torch.Generator().manual_seed(seed)
    results = {}
    for name, (fn, inputs) in _cases(generator, device, dtype).items():
        (y_ref, g_ref), (y_cmp, g_cmp) = (_run(fn, inputs, kw) for kw in ({"impl": "ref"}, {"module": module}))
        results[name] = {"forward": float((y_ref - y_cmp).abs().max()),
                         "grad": max(float((a - b).abs().max()) for a, b in zip(g_ref, g_cmp))}
    return results


def compare_low_precision(module: ModuleType, dtype: torch.dtype, device="cpu", seed: int = 0) -> dict:
    """Compiled ops in a 16-bit (or float32) `dtype` against the float64 reference on the same
    (rounded) inputs -> {case: {"forward", "grad": max abs error / max abs reference value}}, and
    checks that outputs and gradients come back in `dtype` (no silent up-cast)."""
    generator = torch.Generator().manual_seed(seed)
    results = {}
    for name, (fn, inputs) in _cases(generator, device, dtype).items():
        y_cmp, g_cmp = _run(fn, inputs, {"module": module})
        if y_cmp.dtype != dtype or any(g.dtype != dtype for g in g_cmp):
            raise AssertionError(f"{name}: compiled op returned {y_cmp.dtype} / {[g.dtype for g in g_cmp]} for {dtype}")
        y_ref, g_ref = _run(fn, [t.double() for t in inputs], {"impl": "ref"})

        def rel(a, b):
            return float((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-12))

        results[name] = {"forward": rel(y_cmp, y_ref), "grad": max(rel(a, b) for a, b in zip(g_cmp, g_ref))}
    return results
