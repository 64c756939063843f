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
        return torch.randn(*shape, generator=generator, dtype=dtype).to(device)

    f = make_filter(device=device)
    grid = (torch.rand(2, 5, 7, 2, generator=generator, dtype=dtype) * 2.4 - 1.2).to(device)
    return {
        "bias_act_lrelu_clamp": (lambda x, b, **k: bias_act(x, b, act="lrelu", clamp=1.0, **k), [randn(3, 4, 5, 6), randn(4)]),
        "bias_act_softplus": (lambda x, b, **k: bias_act(x, b, act="softplus", **k), [randn(3, 4, 5), randn(4)]),
        "upfirdn2d_up2": (lambda x, **k: upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4, **k), [randn(2, 3, 6, 5)]),
        "upfirdn2d_down2": (lambda x, **k: upfirdn2d(x, f, down=2, padding=1, **k), [randn(2, 3, 8, 7)]),
        "conv2d_groups": (lambda x, w, **k: conv2d(x, w, padding=1, groups=2, **k), [randn(2, 4, 6, 6), randn(6, 2, 3, 3)]),
        "grid_sample": (lambda x, g, **k: grid_sample(x, g, **k), [randn(2, 3, 6, 8), grid]),
    }


def compare_with_reference(module: ModuleType, device="cpu", dtype=torch.float64, seed: int = 0) -> dict:
    """-> {case: {"forward": max abs error, "grad": max abs error over inputs}}."""
    generator = torch.Generator().manual_seed(seed)
    results = {}
    for name, (fn, inputs) in _cases(generator, device, dtype).items():
        errors = {}
        outs = []
        for kwargs in ({"impl": "ref"}, {"module": module}):
            xs = [t.clone().requires_grad_(True) for t in inputs]
            y = fn(*xs, **kwargs)
            weight = torch.linspace(-1, 1, y.numel(), dtype=y.dtype, device=y.device).reshape(y.shape)
            grads = torch.autograd.grad((y * weight).sum(), xs)
            outs.append((y.detach(), [g.detach() for g in grads]))
        (y_ref, g_ref), (y_cmp, g_cmp) = outs
        errors["forward"] = float((y_ref - y_cmp).abs().max())
        errors["grad"] = max(float((a - b).abs().max()) for a, b in zip(g_ref, g_cmp))
        results[name] = errors
    return results
